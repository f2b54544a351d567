//! Talking to a gateway: browser-like clients, a whole login, raw bytes, the metrics.

use std::time::Duration;

use serde_json::Value;

use super::Gateway;

/// A browser-like client: a cookie jar and no automatic redirects.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

pub fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// The steps of a login, kept so tests can replay or tamper with them.
pub struct LoginTrip {
    pub authorize_url: String,
    pub callback_url: String,
    /// Where the gateway sent the browser after the callback.
    pub landed: String,
    pub set_cookies: Vec<String>,
}

impl LoginTrip {
    /// `name=value` of the session cookie the callback set.
    pub fn session_cookie(&self) -> String {
        self.set_cookies
            .iter()
            .find(|c| c.starts_with("spotify_gateway_session="))
            .and_then(|c| c.split(';').next())
            .expect("session cookie")
            .to_string()
    }
}

/// The status of an egress `GET /v1/me` carrying `assertion` (0 when nothing answered).
pub async fn egress_status(gw: &Gateway, assertion: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{}/v1/me", gw.egress_url()))
        .header("x-gateway-user", assertion)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// The status of an egress `GET path`, carrying `assertion` if given (0 when nothing
/// answered).
pub async fn egress_get_status(gw: &Gateway, path: &str, assertion: Option<&str>) -> u16 {
    let mut req = reqwest::Client::new().get(format!("{}{path}", gw.egress_url()));
    if let Some(a) = assertion {
        req = req.header("x-gateway-user", a);
    }
    req.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

/// An egress `GET path` from a client of its own, carrying `assertion` if given: status,
/// `Cache-Status` (empty when absent) and the JSON body (null when not JSON).
pub async fn egress_answer(
    gw: &Gateway,
    path: &str,
    assertion: Option<&str>,
) -> (u16, String, Value) {
    let mut req = reqwest::Client::new().get(format!("{}{path}", gw.egress_url()));
    if let Some(a) = assertion {
        req = req.header("x-gateway-user", a);
    }
    let resp = req.send().await.expect("egress answers");
    let status = resp.status().as_u16();
    let cache_status = resp
        .headers()
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (
        status,
        cache_status,
        resp.json().await.unwrap_or(Value::Null),
    )
}

/// Logs `user` in through the gateway's public listener with `browser`, approving at the mock.
pub async fn login(
    browser: &reqwest::Client,
    gw: &Gateway,
    user: &str,
    return_to: &str,
) -> LoginTrip {
    login_from(browser, &login_url(gw, return_to), user).await
}

/// `/auth/login?return_to=...` on `gw`.
fn login_url(gw: &Gateway, return_to: &str) -> String {
    let mut url =
        reqwest::Url::parse(&format!("{}/auth/login", gw.public_url())).expect("login url");
    url.query_pairs_mut().append_pair("return_to", return_to);
    url.to_string()
}

/// A whole login from `login_url` (the gateway's `/auth/login...`, as a redirect gave it),
/// approving as `user` at the mock.
pub async fn login_from(browser: &reqwest::Client, login_url: &str, user: &str) -> LoginTrip {
    let (resp, authorize_url, callback_url) = login_callback_from(browser, login_url, user).await;
    let status = resp.status();
    let landed = location(&resp);
    let set_cookies = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        status,
        302,
        "callback: {}",
        resp.text().await.unwrap_or_default()
    );
    LoginTrip {
        authorize_url,
        callback_url,
        landed,
        set_cookies,
    }
}

/// A login up to the gateway's answer to the callback, whatever it is (a refused user's
/// page, say): that answer, the authorize URL and the callback URL. `browser`'s headers
/// (`Accept`) go with every step.
pub async fn login_callback(
    browser: &reqwest::Client,
    gw: &Gateway,
    user: &str,
    return_to: &str,
) -> (reqwest::Response, String, String) {
    login_callback_from(browser, &login_url(gw, return_to), user).await
}

/// [`login_callback`] from `login_url`.
pub async fn login_callback_from(
    browser: &reqwest::Client,
    login_url: &str,
    user: &str,
) -> (reqwest::Response, String, String) {
    let resp = browser.get(login_url).send().await.expect("login");
    assert_eq!(resp.status(), 302, "login should redirect to Spotify");
    let authorize_url = location(&resp);
    let resp = browser
        .get(format!(
            "{authorize_url}&mock_user={user}&mock_decision=approve"
        ))
        .send()
        .await
        .expect("authorize");
    assert_eq!(
        resp.status(),
        302,
        "mock authorize: {:?}",
        resp.text().await
    );
    let callback_url = location(&resp);
    assert!(callback_url.contains("code="), "{callback_url}");
    let resp = browser.get(&callback_url).send().await.expect("callback");
    (resp, authorize_url, callback_url)
}

/// What the internal app received for a request through the public listener.
pub async fn via_public(browser: &reqwest::Client, gw: &Gateway, path: &str) -> (u16, Value) {
    let resp = browser
        .get(format!("{}{path}", gw.public_url()))
        .send()
        .await
        .expect("public");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Sends raw bytes (for targets an HTTP client would normalise, or requests no client would
/// send) on a connection of their own, and returns the status (0 when the connection closed
/// without an HTTP answer) and the whole answer, read until the server closes (10 s at most).
pub async fn raw_request(port: u16, request: impl AsRef<[u8]>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    // A server may answer and close before reading everything of an oversized request.
    let _ = stream.write_all(request.as_ref()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .strip_prefix("HTTP/1.")
        .and_then(|t| t.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Sends raw bytes to a loopback port and reads the first answer only: up to the end of its
/// body when it gives a `Content-Length`, else to the end of the connection (at most 10 s). For
/// checks of the status of a refusal that keeps the connection open; to see everything the
/// gateway sends back (a second, smuggled answer too), use [`raw_request`].
pub async fn raw_first_answer(port: u16, request: impl AsRef<[u8]>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let _ = stream.write_all(request.as_ref()).await;
    let mut answer = Vec::new();
    let read = async {
        let mut buf = [0u8; 16 * 1024];
        while !first_answer_complete(&answer) {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .strip_prefix("HTTP/1.")
        .and_then(|t| t.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Whether `answer` holds a whole HTTP/1 answer whose length its `Content-Length` gives.
fn first_answer_complete(answer: &[u8]) -> bool {
    let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
    let length = head.lines().find_map(|line| {
        let value = line.strip_prefix("content-length:")?;
        value.trim().parse::<usize>().ok()
    });
    length.is_some_and(|length| answer.len() >= end + 4 + length)
}

/// The admin listener's `/metrics` text.
pub async fn scrape(gw: &Gateway) -> String {
    reqwest::get(format!("{}/metrics", gw.admin_url()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

/// The value of the first series on `/metrics` whose line starts with `series` (a name, or a
/// name with its labels in Prometheus' order); `None` when there is none.
pub async fn metric_value(gw: &Gateway, series: &str) -> Option<f64> {
    scrape(gw)
        .await
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Signs the browser out at the gateway (`POST /auth/logout`); the answer must be 200.
pub async fn logout(browser: &reqwest::Client, gw: &Gateway) -> reqwest::Response {
    let resp = browser
        .post(format!("{}/auth/logout", gw.public_url()))
        .send()
        .await
        .expect("logout");
    assert_eq!(resp.status(), 200, "sign-out");
    resp
}

/// Ends every session of `user` through the admin API (`DELETE /admin/v1/users/{user}` with
/// the admin `token`); the answer must be 200.
pub async fn revoke_user(gw: &Gateway, user: &str, token: &str) -> reqwest::Response {
    let resp = reqwest::Client::new()
        .delete(format!("{}/admin/v1/users/{user}", gw.admin_url()))
        .bearer_auth(token)
        .send()
        .await
        .expect("revoke");
    assert_eq!(resp.status(), 200);
    resp
}

/// Disconnects the browser's user at the gateway as an API caller does (the form's token from
/// `GET /auth/disconnect` as JSON, then the same-origin `POST`); the answer must say so.
pub async fn disconnect(browser: &reqwest::Client, gw: &Gateway) -> Value {
    let (status, form) = via_public(browser, gw, "/auth/disconnect").await;
    assert_eq!(status, 200, "{form}");
    let token = form["csrf_token"].as_str().expect("the form's token");
    let resp = browser
        .post(format!("{}/auth/disconnect", gw.public_url()))
        .header("origin", gw.public_url())
        .form(&[("csrf", token)])
        .send()
        .await
        .expect("disconnect");
    assert_eq!(resp.status(), 200, "disconnect");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["disconnected"], true, "{body}");
    body
}

/// A browser-like client whose every request asks for a page.
pub fn page_browser() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "accept",
        reqwest::header::HeaderValue::from_static("text/html"),
    );
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .expect("client")
}
