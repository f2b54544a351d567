//! Drives a real MockSpotify over HTTP, the way the gateway and external scripts do.

use std::time::{Duration, Instant};

use base64::Engine as _;
use mock_spotify::{MockConfig, MockSpotify};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const REDIRECT: &str = "http://127.0.0.1:8080/auth/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

async fn start() -> MockSpotify {
    start_with(MockConfig::default()).await
}

async fn start_with(config: MockConfig) -> MockSpotify {
    let addr = "127.0.0.1:0".parse().expect("addr");
    MockSpotify::start(addr, config).await.expect("mock starts")
}

fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn query_of(location: &str) -> Vec<(String, String)> {
    let query = location.split_once('?').map(|(_, q)| q).unwrap_or("");
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// GET /authorize with `params`; returns (status, Location header).
async fn authorize(m: &MockSpotify, params: &[(&str, &str)]) -> (StatusCode, String, String) {
    let resp = client()
        .get(format!("{}/authorize", m.base_url()))
        .query(params)
        .send()
        .await
        .expect("authorize");
    let status = resp.status();
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().expect("ascii").to_string())
        .unwrap_or_default();
    let body = resp.text().await.expect("body");
    (status, location, body)
}

/// A code for `user` via the mock_user skip.
async fn code_for(m: &MockSpotify, user: &str, scope: &str, pkce: bool) -> String {
    let challenge = challenge(VERIFIER);
    let mut params = vec![
        ("client_id", "demo-client-id"),
        ("response_type", "code"),
        ("redirect_uri", REDIRECT),
        ("scope", scope),
        ("state", "xyz"),
        ("mock_user", user),
        ("mock_decision", "approve"),
    ];
    if pkce {
        params.push(("code_challenge_method", "S256"));
        params.push(("code_challenge", &challenge));
    }
    let (status, location, _) = authorize(m, &params).await;
    assert_eq!(status, StatusCode::FOUND);
    assert!(location.starts_with(REDIRECT), "{location}");
    let pairs = query_of(&location);
    assert_eq!(get(&pairs, "state"), Some("xyz"));
    get(&pairs, "code").expect("code").to_string()
}

/// POST /api/token; `basic` = (id, secret) for the Authorization header.
async fn token(
    m: &MockSpotify,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut req = client()
        .post(format!("{}/api/token", m.base_url()))
        .form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let resp = req.send().await.expect("token");
    let status = resp.status();
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    (status, resp.json().await.expect("json"))
}

const DEMO: Option<(&str, &str)> = Some(("demo-client-id", "demo-client-secret"));

async fn user_token(m: &MockSpotify, user: &str, scope: &str) -> Value {
    let code = code_for(m, user, scope, false).await;
    let (status, body) = token(
        m,
        DEMO,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn api(
    m: &MockSpotify,
    path: &str,
    bearer: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let url = if path.starts_with("http") {
        path.to_string()
    } else {
        format!("{}{path}", m.base_url())
    };
    let mut req = client().get(url);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("api");
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("text");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("json body")
    };
    (status, headers, body)
}

fn api_error(status: u16, message: &str) -> Value {
    json!({ "error": { "status": status, "message": message } })
}

fn oauth_error(error: &str, description: &str) -> Value {
    json!({ "error": error, "error_description": description })
}

fn s(v: &Value) -> &str {
    v.as_str().expect("string")
}

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
    let m = start().await;
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
    let m = start().await;
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

#[tokio::test]
async fn api_unauthorized_shapes_and_expiry() {
    let config = MockConfig {
        token_lifetime: Duration::from_millis(300),
        ..MockConfig::default()
    };
    let m = start_with(config).await;
    let (status, headers, body) = api(&m, "/v1/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, api_error(401, "No token provided"));
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json; charset=utf-8")
    );
    let (status, _, body) = api(&m, "/v1/me", Some("bogus")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, api_error(401, "Invalid access token"));
    let (status, _, body) = api(&m, "/v1/nothing-here", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, api_error(404, "Service not found"));

    let body = user_token(&m, "alice", "").await;
    assert_eq!(body["expires_in"], 1);
    let access = s(&body["access_token"]).to_string();
    assert_eq!(api(&m, "/v1/me", Some(&access)).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, _, body) = api(&m, "/v1/me", Some(&access)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, api_error(401, "The access token expired"));
}

#[tokio::test]
async fn expire_and_revoke_controls() {
    let m = start().await;
    let c = client();
    let alice = user_token(&m, "alice", "").await;
    let bob = user_token(&m, "bob", "").await;
    let resp = c
        .post(format!("{}/__mock/expire?user=alice", m.base_url()))
        .send()
        .await
        .expect("expire");
    assert_eq!(resp.status(), StatusCode::OK);
    let (status, _, body) = api(&m, "/v1/me", Some(s(&alice["access_token"]))).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::UNAUTHORIZED,
            api_error(401, "The access token expired")
        )
    );
    assert_eq!(
        api(&m, "/v1/me", Some(s(&bob["access_token"]))).await.0,
        StatusCode::OK
    );
    // The refresh token still works after a mere expiry.
    let refresh = s(&alice["refresh_token"]).to_string();
    let (status, fresh) = token(
        &m,
        DEMO,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        api(&m, "/v1/me", Some(s(&fresh["access_token"]))).await.0,
        StatusCode::OK
    );

    let resp = c
        .post(format!("{}/__mock/revoke?user=alice", m.base_url()))
        .send()
        .await
        .expect("revoke");
    assert_eq!(resp.status(), StatusCode::OK);
    let revoked = token(
        &m,
        DEMO,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(
        revoked,
        (
            StatusCode::BAD_REQUEST,
            oauth_error("invalid_grant", "Refresh token revoked")
        )
    );
    assert_eq!(
        api(&m, "/v1/me", Some(s(&fresh["access_token"]))).await.0,
        StatusCode::UNAUTHORIZED
    );

    let resp = c
        .post(format!("{}/__mock/expire?user=mallory", m.base_url()))
        .send()
        .await
        .expect("expire");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(resp.json::<Value>().await.is_ok());
}

#[tokio::test]
async fn search_paging_links() {
    let m = start().await;
    let (_, app) = token(&m, DEMO, &[("grant_type", "client_credentials")]).await;
    let t = s(&app["access_token"]).to_string();
    let base = m.base_url();

    let (status, _, body) = api(&m, "/v1/search?q=abba&type=track", Some(&t)).await;
    assert_eq!(status, StatusCode::OK);
    let page = &body["tracks"];
    assert_eq!(page["total"], 50);
    assert_eq!(page["limit"], 20);
    assert_eq!(page["offset"], 0);
    assert_eq!(
        page["href"],
        format!("{base}/v1/search?query=abba&type=track&offset=0&limit=20")
    );
    assert_eq!(page["previous"], Value::Null);
    assert_eq!(page["items"].as_array().expect("items").len(), 20);
    let first = &page["items"][0];
    assert_eq!(first["name"], "Dancing Queen");
    assert_eq!(first["type"], "track");
    let id = s(&first["id"]).to_string();
    assert_eq!(id.len(), 22);
    assert_eq!(first["uri"], format!("spotify:track:{id}"));
    assert_eq!(first["href"], format!("{base}/v1/tracks/{id}"));
    assert_eq!(first["album"]["release_date_precision"], "year");
    assert_eq!(first["artists"][0]["name"], "ABBA");

    let mut next = page["next"].as_str().map(str::to_string);
    let mut pages = 1;
    let mut last = Value::Null;
    while let Some(url) = next {
        let (status, _, body) = api(&m, &url, Some(&t)).await;
        assert_eq!(status, StatusCode::OK);
        pages += 1;
        next = body["tracks"]["next"].as_str().map(str::to_string);
        last = body["tracks"].clone();
    }
    assert_eq!(pages, 3);
    assert_eq!(last["offset"], 40);
    assert_eq!(last["items"].as_array().expect("items").len(), 10);
    assert_eq!(
        last["previous"],
        format!("{base}/v1/search?query=abba&type=track&offset=20&limit=20")
    );

    // Same IDs on a second server: the catalogue is deterministic.
    let other = start().await;
    let (_, app2) = token(&other, DEMO, &[("grant_type", "client_credentials")]).await;
    let (_, _, again) = api(
        &other,
        "/v1/search?query=abba&type=album,track&limit=1",
        Some(s(&app2["access_token"])),
    )
    .await;
    assert_eq!(again["tracks"]["items"][0]["id"], id.as_str());

    let (status, _, track) = api(&m, &format!("/v1/tracks/{id}"), Some(&t)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(track["name"], "Dancing Queen");
    let artist_id = s(&track["artists"][0]["id"]).to_string();
    let (status, _, artist) = api(&m, &format!("/v1/artists/{artist_id}"), Some(&t)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(artist["name"], "ABBA");
    assert!(artist["followers"]["total"].is_u64());
    let (status, _, body) = api(&m, "/v1/tracks/0000000000000000000000", Some(&t)).await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, api_error(404, "Resource not found"))
    );

    for (query, message) in [
        ("/v1/search?q=abba&type=track&limit=0", "Invalid limit"),
        ("/v1/search?q=abba&type=track&limit=51", "Invalid limit"),
        ("/v1/search?q=abba&type=track&limit=ten", "Invalid limit"),
        ("/v1/search?type=track", "No search query"),
        ("/v1/search?q=abba&type=album", "Bad search type field"),
    ] {
        let (status, _, body) = api(&m, query, Some(&t)).await;
        assert_eq!(
            (status, body),
            (StatusCode::BAD_REQUEST, api_error(400, message)),
            "{query}"
        );
    }
    let (_, _, body) = api(
        &m,
        "/v1/search?q=dancing%20queen&type=track&limit=2",
        Some(&t),
    )
    .await;
    assert_eq!(body["tracks"]["total"], 3);
    assert_eq!(
        body["tracks"]["next"],
        format!("{base}/v1/search?query=dancing+queen&type=track&offset=2&limit=2")
    );
}

#[tokio::test]
async fn currently_playing_and_playlists() {
    let m = start().await;
    let scope = "user-read-currently-playing playlist-read-private";
    let alice = user_token(&m, "alice", scope).await;
    let bob = user_token(&m, "bob", scope).await;
    let (status, _, body) = api(
        &m,
        "/v1/me/player/currently-playing",
        Some(s(&alice["access_token"])),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["is_playing"], true);
    assert_eq!(body["currently_playing_type"], "track");
    assert_eq!(body["item"]["name"], "Dancing Queen");
    assert!(body["progress_ms"].is_u64() && body["timestamp"].is_u64());

    let resp = client()
        .get(format!("{}/v1/me/player/currently-playing", m.base_url()))
        .bearer_auth(s(&bob["access_token"]))
        .send()
        .await
        .expect("bob");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(resp.headers().get("content-type").is_none());
    assert!(resp.bytes().await.expect("body").is_empty());

    let no_scope = user_token(&m, "alice", "").await;
    let (status, _, body) = api(
        &m,
        "/v1/me/player/currently-playing",
        Some(s(&no_scope["access_token"])),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::UNAUTHORIZED,
            api_error(401, "Permissions missing")
        )
    );

    let (_, _, page) = api(
        &m,
        "/v1/me/playlists?limit=2",
        Some(s(&alice["access_token"])),
    )
    .await;
    // Three small playlists and the 1,000-track one.
    assert_eq!(page["total"], 4);
    assert_eq!(page["items"].as_array().expect("items").len(), 2);
    assert_eq!(
        page["next"],
        format!("{}/v1/me/playlists?offset=2&limit=2", m.base_url())
    );
    let playlist = &page["items"][0];
    assert_eq!(playlist["owner"]["id"], "alice");
    assert_eq!(playlist["type"], "playlist");
    let tracks_href = s(&playlist["tracks"]["href"]).to_string();
    let (status, _, items) = api(&m, &tracks_href, Some(s(&alice["access_token"]))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(items["total"], playlist["tracks"]["total"]);
    assert_eq!(items["items"][0]["track"]["name"], "Dancing Queen");

    let (_, _, page) = api(&m, "/v1/me/playlists", Some(s(&bob["access_token"]))).await;
    assert_eq!(page["total"], 1);
    let (status, _, user) = api(&m, "/v1/users/bob", Some(s(&alice["access_token"]))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(user["display_name"], "Bob Baker");
    assert!(user.get("email").is_none() && user.get("country").is_none());
}

#[tokio::test]
async fn faults_with_retry_after_and_times() {
    let m = start().await;
    let c = client();
    let (_, app) = token(&m, DEMO, &[("grant_type", "client_credentials")]).await;
    let t = s(&app["access_token"]).to_string();
    let fault = |body: Value| {
        let c = c.clone();
        let url = format!("{}/__mock/fault", m.base_url());
        async move { c.post(url).json(&body).send().await.expect("fault") }
    };

    let resp = fault(json!({"target": "api", "status": 429, "retry_after": 5, "times": 2})).await;
    assert!(resp.status().is_success());
    for _ in 0..2 {
        let (status, headers, body) = api(&m, "/v1/search?q=abba&type=track", Some(&t)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            headers.get("retry-after").and_then(|v| v.to_str().ok()),
            Some("5")
        );
        assert_eq!(body, api_error(429, "API rate limit exceeded"));
    }
    assert_eq!(
        api(&m, "/v1/search?q=abba&type=track", Some(&t)).await.0,
        StatusCode::OK
    );

    fault(json!({"target": "token", "status": 503})).await;
    let (status, body) = token(&m, DEMO, &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, oauth_error("server_error", "Service unavailable"));
    assert_eq!(
        token(&m, DEMO, &[("grant_type", "client_credentials")])
            .await
            .0,
        StatusCode::OK
    );

    // Delay only: served normally, late.
    fault(json!({"target": "api", "delay_ms": 300})).await;
    let started = Instant::now();
    assert_eq!(
        api(&m, "/v1/search?q=abba&type=track", Some(&t)).await.0,
        StatusCode::OK
    );
    assert!(started.elapsed() >= Duration::from_millis(300));

    // A newer fault replaces the older one.
    fault(json!({"target": "api", "status": 500, "times": 5})).await;
    fault(json!({"target": "api", "status": 502, "times": 1})).await;
    assert_eq!(api(&m, "/v1/me", Some(&t)).await.0, StatusCode::BAD_GATEWAY);
    assert_eq!(
        api(&m, "/v1/search?q=abba&type=track", Some(&t)).await.0,
        StatusCode::OK
    );

    let resp = fault(json!({"target": "nowhere", "status": 503})).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(s(&resp.json::<Value>().await.expect("json")["error"]).contains("target"));
    let resp = c
        .post(format!("{}/__mock/fault", m.base_url()))
        .body("{not json")
        .send()
        .await
        .expect("fault");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn stats_request_log_and_reset() {
    let m = start().await;
    let c = client();
    let stats = || {
        let c = c.clone();
        let url = format!("{}/__mock/stats", m.base_url());
        async move {
            c.get(url)
                .send()
                .await
                .expect("stats")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    let (_, app) = token(&m, DEMO, &[("grant_type", "client_credentials")]).await;
    token(
        &m,
        Some(("demo-client-id", "wrong")),
        &[("grant_type", "client_credentials")],
    )
    .await;
    let alice = user_token(&m, "alice", "").await;
    token(
        &m,
        DEMO,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", s(&alice["refresh_token"])),
        ],
    )
    .await;
    token(&m, DEMO, &[("grant_type", "password")]).await;
    api(&m, "/v1/me", Some(s(&alice["access_token"]))).await;
    api(&m, "/v1/unknown", None).await;
    let resp = c
        .put(format!("{}/v1/me/player/play", m.base_url()))
        .bearer_auth(s(&app["access_token"]))
        .body("{\"uris\":[]}")
        .send()
        .await
        .expect("put");
    // A player command needs a user, not an app token.
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    assert_eq!(
        stats().await,
        json!({
            "token_requests": {"client_credentials": 2, "authorization_code": 1, "refresh_token": 1},
            "api_requests": 3,
        })
    );

    let log: Value = c
        .get(format!("{}/__mock/requests", m.base_url()))
        .send()
        .await
        .expect("log")
        .json()
        .await
        .expect("json");
    let log = log.as_array().expect("array");
    assert_eq!(log.len(), 8);
    assert_eq!(log[0]["target"], "token");
    assert_eq!(log[0]["method"], "POST");
    assert_eq!(log[0]["path"], "/api/token");
    assert!(s(&log[0]["headers"]["authorization"]).starts_with("Basic "));
    // Token request bodies are logged as sent, refresh tokens included.
    assert_eq!(log[0]["body"], "grant_type=client_credentials");
    assert_eq!(log[0]["body_bytes"], "grant_type=client_credentials".len());
    let refresh = s(&log[3]["body"]);
    assert!(refresh.contains("grant_type=refresh_token"), "{refresh}");
    assert!(
        refresh.contains(
            &form_urlencoded::byte_serialize(s(&alice["refresh_token"]).as_bytes())
                .collect::<String>()
        ),
        "{refresh}"
    );
    let me = &log[5];
    assert_eq!(me["target"], "api");
    assert_eq!(me["path"], "/v1/me");
    assert_eq!(
        me["headers"]["authorization"],
        format!("Bearer {}", s(&alice["access_token"]))
    );
    assert_eq!(me["body"], Value::Null);
    assert_eq!(me["body_bytes"], 0);
    assert_eq!(log[7]["method"], "PUT");
    assert_eq!(log[7]["body"], "{\"uris\":[]}");

    let resp = c
        .post(format!("{}/__mock/reset", m.base_url()))
        .send()
        .await
        .expect("reset");
    assert!(resp.status().is_success());
    assert_eq!(
        stats().await,
        json!({
            "token_requests": {"client_credentials": 0, "authorization_code": 0, "refresh_token": 0},
            "api_requests": 0,
        })
    );
    let log: Value = c
        .get(format!("{}/__mock/requests", m.base_url()))
        .send()
        .await
        .expect("log")
        .json()
        .await
        .expect("json");
    assert_eq!(log, json!([]));
    // Tokens survive a reset.
    assert_eq!(
        api(&m, "/v1/me", Some(s(&alice["access_token"]))).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn drop_stops_serving() {
    let m = start().await;
    let url = format!("{}/__mock/stats", m.base_url());
    let c = client();
    assert!(c.get(&url).send().await.is_ok());
    drop(m);
    let mut stopped = false;
    for _ in 0..50 {
        // A fresh client, so no pooled keep-alive connection hides the shutdown.
        if client().get(&url).send().await.is_err() {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stopped);
}

/// A client that never decompresses, so tests see exactly what the mock sent (the
/// `no_gzip` call keeps that true if feature unification turns reqwest's gzip on).
fn raw_client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_gzip()
        .build()
        .expect("client")
}

/// Any request to the Web API; `body` is sent as JSON text. Returns the parsed body,
/// or `Null` for an empty one.
async fn call(
    m: &MockSpotify,
    method: reqwest::Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let url = if path.starts_with("http") {
        path.to_string()
    } else {
        format!("{}{path}", m.base_url())
    };
    let mut req = raw_client().request(method, url);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    if let Some(body) = body {
        req = req
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let resp = req.send().await.expect("call");
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("text");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("json body")
    };
    (status, headers, body)
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read as _;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

/// The catalogue id of the first search hit for `q`.
async fn track_id(m: &MockSpotify, token: &str, q: &str) -> String {
    let (status, _, body) = api(
        m,
        &format!("/v1/search?type=track&limit=1&q={}", q.replace(' ', "+")),
        Some(token),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    s(&body["tracks"]["items"][0]["id"]).to_string()
}

async fn app_token(m: &MockSpotify) -> String {
    let (_, body) = token(m, DEMO, &[("grant_type", "client_credentials")]).await;
    s(&body["access_token"]).to_string()
}

#[tokio::test]
async fn gzip_when_the_client_accepts_it() {
    let m = start().await;
    let t = app_token(&m).await;
    let c = raw_client();
    let url = format!("{}/v1/search?q=abba&type=track&limit=50", m.base_url());

    let plain = c.get(&url).bearer_auth(&t).send().await.expect("plain");
    assert_eq!(plain.status(), StatusCode::OK);
    assert_eq!(header(plain.headers(), "content-encoding"), None);
    assert_eq!(header(plain.headers(), "vary"), Some("Accept-Encoding"));
    let plain = plain.bytes().await.expect("body");

    for accept in ["gzip", "br, gzip;q=0.8", "*", "deflate, x-gzip"] {
        let resp = c
            .get(&url)
            .bearer_auth(&t)
            .header("accept-encoding", accept)
            .send()
            .await
            .expect("gzip");
        assert_eq!(resp.status(), StatusCode::OK);
        let headers = resp.headers().clone();
        assert_eq!(
            header(&headers, "content-encoding"),
            Some("gzip"),
            "{accept}"
        );
        assert_eq!(header(&headers, "vary"), Some("Accept-Encoding"));
        assert_eq!(
            header(&headers, "content-type"),
            Some("application/json; charset=utf-8")
        );
        let body = resp.bytes().await.expect("body");
        assert!(
            body.len() < plain.len() / 2,
            "{} vs {}",
            body.len(),
            plain.len()
        );
        assert_eq!(gunzip(&body), plain.as_ref());
    }
    for refuse in ["identity", "gzip;q=0", "*, gzip;q=0", "br"] {
        let resp = c
            .get(&url)
            .bearer_auth(&t)
            .header("accept-encoding", refuse)
            .send()
            .await
            .expect("refused");
        assert_eq!(header(resp.headers(), "content-encoding"), None, "{refuse}");
        assert_eq!(resp.bytes().await.expect("body"), plain);
    }

    // Error JSON is compressed too, and keeps its headers.
    let resp = c
        .get(format!("{}/v1/me", m.base_url()))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("401");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(resp.headers(), "content-encoding"), Some("gzip"));
    assert!(resp.headers().contains_key("www-authenticate"));
    let body: Value =
        serde_json::from_slice(&gunzip(&resp.bytes().await.expect("body"))).expect("json");
    assert_eq!(body, api_error(401, "No token provided"));

    // 204s stay bodiless and unencoded.
    let bob = user_token(&m, "bob", "user-read-currently-playing").await;
    let resp = c
        .get(format!("{}/v1/me/player/currently-playing", m.base_url()))
        .bearer_auth(s(&bob["access_token"]))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("204");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(resp.headers(), "content-encoding"), None);
    assert!(resp.bytes().await.expect("body").is_empty());

    // The accounts service and the test controls never compress.
    let resp = c
        .post(format!("{}/api/token", m.base_url()))
        .basic_auth("demo-client-id", Some("demo-client-secret"))
        .header("accept-encoding", "gzip")
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(resp.headers(), "content-encoding"), None);
    assert!(resp.json::<Value>().await.expect("json")["access_token"].is_string());
    let resp = c
        .get(format!("{}/__mock/stats", m.base_url()))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("stats");
    assert_eq!(header(resp.headers(), "content-encoding"), None);
    assert!(resp.json::<Value>().await.is_ok());
}

#[tokio::test]
async fn add_and_remove_playlist_tracks() {
    use reqwest::Method;
    let m = start().await;
    let scope = "playlist-modify-public playlist-read-private";
    let alice = user_token(&m, "alice", scope).await;
    let a = s(&alice["access_token"]).to_string();
    let (_, _, mine) = api(&m, "/v1/me/playlists", Some(&a)).await;
    let kitchen = &mine["items"][0];
    assert_eq!(kitchen["name"], "Dancing in the Kitchen");
    let id = s(&kitchen["id"]).to_string();
    let before = s(&kitchen["snapshot_id"]).to_string();
    assert_eq!(kitchen["tracks"]["total"], 8);
    let path = format!("/v1/playlists/{id}/tracks");

    let karma = track_id(&m, &a, "karma police").await;
    let halo = track_id(&m, &a, "beyonce halo").await;
    let body =
        json!({ "uris": [format!("spotify:track:{karma}"), format!("spotify:track:{halo}")] });
    let (status, headers, created) =
        call(&m, Method::POST, &path, Some(&a), Some(&body.to_string())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/json; charset=utf-8")
    );
    let after_add = s(&created["snapshot_id"]).to_string();
    assert_ne!(after_add, before);
    assert_eq!(created.as_object().expect("object").len(), 1);

    let (_, _, items) = api(&m, &format!("{path}?offset=8"), Some(&a)).await;
    assert_eq!(items["total"], 10);
    assert_eq!(items["items"][0]["track"]["id"], karma.as_str());
    assert_eq!(items["items"][1]["track"]["name"], "Halo");
    assert_eq!(items["items"][0]["added_by"]["id"], "alice");
    assert_ne!(items["items"][0]["added_at"], "2024-01-01T00:00:00Z");
    assert!(s(&items["items"][0]["added_at"]).ends_with('Z'));
    let (_, _, playlist) = api(&m, &format!("/v1/playlists/{id}"), Some(&a)).await;
    assert_eq!(playlist["tracks"]["total"], 10);
    assert_eq!(playlist["snapshot_id"], after_add.as_str());
    let (_, _, mine) = api(&m, "/v1/me/playlists", Some(&a)).await;
    assert_eq!(mine["items"][0]["tracks"]["total"], 10);

    // Query URIs (comma-separated) win over the body; position inserts.
    let (status, _, created) = call(
        &m,
        Method::POST,
        &format!("{path}?position=0&uris=spotify%3Atrack%3A{halo},spotify%3Atrack%3A{halo}"),
        Some(&a),
        Some(&json!({ "uris": [format!("spotify:track:{karma}")] }).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (_, _, items) = api(&m, &format!("{path}?limit=3"), Some(&a)).await;
    assert_eq!(items["total"], 12);
    assert_eq!(items["items"][0]["track"]["name"], "Halo");
    assert_eq!(items["items"][1]["track"]["name"], "Halo");
    assert_eq!(items["items"][2]["track"]["name"], "Dancing Queen");
    let (status, _, _) = call(
        &m,
        Method::POST,
        &path,
        Some(&a),
        Some(&json!({ "uris": [format!("spotify:track:{karma}")], "position": 1 }).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, _, items) = api(&m, &format!("{path}?limit=2"), Some(&a)).await;
    assert_eq!(items["total"], 13);
    assert_eq!(items["items"][1]["track"]["id"], karma.as_str());

    // Bad requests leave the playlist alone.
    let many: Vec<String> = (0..101).map(|_| format!("spotify:track:{karma}")).collect();
    for (body, message) in [
        ("{not json".to_string(), "Error parsing JSON.".to_string()),
        (
            json!({ "uris": "spotify:track:x" }).to_string(),
            "Error parsing JSON.".to_string(),
        ),
        ("{}".to_string(), "No uris provided".to_string()),
        (
            json!({ "uris": [] }).to_string(),
            "No uris provided".to_string(),
        ),
        (
            json!({ "uris": ["spotify:track:short"] }).to_string(),
            "Invalid track uri: spotify:track:short".to_string(),
        ),
        (
            json!({ "uris": [format!("spotify:album:{karma}")] }).to_string(),
            format!("Invalid track uri: spotify:album:{karma}"),
        ),
        (
            json!({ "uris": [karma.clone()] }).to_string(),
            format!("Invalid track uri: {karma}"),
        ),
        (
            json!({ "uris": ["spotify:track:0000000000000000000000"] }).to_string(),
            "Payload contains a non-existing ID".to_string(),
        ),
        (
            json!({ "uris": many }).to_string(),
            "Too many ids requested".to_string(),
        ),
        (
            json!({ "uris": [format!("spotify:track:{karma}")], "position": 14 }).to_string(),
            "Index out of bounds".to_string(),
        ),
        (
            json!({ "uris": [format!("spotify:track:{karma}")], "position": -1 }).to_string(),
            "Index out of bounds".to_string(),
        ),
    ] {
        let (status, _, resp) = call(&m, Method::POST, &path, Some(&a), Some(&body)).await;
        assert_eq!(
            (status, resp),
            (StatusCode::BAD_REQUEST, api_error(400, &message)),
            "{body}"
        );
    }
    let (status, _, resp) = call(&m, Method::POST, &path, Some(&a), None).await;
    assert_eq!(
        (status, resp),
        (StatusCode::BAD_REQUEST, api_error(400, "No uris provided"))
    );

    // Who may change it.
    let one = json!({ "uris": [format!("spotify:track:{karma}")] }).to_string();
    let no_scope = user_token(&m, "alice", "playlist-modify-private").await;
    let (status, _, resp) = call(
        &m,
        Method::POST,
        &path,
        Some(s(&no_scope["access_token"])),
        Some(&one),
    )
    .await;
    assert_eq!(
        (status, resp),
        (
            StatusCode::FORBIDDEN,
            api_error(403, "Insufficient client scope")
        )
    );
    let bob = user_token(&m, "bob", scope).await;
    let (status, _, resp) = call(
        &m,
        Method::POST,
        &path,
        Some(s(&bob["access_token"])),
        Some(&one),
    )
    .await;
    assert_eq!(
        (status, resp),
        (
            StatusCode::FORBIDDEN,
            api_error(403, "You cannot add tracks to a playlist you don't own.")
        )
    );
    let app = app_token(&m).await;
    let (status, _, resp) = call(&m, Method::POST, &path, Some(&app), Some(&one)).await;
    assert_eq!(
        (status, resp),
        (
            StatusCode::UNAUTHORIZED,
            api_error(401, "Valid user authentication required")
        )
    );
    let (status, _, resp) = call(&m, Method::POST, &path, None, Some(&one)).await;
    assert_eq!(
        (status, resp),
        (
            StatusCode::UNAUTHORIZED,
            api_error(401, "No token provided")
        )
    );
    let (status, _, _) = call(
        &m,
        Method::POST,
        "/v1/playlists/0000000000000000000000/tracks",
        Some(&a),
        Some(&one),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = call(&m, Method::PATCH, &path, Some(&a), Some(&one)).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (_, _, items) = api(&m, &path, Some(&a)).await;
    assert_eq!(items["total"], 13);

    // Remove: every occurrence of a URI, or just the given positions.
    let (status, _, removed) = call(
        &m,
        Method::DELETE,
        &path,
        Some(&a),
        Some(&json!({ "tracks": [{ "uri": format!("spotify:track:{halo}") }] }).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{removed}");
    let after_remove = s(&removed["snapshot_id"]).to_string();
    assert_ne!(after_remove, after_add);
    let (_, _, items) = api(&m, &format!("{path}?limit=100"), Some(&a)).await;
    assert_eq!(items["total"], 10);
    let names: Vec<&str> = items["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| s(&i["track"]["name"]))
        .collect();
    assert!(!names.contains(&"Halo"), "{names:?}");
    assert_eq!(names.iter().filter(|n| **n == "Karma Police").count(), 2);
    assert_eq!(names[0], "Karma Police");

    let (status, _, resp) = call(
        &m,
        Method::DELETE,
        &path,
        Some(&a),
        Some(
            &json!({ "tracks": [{ "uri": format!("spotify:track:{karma}"), "positions": [1] }] })
                .to_string(),
        ),
    )
    .await;
    assert_eq!(
        (status, resp),
        (
            StatusCode::BAD_REQUEST,
            api_error(400, "Could not remove tracks, please check parameters.")
        )
    );
    let (status, _, _) = call(
        &m,
        Method::DELETE,
        &path,
        Some(&a),
        Some(
            &json!({ "tracks": [{ "uri": format!("spotify:track:{karma}"), "positions": [0] }] })
                .to_string(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, _, items) = api(&m, &format!("{path}?limit=100"), Some(&a)).await;
    assert_eq!(items["total"], 9);
    assert_eq!(items["items"][8]["track"]["id"], karma.as_str());

    for (body, message) in [
        ("{not json", "Error parsing JSON."),
        ("{}", "Missing required field: tracks"),
        (
            "{\"tracks\":[{\"uri\":\"spotify:track:bad\"}]}",
            "Invalid track uri: spotify:track:bad",
        ),
    ] {
        let (status, _, resp) = call(&m, Method::DELETE, &path, Some(&a), Some(body)).await;
        assert_eq!(
            (status, resp),
            (StatusCode::BAD_REQUEST, api_error(400, message)),
            "{body}"
        );
    }
    let (status, _, resp) = call(
        &m,
        Method::DELETE,
        &path,
        Some(s(&bob["access_token"])),
        Some(&json!({ "tracks": [{ "uri": format!("spotify:track:{karma}") }] }).to_string()),
    )
    .await;
    assert_eq!(
        (status, resp),
        (
            StatusCode::FORBIDDEN,
            api_error(
                403,
                "You cannot remove tracks from a playlist you don't own."
            )
        )
    );

    // A reset clears controls, not playlists; another mock has its own playlists.
    let resp = client()
        .post(format!("{}/__mock/reset", m.base_url()))
        .send()
        .await
        .expect("reset");
    assert!(resp.status().is_success());
    let (_, _, items) = api(&m, &path, Some(&a)).await;
    assert_eq!(items["total"], 9);
    let other = start().await;
    let (_, _, items) = api(&other, &path, Some(&app_token(&other).await)).await;
    assert_eq!(items["total"], 8);
}

#[tokio::test]
async fn player_play_and_pause() {
    use reqwest::Method;
    let m = start().await;
    let scope = "user-modify-playback-state user-read-currently-playing";
    let alice = user_token(&m, "alice", scope).await;
    let a = s(&alice["access_token"]).to_string();
    let playing = || api(&m, "/v1/me/player/currently-playing", Some(&a));

    let karma = track_id(&m, &a, "karma police").await;
    let halo = track_id(&m, &a, "beyonce halo").await;
    let body = json!({
        "uris": [format!("spotify:track:{karma}"), format!("spotify:track:{halo}")],
        "position_ms": 1000,
    })
    .to_string();
    let (status, headers, resp) =
        call(&m, Method::PUT, "/v1/me/player/play", Some(&a), Some(&body)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(resp, Value::Null);
    assert_eq!(header(&headers, "content-type"), None);
    let (status, _, now) = playing().await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(now["is_playing"], true);
    assert_eq!(now["item"]["id"], karma.as_str());
    assert_eq!(now["context"], Value::Null);
    assert!(now["progress_ms"].as_u64().expect("progress") >= 1000);

    let (status, _, resp) = call(&m, Method::PUT, "/v1/me/player/pause", Some(&a), None).await;
    assert_eq!((status, resp), (StatusCode::NO_CONTENT, Value::Null));
    let (_, _, paused) = playing().await;
    assert_eq!(paused["is_playing"], false);
    assert_eq!(paused["item"]["id"], karma.as_str());
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(playing().await.2["progress_ms"], paused["progress_ms"]);

    // Pausing a paused player and resuming a playing one fail as on Spotify.
    let restriction = json!({ "error": {
        "status": 403,
        "message": "Player command failed: Restriction violated",
        "reason": "UNKNOWN",
    }});
    let (status, _, resp) = call(&m, Method::PUT, "/v1/me/player/pause", Some(&a), None).await;
    assert_eq!((status, resp), (StatusCode::FORBIDDEN, restriction.clone()));
    let (status, _, _) = call(&m, Method::PUT, "/v1/me/player/play", Some(&a), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(playing().await.2["is_playing"], true);
    let (status, _, resp) = call(&m, Method::PUT, "/v1/me/player/play", Some(&a), Some("{}")).await;
    assert_eq!((status, resp), (StatusCode::FORBIDDEN, restriction));

    // A context with an offset.
    let (_, _, mine) = api(&m, "/v1/me/playlists", Some(&a)).await;
    let road_trip = s(&mine["items"][2]["uri"]).to_string();
    let body = json!({ "context_uri": road_trip, "offset": { "position": 2 } }).to_string();
    let (status, _, _) = call(&m, Method::PUT, "/v1/me/player/play", Some(&a), Some(&body)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, _, now) = playing().await;
    assert_eq!(now["item"]["name"], "Bohemian Rhapsody");
    assert_eq!(now["context"]["type"], "playlist");
    assert_eq!(now["context"]["uri"], road_trip.as_str());

    // The default for a user who never touched the player: the catalogue's track.
    let (status, _, _) = call(&m, Method::PUT, "/v1/me/player/pause", Some(&a), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let other = start().await;
    let fresh = user_token(&other, "alice", scope).await;
    let (_, _, now) = api(
        &other,
        "/v1/me/player/currently-playing",
        Some(s(&fresh["access_token"])),
    )
    .await;
    assert_eq!(now["item"]["name"], "Dancing Queen");
    assert_eq!(now["is_playing"], true);

    for (body, status, message) in [
        ("{not json", 400, "Error parsing JSON."),
        (
            "{\"uris\":[\"spotify:track:nope\"]}",
            400,
            "Invalid track uri: spotify:track:nope",
        ),
        (
            "{\"context_uri\":\"spotify:show:0000000000000000000000\"}",
            400,
            "Invalid context uri",
        ),
        (
            "{\"context_uri\":\"spotify:album:0000000000000000000000\"}",
            404,
            "Resource not found",
        ),
    ] {
        let (got, _, resp) =
            call(&m, Method::PUT, "/v1/me/player/play", Some(&a), Some(body)).await;
        assert_eq!(
            (got.as_u16(), resp),
            (status, api_error(status, message)),
            "{body}"
        );
    }

    // Premium only, the scope, a user.
    let bob = user_token(&m, "bob", scope).await;
    for path in ["/v1/me/player/play", "/v1/me/player/pause"] {
        let (status, _, resp) =
            call(&m, Method::PUT, path, Some(s(&bob["access_token"])), None).await;
        assert_eq!(
            (status, resp),
            (
                StatusCode::FORBIDDEN,
                json!({ "error": {
                    "status": 403,
                    "message": "Player command failed: Premium required",
                    "reason": "PREMIUM_REQUIRED",
                }})
            ),
            "{path}"
        );
    }
    let reader = user_token(&m, "alice", "user-read-currently-playing").await;
    let (status, _, resp) = call(
        &m,
        Method::PUT,
        "/v1/me/player/pause",
        Some(s(&reader["access_token"])),
        None,
    )
    .await;
    assert_eq!(
        (status, resp),
        (
            StatusCode::FORBIDDEN,
            api_error(403, "Insufficient client scope")
        )
    );
    let app = app_token(&m).await;
    let (status, _, resp) = call(&m, Method::PUT, "/v1/me/player/play", Some(&app), None).await;
    assert_eq!(
        (status, resp),
        (
            StatusCode::UNAUTHORIZED,
            api_error(401, "Valid user authentication required")
        )
    );
    let (status, _, _) = call(&m, Method::GET, "/v1/me/player/play", Some(&a), None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn large_playlist_pages() {
    let m = start().await;
    let alice = user_token(&m, "alice", "playlist-read-private").await;
    let a = s(&alice["access_token"]).to_string();
    let base = m.base_url();
    let (_, _, mine) = api(&m, "/v1/me/playlists", Some(&a)).await;
    let large = mine["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|p| p["id"] == mock_spotify::LARGE_PLAYLIST_ID)
        .expect("large playlist listed")
        .clone();
    assert_eq!(large["owner"]["id"], "alice");
    assert_eq!(large["tracks"]["total"], 1000);

    // An app token may read it too; follow `next` to the end.
    let t = app_token(&m).await;
    let id = mock_spotify::LARGE_PLAYLIST_ID;
    let first = format!("{base}/v1/playlists/{id}/tracks?limit=100");
    let resp = raw_client()
        .get(&first)
        .bearer_auth(&t)
        .send()
        .await
        .expect("page");
    let size = resp.bytes().await.expect("body").len();
    assert!(size > 100 * 1024, "first page is {size} bytes");

    let mut next = Some(first);
    let mut seen = 0;
    let mut pages = 0;
    while let Some(url) = next {
        let (status, _, page) = api(&m, &url, Some(&t)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(page["total"], 1000);
        assert_eq!(page["limit"], 100);
        assert_eq!(page["offset"], seen);
        assert_eq!(
            page["href"],
            format!("{base}/v1/playlists/{id}/tracks?offset={seen}&limit=100")
        );
        let expected_previous = (seen > 0).then(|| {
            format!(
                "{base}/v1/playlists/{id}/tracks?offset={}&limit=100",
                seen - 100
            )
        });
        assert_eq!(page["previous"], json!(expected_previous));
        seen += page["items"].as_array().expect("items").len();
        pages += 1;
        next = page["next"].as_str().map(str::to_string);
    }
    assert_eq!((pages, seen), (10, 1000));

    // Deterministic: the catalogue on repeat, the same on every mock.
    let (_, _, head) = api(&m, &format!("/v1/playlists/{id}/tracks?limit=1"), Some(&t)).await;
    assert_eq!(head["items"][0]["track"]["name"], "Dancing Queen");
    let (_, _, playlist) = api(&m, &format!("/v1/playlists/{id}"), Some(&t)).await;
    assert_eq!(
        playlist["tracks"]["items"].as_array().expect("items").len(),
        100
    );
    assert_eq!(
        playlist["tracks"]["next"],
        format!("{base}/v1/playlists/{id}/tracks?offset=100&limit=100")
    );
    let (status, _, _) = api(
        &m,
        &format!("/v1/playlists/{id}/tracks?limit=101"),
        Some(&t),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn faults_by_path_prefix() {
    let m = start().await;
    let c = client();
    let t = app_token(&m).await;
    let alice = user_token(&m, "alice", "").await;
    let a = s(&alice["access_token"]).to_string();
    let fault = |body: Value| {
        let c = c.clone();
        let url = format!("{}/__mock/fault", m.base_url());
        async move { c.post(url).json(&body).send().await.expect("fault") }
    };

    let resp =
        fault(json!({"target": "api", "status": 503, "times": 2, "path_prefix": "/v1/search"}))
            .await;
    assert!(resp.status().is_success());
    // Other paths neither fail nor use up the fault.
    assert_eq!(api(&m, "/v1/me", Some(&a)).await.0, StatusCode::OK);
    for _ in 0..2 {
        let (status, _, body) = api(&m, "/v1/search?q=abba&type=track", Some(&t)).await;
        assert_eq!(
            (status, body),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                api_error(503, "Service Unavailable")
            )
        );
        assert_eq!(api(&m, "/v1/me", Some(&a)).await.0, StatusCode::OK);
    }
    assert_eq!(
        api(&m, "/v1/search?q=abba&type=track", Some(&t)).await.0,
        StatusCode::OK
    );

    for (status, code) in [
        (502, StatusCode::BAD_GATEWAY),
        (504, StatusCode::GATEWAY_TIMEOUT),
    ] {
        fault(json!({"target": "api", "status": status, "path_prefix": "/v1/me"})).await;
        assert_eq!(
            api(&m, "/v1/search?q=abba&type=track", Some(&t)).await.0,
            StatusCode::OK
        );
        assert_eq!(api(&m, "/v1/me/playlists", Some(&a)).await.0, code);
        assert_eq!(api(&m, "/v1/me", Some(&a)).await.0, StatusCode::OK);
    }

    // A pure delay on one prefix: that path is served late but served.
    fault(json!({"target": "api", "delay_ms": 300, "times": 1, "path_prefix": "/v1/search"})).await;
    let started = Instant::now();
    assert_eq!(api(&m, "/v1/me", Some(&a)).await.0, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(
        api(&m, "/v1/search?q=abba&type=track", Some(&t)).await.0,
        StatusCode::OK
    );
    assert!(started.elapsed() >= Duration::from_millis(300));

    // Token faults take a prefix too.
    fault(json!({"target": "token", "status": 503, "path_prefix": "/api/token"})).await;
    assert_eq!(
        token(&m, DEMO, &[("grant_type", "client_credentials")])
            .await
            .0,
        StatusCode::SERVICE_UNAVAILABLE
    );

    for bad in [
        json!({"target": "api", "status": 503, "path_prefix": "v1/search"}),
        json!({"target": "api", "status": 503, "path": "/v1/search"}),
        json!({"target": "api", "status": 503, "path_prefix": 5}),
    ] {
        let resp = fault(bad.clone()).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert!(resp.json::<Value>().await.expect("json")["error"].is_string());
    }
}
