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
    assert_eq!(page["total"], 3);
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
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

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
    assert_eq!(log[0]["body"], Value::Null);
    let me = &log[5];
    assert_eq!(me["target"], "api");
    assert_eq!(me["path"], "/v1/me");
    assert_eq!(
        me["headers"]["authorization"],
        format!("Bearer {}", s(&alice["access_token"]))
    );
    assert_eq!(me["body"], Value::Null);
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
