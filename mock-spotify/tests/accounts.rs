//! The accounts service: client credentials and client authentication, the code flow
//! with and without PKCE, refresh-token rotation, and `/authorize`'s errors and consent
//! page.
//!
//! Drives a real MockSpotify over HTTP, the way the gateway and external scripts do.

mod common;

use reqwest::StatusCode;

use common::{
    api, api_error, authorize, challenge, client, code_for, get, oauth_error, query_of, s, start,
    start_extended, token, user_token, DEMO, REDIRECT, VERIFIER,
};

#[tokio::test]
async fn client_credentials_and_client_authentication() {
    let m = start().await;
    let (status, body) = token(&m, DEMO, &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(body.get("refresh_token").is_none());
    let access = s(&body["access_token"]).to_string();

    let wrong = token(
        &m,
        Some(("demo-client-id", "nope")),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(
        wrong,
        (
            StatusCode::BAD_REQUEST,
            oauth_error("invalid_client", "Invalid client secret")
        )
    );
    let unknown = token(
        &m,
        Some(("who", "demo-client-secret")),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(
        unknown,
        (
            StatusCode::BAD_REQUEST,
            oauth_error("invalid_client", "Invalid client")
        )
    );
    let none = token(&m, None, &[("grant_type", "client_credentials")]).await;
    assert_eq!(
        none,
        (
            StatusCode::BAD_REQUEST,
            oauth_error("invalid_client", "Invalid client")
        )
    );
    let public = token(
        &m,
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "demo-client-id"),
        ],
    )
    .await;
    assert_eq!(public.1["error"], "invalid_client");
    let body_secret = token(
        &m,
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "demo-client-id"),
            ("client_secret", "demo-client-secret"),
        ],
    )
    .await;
    assert_eq!(body_secret.0, StatusCode::OK);
    let bad_grant = token(&m, DEMO, &[("grant_type", "password")]).await;
    assert_eq!(bad_grant.0, StatusCode::BAD_REQUEST);
    assert_eq!(bad_grant.1["error"], "unsupported_grant_type");

    // An app token reads the catalogue but is no user.
    let (status, _, body) = api(&m, "/v1/search?q=queen&type=track", Some(&access)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["tracks"]["total"].as_u64().expect("total") > 0);
    let (status, _, body) = api(&m, "/v1/me", Some(&access)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, api_error(401, "Valid user authentication required"));

    let resp = client()
        .get(format!("{}/api/token", m.base_url()))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn code_flow_without_pkce() {
    // Extended quota: the scopes decide the private fields (development mode has none).
    let m = start_extended().await;
    let body = user_token(&m, "alice", "user-read-email user-read-private").await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "user-read-email user-read-private");
    assert_eq!(body["expires_in"], 3600);
    assert!(body["refresh_token"].is_string());

    let (status, headers, me) = api(&m, "/v1/me", Some(s(&body["access_token"]))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(me["id"], "alice");
    assert_eq!(me["display_name"], "Alice Andersson");
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(me["country"], "SE");
    assert_eq!(me["product"], "premium");
    assert_eq!(me["href"], format!("{}/v1/users/alice", m.base_url()));

    // Reuse of a redeemed code.
    let code = code_for(&m, "bob", "", false).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
    ];
    let first = token(&m, DEMO, &form).await;
    assert_eq!(first.0, StatusCode::OK);
    assert_eq!(first.1["scope"], "");
    let again = token(&m, DEMO, &form).await;
    assert_eq!(
        again,
        (
            StatusCode::BAD_REQUEST,
            oauth_error("invalid_grant", "Invalid authorization code")
        )
    );

    // Without PKCE the secret is required.
    let code = code_for(&m, "bob", "", false).await;
    let public = token(
        &m,
        None,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", "demo-client-id"),
        ],
    )
    .await;
    assert_eq!(
        public,
        (
            StatusCode::BAD_REQUEST,
            oauth_error("invalid_client", "Invalid client")
        )
    );

    let code = code_for(&m, "bob", "", false).await;
    let wrong_redirect = token(
        &m,
        DEMO,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:8080/other"),
        ],
    )
    .await;
    assert_eq!(
        wrong_redirect,
        (
            StatusCode::BAD_REQUEST,
            oauth_error("invalid_grant", "Invalid redirect URI")
        )
    );
}

#[tokio::test]
async fn code_flow_with_pkce() {
    let m = start().await;
    let code = code_for(&m, "alice", "user-read-currently-playing", true).await;
    let wrong = token(
        &m,
        None,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", "demo-client-id"),
            (
                "code_verifier",
                "wrong-verifier-wrong-verifier-wrong-verifier-123",
            ),
        ],
    )
    .await;
    assert_eq!(
        wrong,
        (
            StatusCode::BAD_REQUEST,
            oauth_error("invalid_grant", "code_verifier was incorrect")
        )
    );

    let code = code_for(&m, "alice", "user-read-currently-playing", true).await;
    let missing = token(
        &m,
        None,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", "demo-client-id"),
        ],
    )
    .await;
    assert_eq!(
        missing.1,
        oauth_error("invalid_grant", "code_verifier was incorrect")
    );

    let code = code_for(&m, "alice", "user-read-currently-playing", true).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("client_id", "demo-client-id"),
        ("code_verifier", VERIFIER),
    ];
    let (status, body) = token(&m, None, &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "user-read-currently-playing");
    assert!(body["refresh_token"].is_string());
    let reuse = token(&m, None, &form).await;
    assert_eq!(
        reuse,
        (
            StatusCode::BAD_REQUEST,
            oauth_error("invalid_grant", "Invalid authorization code")
        )
    );

    // A PKCE code may also be redeemed by the confidential client.
    let code = code_for(&m, "bob", "", true).await;
    let (status, _) = token(
        &m,
        DEMO,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn refresh_rotation() {
    let m = start().await;
    // Public client: every refresh rotates, the old token dies at once.
    let code = code_for(&m, "alice", "user-read-email", true).await;
    let (_, body) = token(
        &m,
        None,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", "demo-client-id"),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    let mut current = s(&body["refresh_token"]).to_string();
    let original = current.clone();
    for _ in 0..2 {
        let (status, body) = token(
            &m,
            None,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &current),
                ("client_id", "demo-client-id"),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["scope"], "user-read-email");
        let (status, _, _) = api(&m, "/v1/me", Some(s(&body["access_token"]))).await;
        assert_eq!(status, StatusCode::OK);
        let next = s(&body["refresh_token"]).to_string();
        assert_ne!(next, current);
        current = next;
    }
    let old = token(
        &m,
        None,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &original),
            ("client_id", "demo-client-id"),
        ],
    )
    .await;
    assert_eq!(
        old,
        (
            StatusCode::BAD_REQUEST,
            oauth_error("invalid_grant", "Refresh token revoked")
        )
    );

    // Confidential client: no new refresh token, the old one keeps working.
    let body = user_token(&m, "bob", "user-read-private").await;
    let refresh = s(&body["refresh_token"]).to_string();
    for _ in 0..2 {
        let (status, body) = token(
            &m,
            DEMO,
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.get("refresh_token").is_none(), "{body}");
        assert_eq!(body["scope"], "user-read-private");
    }
    // A token from the secret-based flow cannot be refreshed without the secret.
    let public = token(
        &m,
        None,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", "demo-client-id"),
        ],
    )
    .await;
    assert_eq!(
        public,
        (
            StatusCode::BAD_REQUEST,
            oauth_error("invalid_client", "Invalid client")
        )
    );
    // A PKCE token may also be refreshed with the secret; then it is not rotated.
    let (status, body) = token(
        &m,
        DEMO,
        &[("grant_type", "refresh_token"), ("refresh_token", &current)],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.get("refresh_token").is_none());

    let unknown = token(
        &m,
        DEMO,
        &[("grant_type", "refresh_token"), ("refresh_token", "nope")],
    )
    .await;
    assert_eq!(
        unknown.1,
        oauth_error("invalid_grant", "Refresh token revoked")
    );
}

#[tokio::test]
async fn authorize_errors_and_consent_page() {
    // Extended quota: the scopes decide the private fields (development mode has none).
    let m = start_extended().await;
    let base = [("client_id", "demo-client-id"), ("redirect_uri", REDIRECT)];

    let (status, _, body) = authorize(
        &m,
        &[
            ("client_id", "nope"),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("INVALID_CLIENT: Invalid client"));
    let (status, location, body) = authorize(
        &m,
        &[
            ("client_id", "demo-client-id"),
            ("response_type", "code"),
            ("redirect_uri", "http://evil.example/cb"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(location.is_empty());
    assert!(body.contains("INVALID_CLIENT: Invalid redirect URI"));

    let (status, location, _) = authorize(
        &m,
        &[
            base[0],
            base[1],
            ("response_type", "token"),
            ("state", "s1"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(
        location,
        format!("{REDIRECT}?error=unsupported_response_type&state=s1")
    );

    let (_, location, _) = authorize(
        &m,
        &[
            base[0],
            base[1],
            ("response_type", "code"),
            ("code_challenge_method", "plain"),
            ("code_challenge", &challenge(VERIFIER)),
        ],
    )
    .await;
    assert_eq!(get(&query_of(&location), "error"), Some("invalid_request"));
    let (_, location, _) = authorize(
        &m,
        &[
            base[0],
            base[1],
            ("response_type", "code"),
            ("code_challenge_method", "S256"),
            ("code_challenge", "short"),
        ],
    )
    .await;
    assert_eq!(get(&query_of(&location), "error"), Some("invalid_request"));
    let (_, location, _) = authorize(
        &m,
        &[
            base[0],
            base[1],
            ("response_type", "code"),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    assert_eq!(get(&query_of(&location), "error"), Some("invalid_request"));

    let (_, location, _) = authorize(
        &m,
        &[
            base[0],
            base[1],
            ("response_type", "code"),
            ("scope", "user-read-email bogus"),
        ],
    )
    .await;
    assert_eq!(get(&query_of(&location), "error"), Some("invalid_scope"));

    let (status, location, _) = authorize(
        &m,
        &[
            base[0],
            base[1],
            ("response_type", "code"),
            ("state", "s2"),
            ("mock_user", "bob"),
            ("mock_decision", "deny"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(location, format!("{REDIRECT}?error=access_denied&state=s2"));
    let (status, _, _) = authorize(
        &m,
        &[
            base[0],
            base[1],
            ("response_type", "code"),
            ("mock_user", "mallory"),
            ("mock_decision", "approve"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // No state given: none comes back.
    let (_, location, _) = authorize(
        &m,
        &[
            base[0],
            base[1],
            ("response_type", "code"),
            ("mock_user", "alice"),
            ("mock_decision", "approve"),
        ],
    )
    .await;
    let pairs = query_of(&location);
    assert!(get(&pairs, "code").expect("code").len() >= 32);
    assert_eq!(get(&pairs, "state"), None);

    // The consent page, then its form.
    let tricky_state = "\"><script>alert(1)</script>";
    let (status, _, page) = authorize(
        &m,
        &[
            base[0],
            base[1],
            ("response_type", "code"),
            ("scope", "user-read-email user-top-read"),
            ("state", tricky_state),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Spotify Gateway Demo"));
    assert!(page.contains("View your email address"));
    assert!(page.contains("Alice Andersson") && page.contains("Bob Baker"));
    assert!(page.contains("action=\"/authorize/decision\""));
    assert!(!page.contains("<script>"));
    assert!(page.contains("&quot;&gt;&lt;script&gt;"));
    assert!(!page.contains("http://") || !page.contains("<link"));

    let resp = client()
        .post(format!("{}/authorize/decision", m.base_url()))
        .form(&[
            ("client_id", "demo-client-id"),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", "user-read-email user-top-read"),
            ("state", tricky_state),
            ("user", "bob"),
            ("decision", "approve"),
        ])
        .send()
        .await
        .expect("decision");
    assert_eq!(resp.status(), StatusCode::FOUND);
    let location = resp.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_string();
    let pairs = query_of(&location);
    assert_eq!(get(&pairs, "state"), Some(tricky_state));
    let code = get(&pairs, "code").expect("code").to_string();
    let (status, body) = token(
        &m,
        DEMO,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["scope"], "user-read-email user-top-read");
    let (_, _, me) = api(&m, "/v1/me", Some(s(&body["access_token"]))).await;
    assert_eq!(me["id"], "bob");
    assert_eq!(me["email"], "bob@example.com");
    assert!(
        me.get("country").is_none(),
        "country needs user-read-private"
    );

    let resp = client()
        .post(format!("{}/authorize/decision", m.base_url()))
        .form(&[
            ("client_id", "nope"),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("user", "bob"),
            ("decision", "approve"),
        ])
        .send()
        .await
        .expect("decision");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}
