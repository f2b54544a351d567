//! Helpers shared by the integration tests: starting a mock, HTTP clients, the
//! accounts-service steps (authorize, code, token) and Web API calls, and the error
//! bodies tests compare against.

// Each test file is its own crate and uses only some of these helpers.
#![allow(dead_code)]

use base64::Engine as _;
use mock_spotify::{AppMode, MockConfig, MockSpotify};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const REDIRECT: &str = "http://127.0.0.1:8080/auth/callback";
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

pub async fn start() -> MockSpotify {
    start_with(MockConfig::default()).await
}

/// A mock whose app has extended quota: every field and endpoint, as before February 2026.
pub async fn start_extended() -> MockSpotify {
    start_with(MockConfig {
        mode: AppMode::ExtendedQuota,
        ..MockConfig::default()
    })
    .await
}

pub async fn start_with(config: MockConfig) -> MockSpotify {
    let addr = "127.0.0.1:0".parse().expect("addr");
    MockSpotify::start(addr, config).await.expect("mock starts")
}

pub fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

pub fn challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

pub fn query_of(location: &str) -> Vec<(String, String)> {
    let query = location.split_once('?').map(|(_, q)| q).unwrap_or("");
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

pub fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// GET /authorize with `params`; returns (status, Location header).
pub async fn authorize(m: &MockSpotify, params: &[(&str, &str)]) -> (StatusCode, String, String) {
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
pub async fn code_for(m: &MockSpotify, user: &str, scope: &str, pkce: bool) -> String {
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
pub async fn token(
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

pub const DEMO: Option<(&str, &str)> = Some(("demo-client-id", "demo-client-secret"));

pub async fn user_token(m: &MockSpotify, user: &str, scope: &str) -> Value {
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

pub async fn api(
    m: &MockSpotify,
    path: &str,
    bearer: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let url = url(m, path);
    let mut req = client().get(url);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    read(req.send().await.expect("api")).await
}

pub fn api_error(status: u16, message: &str) -> Value {
    json!({ "error": { "status": status, "message": message } })
}

pub fn oauth_error(error: &str, description: &str) -> Value {
    json!({ "error": error, "error_description": description })
}

pub fn s(v: &Value) -> &str {
    v.as_str().expect("string")
}

/// A client that never decompresses, so tests see exactly what the mock sent (the
/// `no_gzip` call keeps that true if feature unification turns reqwest's gzip on).
pub fn raw_client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_gzip()
        .build()
        .expect("client")
}

/// Any request to the Web API; `body` is sent as JSON text. Returns the parsed body,
/// or `Null` for an empty one.
pub async fn call(
    m: &MockSpotify,
    method: reqwest::Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let url = url(m, path);
    let mut req = raw_client().request(method, url);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    if let Some(body) = body {
        req = req
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    read(req.send().await.expect("call")).await
}

pub fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read as _;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

/// The catalogue id of the first search hit for `q`.
pub async fn track_id(m: &MockSpotify, token: &str, q: &str) -> String {
    let (status, _, body) = api(
        m,
        &format!("/v1/search?type=track&limit=1&q={}", q.replace(' ', "+")),
        Some(token),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    s(&body["tracks"]["items"][0]["id"]).to_string()
}

pub async fn app_token(m: &MockSpotify) -> String {
    let (_, body) = token(m, DEMO, &[("grant_type", "client_credentials")]).await;
    s(&body["access_token"]).to_string()
}

/// `path` on the mock, or `path` itself when it is already absolute (a paging link).
fn url(m: &MockSpotify, path: &str) -> String {
    if path.starts_with("http") {
        path.to_string()
    } else {
        format!("{}{path}", m.base_url())
    }
}

/// (status, headers, parsed JSON body or `Null` for an empty one).
async fn read(resp: reqwest::Response) -> (StatusCode, reqwest::header::HeaderMap, Value) {
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
