//! The adversarial suite (issue 8, threat model in SECURITY.md): requests that try to steal,
//! misuse or spoil the users' tokens and the app's secret.
//!
//! Every case checks three things: a clear refusal (or, where the request is legitimately
//! served, that the attack had no effect), no state change (no session created, nothing
//! consumed that should have survived) and no call reaching Spotify that should not. "State"
//! is observed from outside: the mock's counters and request log, what the app behind the
//! public listener received, the `logins_total{result="ok"}` counter and `/auth/userinfo`.
//!
//! Real gateway processes, the mock Spotify, and a recording app behind the public listener.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use serde_json::Value;

// The gateway library, as this file uses it (all of its paths are here).
use spotify_gateway::config::Config;
use spotify_gateway::crypto::Keyring;
use spotify_gateway::proxy::assertion::{verify, Claims};
use spotify_gateway::secret::{AccessToken, RefreshToken, Secret};
use spotify_gateway::session::{Scopes, SessionRecord};

const SESSION_COOKIE: &str = "spotify_gateway_session";
const LOGIN_COOKIE: &str = "spotify_gateway_session-login";
/// The session secret of "another deployment".
const OTHER_SECRET: &str = "another-deployment-secret-0123456789abcdef-xyz";
/// The identity headers the app must only ever get from the gateway.
const IDENTITY: [&str; 4] = [
    "x-spotify-user-id",
    "x-spotify-account-id",
    "x-spotify-scopes",
    "x-gateway-user",
];

// ---------------------------------------------------------------------------------------------
// Harness: the common stack with its recording app (common/apps.rs), and snapshots of
// everything an attack must not change
// ---------------------------------------------------------------------------------------------

/// `stack` with the recording app behind the public listener and room on the mock for a
/// second deployment (`other_deployment`), started.
async fn setup(stack: StackBuilder) -> Stack {
    stack.app(App::Recording).more_gateways(1).start().await
}

/// Everything a refused attack must leave as it was.
#[derive(Debug, PartialEq)]
struct Snapshot {
    /// The mock's counters: token requests by grant, API requests.
    spotify: Value,
    /// Length of the mock's request log (every token or API request, counted or not).
    spotify_log: usize,
    app_hits: usize,
    logins_ok: u64,
}

/// What the attacks read off a [`setup`] stack.
trait Observe {
    /// A second deployment: same mock, same settings, another session secret.
    async fn other_deployment(&self) -> (Gateway, Hits);
    async fn snapshot(&self) -> Snapshot;
    /// Nothing reached Spotify or the app and no login completed since `before`.
    async fn assert_untouched(&self, before: &Snapshot, case: &str);
    /// Nothing reached Spotify since `before` (the app may have served the request).
    async fn assert_spotify_untouched(&self, before: &Snapshot, case: &str);
    fn app_hits_since(&self, before: &Snapshot) -> Vec<AppHit>;
    /// The assertion the app receives for a request carrying `cookie`.
    async fn assertion_for(&self, cookie: &str) -> String;
    /// The status of `/auth/userinfo` for a request carrying `cookie`.
    async fn userinfo_status(&self, cookie: &str) -> u16;
}

impl Observe for Stack {
    async fn other_deployment(&self) -> (Gateway, Hits) {
        let ports = self.more_ports[0];
        let hits = start_recording_app(ports.app).await;
        let config = self
            .config_for(ports)
            .remove("session.secret_env")
            .set("session.secret", OTHER_SECRET);
        (Gateway::start(ports, &config).await, hits)
    }

    async fn snapshot(&self) -> Snapshot {
        // Read before any await: the app's handler takes the same lock.
        let app_hits = self.hits().lock().expect("hits").len();
        Snapshot {
            spotify: mock_stats(&self.mock).await,
            spotify_log: mock_requests(&self.mock).await.len(),
            app_hits,
            logins_ok: self
                .metric(r#"spotify_gateway_logins_total{result="ok"}"#)
                .await as u64,
        }
    }

    async fn assert_untouched(&self, before: &Snapshot, case: &str) {
        let now = self.snapshot().await;
        assert_eq!(&now, before, "{case}: the attack changed something");
    }

    async fn assert_spotify_untouched(&self, before: &Snapshot, case: &str) {
        let now = self.snapshot().await;
        assert_eq!(now.spotify, before.spotify, "{case}: Spotify was called");
        assert_eq!(
            now.spotify_log, before.spotify_log,
            "{case}: Spotify was called"
        );
        assert_eq!(now.logins_ok, before.logins_ok, "{case}: a login completed");
    }

    fn app_hits_since(&self, before: &Snapshot) -> Vec<AppHit> {
        self.hits().lock().expect("hits")[before.app_hits..].to_vec()
    }

    async fn assertion_for(&self, cookie: &str) -> String {
        let before = self.hits().lock().expect("hits").len();
        let resp = reqwest::Client::new()
            .get(format!("{}/app", self.gw.public_url()))
            .header("cookie", format!("{SESSION_COOKIE}={cookie}"))
            .send()
            .await
            .expect("app");
        assert_eq!(resp.status(), 200);
        let hits = self.hits().lock().expect("hits");
        hits[before..]
            .iter()
            .find_map(|h| {
                h.lookalike_values("x-gateway-user")
                    .first()
                    .map(|v| v.to_string())
            })
            .expect("assertion")
    }

    async fn userinfo_status(&self, cookie: &str) -> u16 {
        reqwest::Client::new()
            .get(format!("{}/auth/userinfo", self.gw.public_url()))
            .header("cookie", format!("{SESSION_COOKIE}={cookie}"))
            .send()
            .await
            .expect("userinfo")
            .status()
            .as_u16()
    }
}

/// A client with no cookie jar and no redirects: every cookie is explicit.
fn plain() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The value a response sets for cookie `name`, if it sets one.
fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
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
fn creates_session(resp: &reqwest::Response) -> bool {
    set_cookie(resp, SESSION_COOKIE).is_some_and(|v| !v.is_empty())
}

fn query_value(url: &str, name: &str) -> String {
    url::Url::parse(url)
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// A login between Spotify's consent and the gateway's callback.
struct Pending {
    login_cookie: String,
    callback: String,
    state: String,
    code: String,
}

/// Starts a login on `gw` and approves it at the mock as `user`, stopping before the callback.
async fn pending_login(gw: &Gateway, user: &str) -> Pending {
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
async fn callback(url: &str, login_cookie: Option<&str>, accept: &str) -> reqwest::Response {
    let mut req = plain().get(url).header("accept", accept);
    if let Some(c) = login_cookie {
        req = req.header("cookie", format!("{LOGIN_COOKIE}={c}"));
    }
    req.send().await.expect("callback")
}

/// Completes a pending login; returns the session cookie value.
async fn complete(p: &Pending) -> String {
    let resp = callback(&p.callback, Some(&p.login_cookie), "application/json").await;
    assert_eq!(resp.status(), 302, "{:?}", resp.text().await);
    set_cookie(&resp, SESSION_COOKIE).expect("session cookie")
}

/// A fresh session cookie for `user` on `gw`.
async fn session_for(gw: &Gateway, user: &str) -> String {
    complete(&pending_login(gw, user).await).await
}

/// Flips one character in the middle of a sealed value, keeping it valid base64url.
fn tamper(value: &str) -> String {
    let mut bytes = value.as_bytes().to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("ascii")
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn keys(secret: &str) -> Keyring {
    Keyring::new(&Secret::runtime(secret), None)
}

/// An HS256 assertion with these claims, signed with the assertion key of `secret`.
fn mint(secret: &str, claims: &Claims) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(keys(secret).assertion_key()),
    )
    .expect("sign")
}

/// The claims of an assertion (read, not verified).
fn claims_of(assertion: &str) -> Claims {
    let payload = assertion.split('.').nth(1).expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("claims")
}

// ---------------------------------------------------------------------------------------------
// Login: state, login cookie, code, error
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_callback_attacks_are_refused_and_change_nothing() {
    let mut s = setup(Stack::builder()).await;
    let (other_gw, _other_hits) = s.other_deployment().await;
    let victim = pending_login(&s.gw, "alice").await;
    // Another browser's login on the same gateway, and one on another deployment.
    let attacker = pending_login(&s.gw, "bob").await;
    let foreign = pending_login(&other_gw, "bob").await;
    // A real session cookie, to present where a login cookie belongs.
    let some_session = session_for(&s.gw, "bob").await;
    let no_state = victim
        .callback
        .replace(&format!("state={}", urlencode(&victim.state)), "");
    let callback_base = format!("{}/auth/callback", s.gw.public_url());

    // None of these consumes the victim's pending login: it completes afterwards.
    let cases: Vec<(&str, String, Option<String>)> = vec![
        (
            "forged state",
            format!("{callback_base}?state=forged-state&code={}", victim.code),
            Some(victim.login_cookie.clone()),
        ),
        (
            "missing state",
            no_state.clone(),
            Some(victim.login_cookie.clone()),
        ),
        (
            "callback without the pending-login cookie",
            victim.callback.clone(),
            None,
        ),
        (
            "state from another browser (its own login cookie)",
            victim.callback.clone(),
            Some(attacker.login_cookie.clone()),
        ),
        (
            "tampered login cookie",
            victim.callback.clone(),
            Some(tamper(&victim.login_cookie)),
        ),
        (
            "truncated login cookie",
            victim.callback.clone(),
            Some(victim.login_cookie[..victim.login_cookie.len() - 6].to_string()),
        ),
        (
            "session cookie presented as the login cookie",
            victim.callback.clone(),
            Some(some_session.clone()),
        ),
        (
            "login cookie and state from another deployment",
            format!(
                "{callback_base}?state={}&code={}",
                urlencode(&foreign.state),
                foreign.code
            ),
            Some(foreign.login_cookie.clone()),
        ),
        (
            "error=access_denied with a forged state",
            format!("{callback_base}?state=forged&error=access_denied"),
            Some(victim.login_cookie.clone()),
        ),
        (
            "oversized state",
            format!("{callback_base}?state={}&code=x", "s".repeat(16 * 1024)),
            Some(victim.login_cookie.clone()),
        ),
    ];
    for (name, url, cookie) in &cases {
        let before = s.snapshot().await;
        let resp = callback(url, cookie.as_deref(), "application/json").await;
        assert_eq!(resp.status(), 400, "{name}");
        assert!(!creates_session(&resp), "{name}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["error"], "invalid_state", "{name}: {body}");
        s.assert_untouched(&before, name).await;
    }
    let before = s.snapshot().await;
    let resp = plain()
        .post(&victim.callback)
        .header("cookie", format!("{LOGIN_COOKIE}={}", victim.login_cookie))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 405, "POST to the callback");
    assert!(!creates_session(&resp));
    s.assert_untouched(&before, "POST to the callback").await;

    // The victim's login was not spoiled by any of that.
    let cookie = complete(&victim).await;
    assert_eq!(s.userinfo_status(&cookie).await, 200);

    // Reused state: the completed callback, replayed with its own cookie.
    let before = s.snapshot().await;
    let resp = callback(
        &victim.callback,
        Some(&victim.login_cookie),
        "application/json",
    )
    .await;
    assert_eq!(resp.status(), 400, "reused state");
    assert!(!creates_session(&resp));
    s.assert_untouched(&before, "reused state").await;

    // Code replay under a fresh state: the attacker's own login cookie and state with the
    // victim's used code. The state is genuine, so the gateway redeems the code once;
    // Spotify refuses it and nothing else happens (no profile call, no session).
    let before = s.snapshot().await;
    let url = format!(
        "{callback_base}?state={}&code={}",
        urlencode(&attacker.state),
        victim.code
    );
    let resp = callback(&url, Some(&attacker.login_cookie), "application/json").await;
    assert_eq!(resp.status(), 400, "code replay");
    assert!(!creates_session(&resp));
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "invalid_code");
    let now = s.snapshot().await;
    assert_eq!(
        now.spotify["token_requests"]["authorization_code"],
        before.spotify["token_requests"]["authorization_code"]
            .as_u64()
            .expect("n")
            + 1,
        "the replayed code is redeemed once, and refused"
    );
    assert_eq!(now.spotify["api_requests"], before.spotify["api_requests"]);
    assert_eq!(now.logins_ok, before.logins_ok, "code replay");

    // error= injection, HTML and JSON: the provider's error is reduced to an RFC 6749 code
    // and escaped; the pending login is used up (it must start over), nothing reaches Spotify.
    for (name, accept) in [
        ("error= injection (HTML)", "text/html"),
        ("error= injection (JSON)", "application/json"),
    ] {
        let p = pending_login(&s.gw, "alice").await;
        let before = s.snapshot().await;
        let url = format!(
            "{callback_base}?state={}&error={}&error_description={}",
            urlencode(&p.state),
            urlencode("<script>alert(document.cookie)</script>\r\nSet-Cookie: x=1"),
            urlencode("<img src=x onerror=alert(1)>"),
        );
        let resp = callback(&url, Some(&p.login_cookie), accept).await;
        assert_eq!(resp.status(), 400, "{name}");
        assert!(!creates_session(&resp), "{name}");
        assert!(set_cookie(&resp, "x").is_none(), "{name}: header injection");
        if accept == "text/html" {
            let csp = resp.headers()["content-security-policy"]
                .to_str()
                .unwrap_or("");
            assert!(csp.contains("default-src 'none'"), "{name}: {csp}");
        }
        let body = resp.text().await.expect("body");
        for needle in ["<script", "<img", "onerror", "Set-Cookie"] {
            assert!(!body.contains(needle), "{name}: {needle} in {body}");
        }
        assert!(body.contains("scriptalertdocumentcookiescript"), "{body}");
        s.assert_untouched(&before, name).await;
    }

    // A genuine state with an empty code: refused without calling Spotify.
    let p = pending_login(&s.gw, "alice").await;
    let before = s.snapshot().await;
    let url = format!("{callback_base}?state={}&code=", urlencode(&p.state));
    let resp = callback(&url, Some(&p.login_cookie), "application/json").await;
    assert_eq!(resp.status(), 400, "empty code");
    assert!(!creates_session(&resp));
    s.assert_untouched(&before, "empty code").await;

    // Expired state. The login cookie lives as long as the pending record (LOGIN_TTL, 10
    // min); once the browser drops it the callback is the "without the pending-login cookie"
    // case above. A cookie kept past that finds no pending record: every store hides expired
    // values (tests/store_backends.rs). A restart of this memory-store gateway loses the
    // record the same way, which is what this case uses instead of waiting 10 minutes.
    let p = pending_login(&s.gw, "alice").await;
    s.gw.restart().await;
    let before = s.snapshot().await;
    let resp = callback(&p.callback, Some(&p.login_cookie), "application/json").await;
    assert_eq!(resp.status(), 400, "expired state");
    assert!(!creates_session(&resp));
    s.assert_untouched(&before, "expired state").await;
}

// ---------------------------------------------------------------------------------------------
// Session cookies
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_session_cookies_open_no_session() {
    let s = setup(Stack::builder()).await;
    let (other_gw, _other_hits) = s.other_deployment().await;
    let alice = session_for(&s.gw, "alice").await;
    let foreign = session_for(&other_gw, "alice").await;
    let login_cookie = pending_login(&s.gw, "alice").await.login_cookie;
    let logged_out = session_for(&s.gw, "bob").await;
    let resp = plain()
        .post(format!("{}/auth/logout", s.gw.public_url()))
        .header("cookie", format!("{SESSION_COOKIE}={logged_out}"))
        .send()
        .await
        .expect("logout");
    assert_eq!(resp.status(), 200);

    let many: String = (0..500)
        .map(|i| format!("junk{i}=value{i}; "))
        .collect::<String>()
        + &format!("{SESSION_COOKIE}={}", tamper(&alice));
    let cases: Vec<(&str, String)> = vec![
        ("tampered", format!("{SESSION_COOKIE}={}", tamper(&alice))),
        (
            "truncated",
            format!("{SESSION_COOKIE}={}", &alice[..alice.len() - 5]),
        ),
        (
            "from another deployment's secret",
            format!("{SESSION_COOKIE}={foreign}"),
        ),
        (
            "a login cookie as the session cookie",
            format!("{SESSION_COOKIE}={login_cookie}"),
        ),
        ("old after logout", format!("{SESSION_COOKIE}={logged_out}")),
        ("empty", format!("{SESSION_COOKIE}=")),
        ("not base64", format!("{SESSION_COOKIE}=%3Cscript%3E!!..--")),
        (
            "oversized (9 KB)",
            format!("{SESSION_COOKIE}={}", "A".repeat(9 * 1024)),
        ),
        ("500 cookies", many),
    ];
    for (name, cookie) in &cases {
        let before = s.snapshot().await;
        let resp = plain()
            .get(format!("{}/auth/userinfo", s.gw.public_url()))
            .header("cookie", cookie)
            .send()
            .await
            .expect("userinfo");
        assert_eq!(resp.status(), 401, "{name}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["error"], "unauthenticated", "{name}");
        // The app is not reached with it either.
        let resp = plain()
            .get(format!("{}/app", s.gw.public_url()))
            .header("cookie", cookie)
            .header("accept", "application/json")
            .send()
            .await
            .expect("app");
        assert_eq!(resp.status(), 401, "{name}");
        assert!(!creates_session(&resp), "{name}");
        s.assert_untouched(&before, name).await;
    }

    // Beyond pingora's limits (1 MiB of header, 256 header lines): refused while parsing.
    let huge = format!(
        "GET /auth/userinfo HTTP/1.1\r\nHost: gw\r\nCookie: {SESSION_COOKIE}={}\r\nConnection: close\r\n\r\n",
        "A".repeat(1100 * 1024)
    );
    let mut lines =
        String::from("GET /auth/userinfo HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n");
    for i in 0..300 {
        lines.push_str(&format!("Cookie: c{i}=v\r\n"));
    }
    lines.push_str(&format!("Cookie: {SESSION_COOKIE}={alice}\r\n\r\n"));
    for (name, request) in [
        ("oversized Cookie header (1.1 MB)", huge),
        ("300 Cookie header lines", lines),
    ] {
        let before = s.snapshot().await;
        let (status, answer) = raw_request(s.gw.ports.public, request.as_bytes()).await;
        assert!(
            status == 400,
            "{name}: {status} {}",
            &answer[..answer.len().min(200)]
        );
        assert!(
            !answer.to_ascii_lowercase().contains("set-cookie"),
            "{name}"
        );
        s.assert_untouched(&before, name).await;
    }
    // The real cookie still works: nothing above spoiled it.
    assert_eq!(s.userinfo_status(&alice).await, 200);
}

// ---------------------------------------------------------------------------------------------
// Open redirects
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn return_to_never_leaves_the_site() {
    let s = setup(Stack::builder()).await;
    let long = format!("/{}", "a".repeat(3000));
    // Decoded values (sent form-encoded).
    let decoded = [
        "https://evil.example/",
        "http://evil.example",
        "HTTPS://EVIL.EXAMPLE",
        "//evil.example",
        "///evil.example",
        "////evil.example/x",
        "/\\evil.example",
        "\\/evil.example",
        "/\\/evil.example",
        "\\\\evil.example",
        "https:evil.example",
        "https:/evil.example",
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "evil.example",
        " //evil.example",
        "\t//evil.example",
        "/\t/evil.example",
        "/.//evil.example",
        "/..//evil.example",
        "/a/../..//evil.example",
        "\u{FF0F}\u{FF0F}evil.example",
        "\u{2215}\u{2215}evil.example",
        "/\u{0085}/evil.example",
        "/ok\r\nSet-Cookie: x=1",
        "/ok\nLocation: https://evil.example",
        "/ok\u{0000}",
        long.as_str(),
    ];
    // Already on the wire (double encoding and the like), not encoded again.
    let wire = [
        "%2F%2Fevil.example",
        "%252F%252Fevil.example",
        "%5C%5Cevil.example",
        "/ok%0d%0aLocation:%20https://evil.example",
        "https%3A%2F%2Fevil.example",
    ];
    let queries: Vec<(String, String)> = decoded
        .iter()
        .map(|d| (format!("{d:?}"), urlencode(d)))
        .chain(wire.iter().map(|w| (format!("wire {w}"), w.to_string())))
        .collect();
    for (name, query) in &queries {
        let before = s.snapshot().await;
        let request = format!(
            "GET /auth/login?return_to={query} HTTP/1.1\r\nHost: gw\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        );
        let (status, answer) = raw_request(s.gw.ports.public, request.as_bytes()).await;
        assert_eq!(status, 400, "{name}: {answer}");
        let lower = answer.to_ascii_lowercase();
        assert!(!lower.contains("\r\nlocation:"), "{name}: {answer}");
        // No login started: no login cookie, no pending record to find later.
        assert!(!lower.contains("set-cookie"), "{name}: {answer}");
        assert!(answer.contains("invalid_return_to"), "{name}: {answer}");
        s.assert_untouched(&before, name).await;
    }

    // Odd but harmless values are kept as paths on this site, all the way to the redirect
    // after the callback.
    for value in [
        "/%2F%2Fevil.example",
        "/\u{FF0F}evil.example",
        "/\u{2028}//evil",
    ] {
        let b = browser();
        let trip = login(&b, &s.gw, "alice", value).await;
        let base = url::Url::parse("https://gateway.example/").expect("base");
        let landed = base.join(&trip.landed).expect("landed");
        assert_eq!(
            landed.origin(),
            base.origin(),
            "{value:?} → {}",
            trip.landed
        );
        assert!(
            trip.landed.starts_with('/') && !trip.landed.starts_with("//"),
            "{value:?} → {}",
            trip.landed
        );
    }
    // A browser without a session sent to //evil.example on the site is asked to log in
    // and come back to the site's root, not to evil.example.
    let (status, answer) = raw_request(
        s.gw.ports.public,
        b"GET //evil.example/x HTTP/1.1\r\nHost: gw\r\nAccept: text/html\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 302, "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("\r\nlocation: /auth/login?return_to=%2f\r\n"),
        "{answer}"
    );
}

// ---------------------------------------------------------------------------------------------
// Identity spoofing
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_identity_headers_never_reach_the_app_as_sent() {
    let s = setup(Stack::builder()).await;
    let alice = session_for(&s.gw, "alice").await;
    // Every spoofed value carries a marker that no real value contains.
    let spoof: &[(&str, &str)] = &[
        ("X-Spotify-User-Id", "bob-SPOOFED"),
        ("X-SPOTIFY-USER-ID", "bob-SPOOFED"),
        ("x-spotify-scopes", "everything-SPOOFED ugc-image-upload"),
        ("X-Spotify-Account-Id", "acc-SPOOFED"),
        ("X_Spotify_Account_Id", "acc-SPOOFED"),
        ("X-Gateway-User", "forged.assertion.SPOOFED"),
        // CGI/WSGI-style servers read `_` as `-`.
        ("X_Spotify_User_Id", "bob-SPOOFED"),
        ("x_gateway_user", "forged.assertion.SPOOFED"),
        ("X-Spotify_Scopes", "everything-SPOOFED"),
    ];
    let send = |path: &str, cookie: Option<&str>| {
        let mut req = plain()
            .get(format!("{}{path}", s.gw.public_url()))
            .header("accept", "application/json");
        for (n, v) in spoof {
            req = req.header(*n, *v);
        }
        if let Some(c) = cookie {
            req = req.header("cookie", format!("{SESSION_COOKIE}={c}"));
        }
        req.send()
    };
    let no_spoof_reaches = |hit: &AppHit, case: &str| {
        for name in IDENTITY {
            for v in hit.lookalike_values(name) {
                assert!(
                    !v.contains("SPOOFED"),
                    "{case}: {name}: {v} reached the app"
                );
            }
        }
    };

    // Without a session, on a public path: the app gets no identity at all.
    let before = s.snapshot().await;
    let resp = send("/public/logo.svg", None).await.expect("public");
    assert_eq!(resp.status(), 200);
    let hits = s.app_hits_since(&before);
    assert_eq!(hits.len(), 1);
    for name in IDENTITY {
        assert!(
            hits[0].lookalike_values(name).is_empty(),
            "public path: {name}"
        );
    }
    s.assert_spotify_untouched(&before, "public path").await;

    // With alice's session: exactly the gateway's values.
    let before = s.snapshot().await;
    let resp = send("/app", Some(&alice)).await.expect("app");
    assert_eq!(resp.status(), 200);
    let hits = s.app_hits_since(&before);
    assert_eq!(hits.len(), 1);
    no_spoof_reaches(&hits[0], "alice's session");
    assert_eq!(hits[0].lookalike_values("x-spotify-user-id"), ["alice"]);
    assert_eq!(hits[0].lookalike_values("x-spotify-account-id").len(), 1);
    let assertion = hits[0].lookalike_values("x-gateway-user");
    assert_eq!(assertion.len(), 1);
    let claims = verify(&keys(SESSION_SECRET), assertion[0]).expect("valid");
    assert_eq!(claims.sub, "alice");
    s.assert_spotify_untouched(&before, "alice's session").await;

    // Without a session, on a protected path: refused, the app is not reached.
    let before = s.snapshot().await;
    let resp = send("/app", None).await.expect("app");
    assert_eq!(resp.status(), 401);
    s.assert_untouched(&before, "no session").await;

    // A header smuggled inside another one with a bare LF is still a client header.
    let before = s.snapshot().await;
    let (status, answer) = raw_request(
        s.gw.ports.public,
        b"GET /public/x HTTP/1.1\r\nHost: gw\r\nX-Note: a\nX-Spotify-User-Id: bob-SPOOFED\r\nConnection: close\r\n\r\n",
    )
    .await;
    // httparse takes a bare LF as a line end: two headers, and the spoofed one is stripped.
    assert_eq!(status, 200, "bare LF: {answer}");
    assert_eq!(s.app_hits_since(&before).len(), 1, "bare LF");
    for hit in s.app_hits_since(&before) {
        no_spoof_reaches(&hit, "bare LF");
    }
    s.assert_spotify_untouched(&before, "bare LF").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_and_foreign_assertions_are_refused_on_egress() {
    // No app token: a call that names no valid user gets nothing at all.
    let s = setup(Stack::builder().set("egress.app_token", false)).await;
    let (other_gw, _other_hits) = s.other_deployment().await;
    let alice_cookie = session_for(&s.gw, "alice").await;
    let alice = s.assertion_for(&alice_cookie).await;
    let bob_cookie = session_for(&s.gw, "bob").await;
    let bob = s.assertion_for(&bob_cookie).await;
    let ended_cookie = session_for(&s.gw, "bob").await;
    let ended = s.assertion_for(&ended_cookie).await;
    let resp = plain()
        .post(format!("{}/auth/logout", s.gw.public_url()))
        .header("cookie", format!("{SESSION_COOKIE}={ended_cookie}"))
        .send()
        .await
        .expect("logout");
    assert_eq!(resp.status(), 200);
    // A genuine assertion from another deployment, for its own alice.
    let foreign = {
        let cookie = session_for(&other_gw, "alice").await;
        let resp = plain()
            .get(format!("{}/app", other_gw.public_url()))
            .header("cookie", format!("{SESSION_COOKIE}={cookie}"))
            .send()
            .await
            .expect("other app");
        let seen: Value = resp.json().await.expect("json");
        seen["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .find(|h| h[0] == "x-gateway-user")
            .and_then(|h| h[1].as_str())
            .expect("assertion")
            .to_string()
    };
    // Warm: alice's token works, so refusals below are the assertion's doing.
    let resp = plain()
        .get(format!("{}/v1/me", s.gw.egress_url()))
        .header("x-gateway-user", &alice)
        .send()
        .await
        .expect("egress");
    assert_eq!(resp.status(), 200);

    let real = claims_of(&alice);
    let now = now_secs();
    let with = |f: &dyn Fn(&mut Claims)| {
        let mut c = claims_of(&alice);
        f(&mut c);
        c
    };
    let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);
    let parts: Vec<&str> = alice.split('.').collect();
    let bob_claims = serde_json::to_string(&with(&|c| c.sub = "bob".into())).expect("json");
    let cases: Vec<(&str, String)> = vec![
        ("garbage", "not-an-assertion".into()),
        ("three dots of garbage", "a.b.c".into()),
        (
            "alg none",
            format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), parts[1]),
        ),
        (
            "tampered claims (sub = bob), signature kept",
            format!("{}.{}.{}", parts[0], b64(&bob_claims), parts[2]),
        ),
        ("signature stripped", format!("{}.{}.", parts[0], parts[1])),
        (
            "wrong key",
            mint(
                "an-attackers-guess-at-the-secret-0123456789",
                &with(&|c| c.iat = now),
            ),
        ),
        ("genuine, from another deployment", foreign),
        (
            "expired (right key)",
            mint(
                SESSION_SECRET,
                &with(&|c| {
                    c.iat = now - 600;
                    c.exp = now - 1;
                }),
            ),
        ),
        (
            "wrong issuer (right key)",
            mint(SESSION_SECRET, &with(&|c| c.iss = "someone-else".into())),
        ),
        (
            "alice's name on bob's session (right key)",
            mint(SESSION_SECRET, &with(&|c| c.sid = claims_of(&bob).sid)),
        ),
        (
            "a session key that does not exist (right key)",
            mint(SESSION_SECRET, &with(&|c| c.sid = "no-such-session".into())),
        ),
        ("after logout", ended),
        ("oversized", format!("{}.{}", alice, "A".repeat(4096))),
    ];
    assert_eq!(real.sub, "alice");
    for (name, assertion) in &cases {
        let before = s.snapshot().await;
        let resp = plain()
            .get(format!("{}/v1/me", s.gw.egress_url()))
            .header("x-gateway-user", assertion)
            .send()
            .await
            .expect("egress");
        assert_eq!(resp.status(), 401, "{name}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["error"]["status"], 401, "{name}");
        s.assert_untouched(&before, name).await;
        // The same forgery as a bearer token is ignored: the call names no user.
        let before = s.snapshot().await;
        let resp = plain()
            .get(format!("{}/v1/me", s.gw.egress_url()))
            .bearer_auth(assertion)
            .send()
            .await
            .expect("egress");
        assert_eq!(resp.status(), 401, "{name} as bearer");
        s.assert_untouched(&before, name).await;
    }

    // A plain user id is not trusted by default; a non-UTF-8 assertion is no assertion.
    let before = s.snapshot().await;
    let resp = plain()
        .get(format!("{}/v1/me", s.gw.egress_url()))
        .header("x-spotify-user-id", "alice")
        .send()
        .await
        .expect("egress");
    assert_eq!(resp.status(), 401, "untrusted X-Spotify-User-Id");
    s.assert_untouched(&before, "untrusted X-Spotify-User-Id")
        .await;
    let (status, answer) = raw_request(
        s.gw.ports.egress,
        b"GET /v1/me HTTP/1.1\r\nHost: gw\r\nX-Gateway-User: \xff\xfe\xfd\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 401, "non-UTF-8: {answer}");
    s.assert_untouched(&before, "non-UTF-8 assertion").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_user_header_needs_loopback_or_the_loud_setting() {
    // Start-up refuses it on a network address, naming key and line.
    let ports = Ports::new();
    let text = GatewayConfig::template(ports, "http://127.0.0.1:9")
        .set("listen.egress", format!("0.0.0.0:{}", ports.egress))
        .set("egress.trust_user_header", true)
        .to_string();
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, &text).expect("write");
    let line = text
        .lines()
        .position(|l| l.starts_with("trust_user_header"))
        .expect("line")
        + 1;
    let envs = [
        ("TEST_CLIENT_SECRET", CLIENT_SECRET),
        ("TEST_SESSION_SECRET", SESSION_SECRET),
    ];
    for command in ["check-config", "run"] {
        let (code, _out, err) =
            run_cli(&[command, "--config", path.to_str().expect("path")], &envs);
        assert_eq!(code, 2, "{command}: {err}");
        assert!(
            err.contains(&format!("line {line}, key `egress.trust_user_header`")),
            "{command}: {err}"
        );
        assert!(err.contains("allow_trusted_header_on_network"), "{err}");
    }

    // With the loud setting, from a non-loopback address of this machine: honoured, and the
    // start-up log says what that means. (A loopback-bound listener only ever sees loopback
    // peers; the refusal of non-loopback peers without the setting is the unit test
    // `trusted_user_header_only_from_loopback_unless_allowed` in proxy/egress.rs.)
    let Some(ip) = non_loopback_ip() else {
        eprintln!("no non-loopback IPv4 address on this machine: network part not run");
        return;
    };
    let ports = Ports::new();
    let s = Stack::builder()
        .ports(ports)
        .app(App::Recording)
        .set("listen.egress", format!("0.0.0.0:{}", ports.egress))
        .set("egress.app_token", false)
        .set("egress.trust_user_header", true)
        .set("egress.allow_trusted_header_on_network", true)
        .start()
        .await;
    let gw = &s.gw;
    assert!(
        gw.log().contains("SECURITY WARNING")
            && gw.log().contains("allow_trusted_header_on_network"),
        "{}",
        gw.log()
    );
    session_for(gw, "bob").await;
    let from_network = reqwest::Client::builder()
        .local_address(Some(ip))
        .build()
        .expect("client");
    let resp = from_network
        .get(format!("http://{ip}:{}/v1/me", ports.egress))
        .header("x-spotify-user-id", "bob")
        .send()
        .await
        .expect("egress from the network");
    assert_eq!(resp.status(), 200);
    let me: Value = resp.json().await.expect("json");
    assert_eq!(me["id"], "bob");
}

/// toml_edit 0.23 panics on some malformed input (found by fuzz/config_parse). The gateway
/// must refuse such a file with a clear error: at start-up, and at SIGHUP without losing the
/// task that handles the next SIGHUP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_that_crashes_the_toml_parser_is_refused_at_start_and_on_reload() {
    const CRASHER: &str = "==\n.=";
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, CRASHER).expect("write");
    for command in ["check-config", "run"] {
        let (code, _out, err) = run_cli(&[command, "--config", path.to_str().expect("path")], &[]);
        assert_eq!(code, 2, "{command}: {err}");
        assert!(err.contains("key `(syntax)`"), "{command}: {err}");
    }

    let s = setup(Stack::builder()).await;
    let original = s.gw.config();
    // Not TOML at all, so written as it is.
    std::fs::write(&s.gw.config_path, CRASHER).expect("write");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(s.gw.pid(), libc::SIGHUP) };
    s.gw.wait_until(
        Duration::from_secs(5),
        "the reload error in the log",
        || async { s.gw.log().contains("config reload failed") },
    )
    .await;
    // The next SIGHUP, with a good file, is still handled.
    let opened = original.set("upstream.public_paths", ["/public/", "/open/"]);
    s.gw.write_config(&opened);
    // SAFETY: as above.
    unsafe { libc::kill(s.gw.pid(), libc::SIGHUP) };
    s.gw.wait_until(
        Duration::from_secs(5),
        "the second reload to make /open/ public",
        || async {
            let resp = plain()
                .get(format!("{}/open/x", s.gw.public_url()))
                .send()
                .await
                .expect("open path");
            resp.status() == 200
        },
    )
    .await;
}

/// A non-loopback IPv4 address of this machine, if it has one.
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    let out = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|a| a.parse::<std::net::IpAddr>().ok())
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
}

// ---------------------------------------------------------------------------------------------
// Request smuggling and parsing
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_smuggling_requests_are_refused() {
    let s = setup(Stack::builder()).await;
    // Warm the app token so a refused request cannot hide behind a token fetch.
    let resp = plain()
        .get(format!("{}/v1/search?q=a&type=track", s.gw.egress_url()))
        .send()
        .await
        .expect("warm");
    assert_eq!(resp.status(), 200);
    let (egress, public) = (s.gw.ports.egress, s.gw.ports.public);
    let big = "a".repeat(1100 * 1024);
    let many_headers: String = (0..300).map(|i| format!("X-H{i}: v\r\n")).collect();
    let cases: Vec<(&str, u16, Vec<u8>, &[u16])> = vec![
        (
            "duplicate Content-Length, different values",
            egress,
            b"POST /v1/search HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nContent-Length: 48\r\n\r\nhello".to_vec(),
            &[400],
        ),
        (
            "Content-Length list",
            public,
            b"POST /public/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 5, 48\r\n\r\nhello".to_vec(),
            &[400],
        ),
        (
            "negative Content-Length",
            egress,
            b"POST /v1/search HTTP/1.1\r\nHost: gw\r\nContent-Length: -1\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "signed Content-Length",
            public,
            b"POST /public/x HTTP/1.1\r\nHost: gw\r\nContent-Length: +5\r\n\r\nhello".to_vec(),
            &[400],
        ),
        (
            "Transfer-Encoding not ending in chunked",
            egress,
            b"POST /v1/search HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "Transfer-Encoding: xchunked",
            public,
            b"POST /public/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "Transfer-Encoding in HTTP/1.0",
            egress,
            b"POST /v1/search HTTP/1.0\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "space before the colon",
            egress,
            b"GET /v1/search HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding : chunked\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "obs-fold",
            egress,
            b"GET /v1/search?q=a&type=track HTTP/1.1\r\nHost: gw\r\nX-Note: a\r\n folded\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "obs-fold on the public listener",
            public,
            b"GET /public/x HTTP/1.1\r\nHost: gw\r\nX-Note: a\r\n X-Spotify-User-Id: bob\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "bare CR",
            egress,
            b"GET /v1/search?q=a&type=track HTTP/1.1\r\nHost: gw\r\nX-Note: a\rX-Spotify-User-Id: bob\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "NUL in a header value",
            public,
            b"GET /public/x HTTP/1.1\r\nHost: gw\r\nX-Note: a\0b\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "header line without a colon",
            egress,
            b"GET /v1/search?q=a&type=track HTTP/1.1\r\nHost: gw\r\nno-colon-here\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "oversized header (1.1 MB)",
            egress,
            format!("GET /v1/search?q=a&type=track HTTP/1.1\r\nHost: gw\r\nX-Big: {big}\r\n\r\n").into_bytes(),
            &[400],
        ),
        (
            "300 header lines",
            public,
            format!("GET /public/x HTTP/1.1\r\nHost: gw\r\n{many_headers}\r\n").into_bytes(),
            &[400],
        ),
        (
            "oversized URI (1.1 MB)",
            egress,
            format!("GET /v1/search?q={big} HTTP/1.1\r\nHost: gw\r\n\r\n").into_bytes(),
            &[400],
        ),
        (
            "invalid method characters",
            egress,
            b"G(T /v1/search?q=a&type=track HTTP/1.1\r\nHost: gw\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "lowercase method",
            egress,
            b"get /v1/search?q=a&type=track HTTP/1.1\r\nHost: gw\r\n\r\n".to_vec(),
            &[405],
        ),
        (
            "TRACE on egress (would echo the injected token)",
            egress,
            b"TRACE /v1/search HTTP/1.1\r\nHost: gw\r\n\r\n".to_vec(),
            &[405],
        ),
        (
            "TRACE on the public listener",
            public,
            b"TRACE /public/x HTTP/1.1\r\nHost: gw\r\n\r\n".to_vec(),
            &[405],
        ),
        (
            "unknown method on egress",
            egress,
            b"PROPFIND /v1/search HTTP/1.1\r\nHost: gw\r\n\r\n".to_vec(),
            &[405],
        ),
        (
            "CONNECT on the public listener",
            public,
            b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n".to_vec(),
            &[405],
        ),
        (
            "two Host headers",
            egress,
            b"GET /v1/search?q=a&type=track HTTP/1.1\r\nHost: gw\r\nHost: evil.example\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "HTTP/2 preface on an HTTP/1 listener",
            egress,
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "a TLS ClientHello",
            public,
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
            &[400],
        ),
    ];
    for (name, port, request, allowed) in &cases {
        let before = s.snapshot().await;
        let (status, answer) = raw_first_answer(*port, request).await;
        assert!(
            allowed.contains(&status),
            "{name}: {status} {}",
            &answer[..answer.len().min(300)]
        );
        s.assert_untouched(&before, name).await;
    }

    // CL+TE and TE+CL: Transfer-Encoding wins and the connection closes after the request,
    // so the bytes after the chunked body never become a second request: with CL+TE they are
    // dropped, with TE+CL they are the chunk's data, delivered as the body of the one request.
    let inner = |target: &str| format!("GET {target} HTTP/1.1\r\nHost: gw\r\n\r\n");
    let cl_te = |path: &str, target: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{}",
            5 + inner(target).len(),
            inner(target)
        )
    };
    let te_cl = |path: &str, target: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{:x}\r\n{}\r\n0\r\n\r\n",
            inner(target).len(),
            inner(target)
        )
    };
    let search = "/v1/search?q=a&type=track";
    for (name, port, request, body) in [
        (
            "CL+TE to egress",
            egress,
            cl_te(search, "/v1/smuggled"),
            String::new(),
        ),
        (
            "TE+CL to egress",
            egress,
            te_cl(search, "/v1/smuggled"),
            inner("/v1/smuggled"),
        ),
        (
            "CL+TE to the app",
            public,
            cl_te("/public/x", "/public/smuggled"),
            String::new(),
        ),
        (
            "TE+CL to the app",
            public,
            te_cl("/public/x", "/public/smuggled"),
            inner("/public/smuggled"),
        ),
    ] {
        let before = s.snapshot().await;
        let (status, answer) = raw_request(port, request.as_bytes()).await;
        assert!(status != 0 && status < 500, "{name}: {answer}");
        assert_eq!(
            answer.matches("HTTP/1.1 ").count(),
            1,
            "{name}: one answer, and the connection closed: {answer}"
        );
        let spotify: Vec<Value> = mock_requests(&s.mock)
            .await
            .into_iter()
            .skip(before.spotify_log)
            .collect();
        let app = s.app_hits_since(&before);
        let upstream: Vec<(String, String)> = if port == egress {
            assert!(app.is_empty(), "{name}");
            spotify
                .iter()
                .map(|r| {
                    let path = r["path"].as_str().unwrap_or("").to_string();
                    (path, r["body"].as_str().unwrap_or("").to_string())
                })
                .collect()
        } else {
            assert!(spotify.is_empty(), "{name}");
            for hit in &app {
                // One well-framed message: no Content-Length next to chunking.
                assert!(
                    hit.lookalike_values("content-length").is_empty()
                        || hit.lookalike_values("transfer-encoding").is_empty(),
                    "{name}: {hit:?}"
                );
            }
            app.iter()
                .map(|h| {
                    (
                        h.path.clone(),
                        String::from_utf8_lossy(&h.body).into_owned(),
                    )
                })
                .collect()
        };
        assert_eq!(
            upstream.len(),
            1,
            "{name}: exactly the outer request: {upstream:?}"
        );
        assert!(!upstream[0].0.contains("smuggled"), "{name}: {upstream:?}");
        assert_eq!(upstream[0].1, body, "{name}: {upstream:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Egress target control
// ---------------------------------------------------------------------------------------------

/// A listener that counts connections: where a token must never arrive.
async fn start_trap() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("trap");
    let port = listener.local_addr().expect("addr").port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_tokens_go_to_the_api_host_only() {
    // No cache: every call below must reach Spotify (or be refused before).
    let s = setup(Stack::builder().set("egress.cache_size", 0)).await;
    let resp = plain()
        .get(format!("{}/v1/search?q=a&type=track", s.gw.egress_url()))
        .send()
        .await
        .expect("warm");
    assert_eq!(resp.status(), 200);
    let (trap, trapped) = start_trap().await;
    let mock_host = s.mock.base_url().trim_start_matches("http://").to_string();
    let targets: Vec<(String, &[u16])> = vec![
        (format!("http://127.0.0.1:{trap}/v1/me"), &[400]),
        ("https://api.spotify.com/v1/me".into(), &[400]),
        (format!("{}/v1/me", s.mock.base_url()), &[400]),
        (format!("//127.0.0.1:{trap}/v1/me"), &[404]),
        ("*".into(), &[400]),
        ("/v1/../__mock/stats".into(), &[400]),
        ("/v1/%2e%2e/__mock/reset".into(), &[400]),
        ("/v1/.%2E/__mock/reset".into(), &[400]),
        ("/v1/%2E./x".into(), &[400]),
        ("/v1/./me".into(), &[400]),
        ("/v1/..%2f__mock%2fstats".into(), &[400]),
        ("/v1/%2F..%2F__mock".into(), &[400]),
        ("/v1/%5c..%5c__mock".into(), &[400]),
        ("/v1\\..\\__mock/stats".into(), &[400]),
        ("/v1/me/../../__mock/stats".into(), &[400]),
        ("/__mock/stats".into(), &[404]),
        ("/__mock/reset".into(), &[404]),
        ("/v2/search".into(), &[404]),
        ("/V1/me".into(), &[404]),
        ("/v1".into(), &[404]),
        ("/".into(), &[404]),
        ("/auth/login".into(), &[404]),
    ];
    for (target, allowed) in &targets {
        for method in ["GET", "POST"] {
            let name = format!("{method} {target}");
            let before = s.snapshot().await;
            let request = format!(
                "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{trap}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let (status, answer) = raw_request(s.gw.ports.egress, request.as_bytes()).await;
            assert!(allowed.contains(&status), "{name}: {answer}");
            s.assert_untouched(&before, &name).await;
        }
    }
    for (name, request, expected) in [
        (
            "CONNECT authority-form",
            format!("CONNECT 127.0.0.1:{trap} HTTP/1.1\r\nHost: 127.0.0.1:{trap}\r\n\r\n"),
            405,
        ),
        (
            "CONNECT to the API host",
            format!("CONNECT {mock_host} HTTP/1.1\r\nHost: {mock_host}\r\n\r\n"),
            405,
        ),
        (
            "OPTIONS *",
            format!("OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1:{trap}\r\n\r\n"),
            400,
        ),
    ] {
        let before = s.snapshot().await;
        let (status, answer) = raw_first_answer(s.gw.ports.egress, request.as_bytes()).await;
        assert_eq!(status, expected, "{name}: {answer}");
        s.assert_untouched(&before, name).await;
    }

    // Host games on a valid path: served, but to the configured API host with its Host.
    for (name, headers) in [
        ("Host: the trap", format!("Host: 127.0.0.1:{trap}\r\n")),
        (
            "X-Forwarded-Host and Forwarded",
            format!(
                "Host: gw\r\nX-Forwarded-Host: 127.0.0.1:{trap}\r\nForwarded: host=127.0.0.1:{trap};proto=http\r\n"
            ),
        ),
        ("no Host at all (HTTP/1.0)", String::new()),
    ] {
        let before = s.snapshot().await;
        let version = if headers.is_empty() { "1.0" } else { "1.1" };
        let request = format!(
            "GET /v1/search?q=a&type=track HTTP/{version}\r\n{headers}Connection: close\r\n\r\n"
        );
        let (status, answer) = raw_request(s.gw.ports.egress, request.as_bytes()).await;
        assert_eq!(status, 200, "{name}: {answer}");
        let log = mock_requests(&s.mock).await;
        let reached = &log[before.spotify_log..];
        assert_eq!(reached.len(), 1, "{name}");
        assert_eq!(reached[0]["headers"]["host"], mock_host.as_str(), "{name}");
    }
    assert_eq!(
        trapped.load(Ordering::SeqCst),
        0,
        "a token went to the trap"
    );
}

// ---------------------------------------------------------------------------------------------
// Admin listener and logs
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listener_and_logs_expose_no_secret_or_session_data() {
    let s = setup(Stack::builder()).await;
    let alice_login = pending_login(&s.gw, "alice").await;
    let alice = complete(&alice_login).await;
    let bob = session_for(&s.gw, "bob").await;
    let alice_assertion = s.assertion_for(&alice).await;
    let bob_assertion = s.assertion_for(&bob).await;
    for assertion in [&alice_assertion, &bob_assertion] {
        let resp = plain()
            .get(format!("{}/v1/me", s.gw.egress_url()))
            .header("x-gateway-user", assertion)
            .send()
            .await
            .expect("egress");
        assert_eq!(resp.status(), 200);
    }
    // A refresh, so refresh tokens travel too.
    mock_post(&s.mock, "/__mock/expire?user=alice", None).await;
    let resp = plain()
        .get(format!("{}/v1/me", s.gw.egress_url()))
        .header("x-gateway-user", &alice_assertion)
        .send()
        .await
        .expect("egress");
    assert_eq!(resp.status(), 200);
    assert_eq!(token_requests(&s.mock, "refresh_token").await, 1);
    let app_call = plain()
        .get(format!("{}/v1/search?q=a&type=track", s.gw.egress_url()))
        .send()
        .await
        .expect("app token call");
    assert_eq!(app_call.status(), 200);

    // Every secret value in play: what went to Spotify, what the browsers and the app got.
    let mut secrets: Vec<(String, String)> = vec![
        ("client secret".into(), CLIENT_SECRET.into()),
        ("session secret".into(), SESSION_SECRET.into()),
        ("alice's cookie".into(), alice.clone()),
        ("bob's cookie".into(), bob.clone()),
        ("login cookie".into(), alice_login.login_cookie.clone()),
        ("authorization code".into(), alice_login.code.clone()),
        ("state".into(), alice_login.state.clone()),
        ("alice's assertion".into(), alice_assertion.clone()),
        ("session key".into(), claims_of(&alice_assertion).sid),
    ];
    for r in mock_requests(&s.mock).await {
        if let Some(auth) = r["headers"]["authorization"].as_str() {
            if let Some(token) = auth.strip_prefix("Bearer ") {
                secrets.push(("access token".into(), token.to_string()));
            }
        }
        if let Some(body) = r["body"].as_str() {
            for (k, v) in url::form_urlencoded::parse(body.as_bytes()) {
                if k == "refresh_token" || k == "code" {
                    secrets.push((k.into_owned(), v.into_owned()));
                }
            }
        }
    }
    assert!(
        secrets.iter().any(|(k, _)| k == "refresh_token"),
        "a refresh token was seen"
    );
    assert!(secrets.iter().filter(|(k, _)| k == "access token").count() >= 3);
    // Personal data: the admin listener has no business with users either.
    let personal = ["alice", "bob", "Alice Andersson"];

    let admin = s.gw.admin_url();
    for path in [
        "/metrics",
        "/healthz",
        "/readyz",
        "/",
        "/sessions",
        "/debug/pprof",
        "/metrics/../auth/userinfo",
        "/auth/userinfo",
    ] {
        let resp = plain()
            .get(format!("{admin}{path}"))
            .header("cookie", format!("{SESSION_COOKIE}={alice}"))
            .send()
            .await
            .expect("admin");
        let status = resp.status().as_u16();
        let known = matches!(path, "/metrics" | "/healthz" | "/readyz");
        assert_eq!(status, if known { 200 } else { 404 }, "{path}");
        let headers = format!("{:?}", resp.headers());
        let text = format!("{headers}\n{}", resp.text().await.expect("body"));
        for (what, value) in secrets.iter() {
            assert!(!text.contains(value.as_str()), "{path} shows the {what}");
        }
        for who in personal {
            assert!(!text.contains(who), "{path} names {who}");
        }
    }
    // Nor does the log (user ids are logged only with server.log_user_id).
    let log = s.gw.log();
    for (what, value) in &secrets {
        assert!(!log.contains(value.as_str()), "the log shows the {what}");
    }
}

// ---------------------------------------------------------------------------------------------
// Secrets in memory
// ---------------------------------------------------------------------------------------------

#[test]
fn debug_formatting_of_config_and_sessions_shows_no_secret() {
    let secret_file = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(
        secret_file.path(),
        "previous-session-secret-from-a-file-0123456\n",
    )
    .expect("write");
    let text = format!(
        r#"
[spotify]
client_id = "abc"
client_secret_env = "CLIENT_SECRET"
redirect_uri = "https://gw.example/auth/callback"

[session]
secret = "inline-session-secret-0123456789abcdef-0"
previous_secret_file = "{}"

[store]
backend = "redis"
url = "redis://default:url-password-42@redis.example:6379"
"#,
        secret_file.path().display()
    );
    let env = |name: &str| (name == "CLIENT_SECRET").then(|| "env-client-secret-xyz".to_string());
    let config = Config::parse(&text, "t.toml", &env).expect("valid");
    let record = SessionRecord {
        user_id: "alice".into(),
        account_id: None,
        display_name: Some("Alice".into()),
        scopes: Scopes::new(&["user-read-email"]),
        access_token: AccessToken::new("BQAccess-token-value-123"),
        access_expires_at_ms: 1,
        access_lifetime_ms: 1,
        refresh_token: RefreshToken::new("AQRefresh-token-value-456"),
        created_at_ms: 1,
        reauth_by_ms: None,
        updated_at_ms: 1,
        expires_at_ms: 1,
    };
    let formatted = [
        format!("{config:?}"),
        format!("{config:#?}"),
        config.to_redacted_toml(),
        format!("{record:?}"),
        format!("{record:#?}"),
    ];
    for out in &formatted {
        for secret in [
            "env-client-secret-xyz",
            "inline-session-secret",
            "previous-session-secret",
            "url-password-42",
            "BQAccess-token-value",
            "AQRefresh-token-value",
        ] {
            assert!(!out.contains(secret), "{secret} in:\n{out}");
        }
    }
    // What is shown instead says where each secret comes from.
    assert!(
        formatted[0].contains("env CLIENT_SECRET"),
        "{}",
        formatted[0]
    );
    assert!(formatted[3].contains("redacted"), "{}", formatted[3]);
}
