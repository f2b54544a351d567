//! `GET /auth/playback-token` (`[playback]`, issue 28): the Web Playback SDK's access token for
//! the gateway's own pages. Issued to a same-origin fetch of a session with `streaming`, as
//! `{"access_token","expires_in"}` only, `no-store`, never with CORS; refused cross-site,
//! without the scope, without a session, past the rate; 404 when off; both keys live at SIGHUP.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const SCOPES: [&str; 4] = [
    "streaming",
    "user-read-email",
    "user-read-private",
    "user-read-currently-playing",
];

/// A stack with `[playback]` on and the streaming scope asked for.
async fn stack(max_per_minute: i64) -> Stack {
    Stack::builder()
        .app(App::Echo)
        .set("spotify.scopes", SCOPES)
        .edit(|doc| doc["playback"] = toml_edit::table())
        .set("playback.enabled", true)
        .set("playback.max_per_minute", max_per_minute)
        .start()
        .await
}

/// `GET /auth/playback-token` as `browser`, with `headers`.
async fn fetch(
    s: &Stack,
    browser: &reqwest::Client,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = browser.get(format!("{}/auth/playback-token", s.gw.public_url()));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.send().await.expect("playback token")
}

const SAME_ORIGIN: &[(&str, &str)] = &[
    ("sec-fetch-site", "same-origin"),
    ("sec-fetch-mode", "cors"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_same_origin_fetch_of_a_streaming_session_gets_the_access_token_only() {
    let s = stack(6).await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    let resp = fetch(&s, &b, SAME_ORIGIN).await;
    assert_eq!(resp.status(), 200);
    let headers = resp.headers().clone();
    assert_eq!(headers["cache-control"], "no-store");
    assert!(
        !headers
            .keys()
            .any(|k| k.as_str().starts_with("access-control-")),
        "never CORS: {headers:?}"
    );
    let body: Value = resp.json().await.expect("json");
    let fields: Vec<&str> = body
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        ["access_token", "expires_in"],
        "never a refresh token"
    );
    let expires_in = body["expires_in"].as_u64().expect("seconds");
    assert!((3000..=3600).contains(&expires_in), "{expires_in}");
    // It is the user's real token: Spotify answers it as Alice.
    let token = body["access_token"].as_str().expect("token");
    let me: Value = reqwest::Client::new()
        .get(format!("{}/v1/me", s.mock.base_url()))
        .bearer_auth(token)
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    assert_eq!(me["id"], "alice");
    // And not what the session keeps to refresh it: no refresh token travels.
    let text = body.to_string();
    assert!(!text.contains("refresh"), "{text}");

    // Without Sec-Fetch-Site, the page's own Origin will do.
    let origin = s.gw.public_url();
    let resp = fetch(&s, &b, &[("origin", origin.as_str())]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        s.metric("spotify_gateway_playback_tokens_total{app=\"default\",result=\"issued\"}")
            .await,
        2.0
    );
    assert_eq!(
        s.metric("spotify_gateway_audit_events_total{app=\"default\",type=\"token.issued\"}")
            .await,
        2.0
    );
    let log = s.gw.log();
    assert!(log.contains("\"type\":\"token.issued\""), "the audit line");
    assert!(!log.contains(token), "the token is never logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_requests_and_visits_are_refused() {
    let s = stack(60).await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    let ours = s.gw.public_url();
    for headers in [
        vec![
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://evil.example"),
        ],
        // A script on a sibling site cannot pass for the page, whatever Origin it claims.
        vec![("sec-fetch-site", "same-site"), ("origin", ours.as_str())],
        // Typed into the address bar, or opened from a bookmark.
        vec![("sec-fetch-site", "none")],
        vec![("origin", "https://evil.example")],
        vec![("origin", "null")],
        // Neither header: not a browser's same-origin fetch.
        vec![],
    ] {
        let resp = fetch(&s, &b, &headers).await;
        assert_eq!(resp.status(), 403, "{headers:?}");
        assert!(
            !resp
                .headers()
                .keys()
                .any(|k| k.as_str().starts_with("access-control-")),
            "{headers:?}"
        );
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["error"], "cross_site", "{headers:?}: {body}");
        assert!(body.get("access_token").is_none());
    }
    assert_eq!(
        s.metric("spotify_gateway_playback_tokens_total{app=\"default\",result=\"cross_site\"}")
            .await,
        6.0
    );
    assert_eq!(
        s.metric("spotify_gateway_playback_tokens_total{app=\"default\",result=\"issued\"}")
            .await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_session_it_asks_to_sign_in() {
    let s = stack(6).await;
    let resp = fetch(&s, &browser(), SAME_ORIGIN).await;
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "unauthenticated", "{body}");
    assert!(body.get("access_token").is_none());
    assert_eq!(
        s.metric(
            "spotify_gateway_playback_tokens_total{app=\"default\",result=\"unauthenticated\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_session_gets_a_few_a_minute() {
    let s = stack(2).await;
    let alice = browser();
    login(&alice, &s.gw, "alice", "/").await;
    for _ in 0..2 {
        assert_eq!(fetch(&s, &alice, SAME_ORIGIN).await.status(), 200);
    }
    let resp = fetch(&s, &alice, SAME_ORIGIN).await;
    assert_eq!(resp.status(), 429);
    let wait: u64 = resp.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&wait), "{wait}");
    // Another session has its own minute.
    let bob = browser();
    login(&bob, &s.gw, "bob", "/").await;
    assert_eq!(fetch(&s, &bob, SAME_ORIGIN).await.status(), 200);
    assert_eq!(
        s.metric("spotify_gateway_playback_tokens_total{app=\"default\",result=\"rate_limited\"}")
            .await,
        1.0
    );
}

/// Writes `config`, sends SIGHUP and waits until the gateway has logged the `n`th reload.
async fn reload(s: &Stack, config: &GatewayConfig, n: usize) {
    s.gw.write_config(config);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(s.gw.pid(), libc::SIGHUP) };
    s.gw.wait_until(
        Duration::from_secs(5),
        "the reload to be logged",
        || async { s.gw.log().matches("config reloaded").count() >= n },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_it_is_404_and_sighup_turns_it_on_for_sessions_with_the_scope() {
    // Off (the default), and a session signed in without `streaming`.
    let s = Stack::builder().app(App::Echo).start().await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    let resp = fetch(&s, &b, SAME_ORIGIN).await;
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.expect("json");
    assert!(body.get("access_token").is_none(), "{body}");

    // Live at SIGHUP: on, with the scope asked of new logins.
    let on =
        s.gw.config()
            .set("spotify.scopes", SCOPES)
            .edit(|doc| doc["playback"] = toml_edit::table())
            .set("playback.enabled", true);
    reload(&s, &on, 1).await;
    let resp = fetch(&s, &b, SAME_ORIGIN).await;
    assert_eq!(resp.status(), 403, "the old session has no streaming scope");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "missing_scope", "{body}");
    assert_eq!(
        s.metric("spotify_gateway_playback_tokens_total{app=\"default\",result=\"no_scope\"}")
            .await,
        1.0
    );
    // Signing in again asks for it, and the token comes.
    login(&b, &s.gw, "alice", "/").await;
    assert_eq!(fetch(&s, &b, SAME_ORIGIN).await.status(), 200);

    // And off again.
    let off = on.set("playback.enabled", false);
    reload(&s, &off, 2).await;
    assert_eq!(fetch(&s, &b, SAME_ORIGIN).await.status(), 404);
}

#[test]
fn check_config_refuses_playback_without_the_streaming_scope() {
    let ports = Ports::new();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("gw.toml");
    GatewayConfig::template(ports, "http://127.0.0.1:9")
        .edit(|doc| doc["playback"] = toml_edit::table())
        .set("playback.enabled", true)
        .write(&path);
    let (code, _, err) = run_cli(
        &["check-config", "--config", path.to_str().expect("utf8")],
        &[
            ("TEST_CLIENT_SECRET", CLIENT_SECRET),
            ("TEST_SESSION_SECRET", SESSION_SECRET),
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("playback.enabled"), "{err}");
    assert!(err.contains("streaming"), "{err}");
}
