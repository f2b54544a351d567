//! A login by hand, each step with explicit cookies (no jar, no redirects followed): a login
//! stopped between Spotify's consent and the gateway's callback ([`pending_login`]), a
//! callback with whatever cookie a test chooses, and what a response sets.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

use super::{location, Gateway};

pub const SESSION_COOKIE: &str = "spotify_gateway_session";
pub const LOGIN_COOKIE: &str = "spotify_gateway_session-login";

/// A client with no cookie jar and no redirects: every cookie is explicit.
pub fn plain() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The value a response sets for cookie `name`, if it sets one.
pub fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter_map(|pair| pair.split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_string())
}

/// Whether a response hands out a session (a non-empty session cookie).
pub fn creates_session(resp: &reqwest::Response) -> bool {
    set_cookie(resp, SESSION_COOKIE).is_some_and(|v| !v.is_empty())
}

pub fn query_value(url: &str, name: &str) -> String {
    url::Url::parse(url)
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// A login between Spotify's consent and the gateway's callback.
pub struct Pending {
    pub login_cookie: String,
    pub callback: String,
    pub state: String,
    pub code: String,
}

/// Starts a login on `gw` and approves it at the mock as `user`, stopping before the callback.
pub async fn pending_login(gw: &Gateway, user: &str) -> Pending {
    let resp = plain()
        .get(format!("{}/auth/login?return_to=/app", gw.public_url()))
        .send()
        .await
        .expect("login");
    assert_eq!(resp.status(), 302);
    let login_cookie = set_cookie(&resp, LOGIN_COOKIE).expect("login cookie");
    let resp = plain()
        .get(format!(
            "{}&mock_user={user}&mock_decision=approve",
            location(&resp)
        ))
        .send()
        .await
        .expect("authorize");
    assert_eq!(resp.status(), 302);
    let callback = location(&resp);
    Pending {
        login_cookie,
        state: query_value(&callback, "state"),
        code: query_value(&callback, "code"),
        callback,
    }
}

/// Sends a callback with an explicit login cookie (or none).
pub async fn callback(url: &str, login_cookie: Option<&str>, accept: &str) -> reqwest::Response {
    let mut req = plain().get(url).header("accept", accept);
    if let Some(c) = login_cookie {
        req = req.header("cookie", format!("{LOGIN_COOKIE}={c}"));
    }
    req.send().await.expect("callback")
}

/// Completes a pending login; returns the session cookie value.
pub async fn complete(p: &Pending) -> String {
    let resp = callback(&p.callback, Some(&p.login_cookie), "application/json").await;
    assert_eq!(resp.status(), 302, "{:?}", resp.text().await);
    set_cookie(&resp, SESSION_COOKIE).expect("session cookie")
}

/// A fresh session cookie for `user` on `gw`.
pub async fn session_for(gw: &Gateway, user: &str) -> String {
    complete(&pending_login(gw, user).await).await
}

/// Flips one character in the middle of a sealed value, keeping it valid base64url.
pub fn tamper(value: &str) -> String {
    let mut bytes = value.as_bytes().to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("ascii")
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The claims of an assertion (read, not verified: the gateway verifies them).
pub fn claims_of(assertion: &str) -> Value {
    let payload = assertion.split('.').nth(1).expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("claims")
}
