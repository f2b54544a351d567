//! What the gateway reads of an answer from Spotify's token endpoint and of the `/v1/me` read
//! at login: at most 64 KiB (`oauth/http_client.rs`; Spotify's answers are under 2 KiB). A
//! longer answer (48 MiB, or one without end, streamed by the mock) is refused as a malformed
//! one is: the call or login is answered 503 "retry shortly", a session is kept, and the
//! gateway's memory does not grow with the body. Each flow: the code exchange and `/v1/me` at
//! login, a refresh, the app token (client credentials).

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

/// The finite long body: the size that grew the gateway by 144 MiB before the cap.
const LONG: u64 = 48 << 20;
/// How far the gateway's peak memory may grow over a test: far less than one long body, so
/// none of it was held, and room for what logins and calls cost anyway.
const MEMORY_GROWTH: u64 = 16 << 20;

/// The process's peak resident memory so far (`VmHWM`), in bytes.
fn peak_memory(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    kib * 1024
}

/// Checks that the gateway's peak memory stayed within [`MEMORY_GROWTH`] of `base`.
fn assert_memory_bounded(s: &Stack, base: u64, after: &str) {
    let grown = peak_memory(s.gw.pid()).saturating_sub(base);
    assert!(
        grown < MEMORY_GROWTH,
        "after {after}, the gateway's peak memory grew by {} MiB",
        grown >> 20
    );
}

/// Arms a long answer at the mock: `bytes`, or without end when `None`.
async fn long_answer(s: &Stack, target: &str, bytes: Option<u64>, path_prefix: Option<&str>) {
    let mut fault = json!({"target": target, "long_body": {}});
    if let Some(bytes) = bytes {
        fault["long_body"]["bytes"] = bytes.into();
    }
    if let Some(prefix) = path_prefix {
        fault["path_prefix"] = prefix.into();
    }
    s.fault(fault).await;
}

/// The token requests of `grant_type` the mock has seen.
async fn token_requests(s: &Stack, grant_type: &str) -> u64 {
    mock_stats(&s.mock).await["token_requests"][grant_type]
        .as_u64()
        .unwrap_or(0)
}

/// A login whose code exchange, then whose `/v1/me`, get a long answer: each login is
/// refused as when Spotify cannot be reached (503, retry), and the next login succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_answer_at_login_is_refused_without_holding_it() {
    let s = Stack::builder().app(App::Echo).start().await;
    let base = peak_memory(s.gw.pid());

    // The finite body first: on a gateway without the cap it fails here, before an endless
    // body could fill the machine's memory.
    long_answer(&s, "token", Some(LONG), None).await;
    let (resp, _, _) = login_callback(&browser(), &s.gw, "alice", "/app").await;
    assert_eq!(resp.status(), 503, "the code exchange's long answer");
    assert!(resp.headers().contains_key("retry-after"));
    assert_memory_bounded(&s, base, "a 48 MiB token answer");
    assert_eq!(token_requests(&s, "authorization_code").await, 1);

    long_answer(&s, "api", None, Some("/v1/me")).await;
    let (resp, _, _) = login_callback(&browser(), &s.gw, "alice", "/app").await;
    assert_eq!(resp.status(), 503, "/v1/me's endless answer");
    assert_memory_bounded(&s, base, "an endless /v1/me answer");

    let browser = browser();
    login(&browser, &s.gw, "alice", "/app").await;
    let (status, info) = s.userinfo(&browser).await;
    assert_eq!((status, info["user_id"].as_str()), (200, Some("alice")));
}

/// The app token's request, then a user's refresh, get a long answer: the call is answered
/// 503 (retry), the session is kept, and once Spotify answers normally again the same
/// session's calls succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_answer_to_a_refresh_or_the_app_token_is_refused_without_holding_it() {
    let s = Stack::builder().app(App::Echo).start().await;
    let base = peak_memory(s.gw.pid());

    long_answer(&s, "token", Some(LONG), None).await;
    let resp = s.egress_get("/v1/search?q=abba&type=track").await;
    assert_eq!(resp.status(), 503, "the app token's long answer");
    assert!(resp.headers().contains_key("retry-after"));
    assert_memory_bounded(&s, base, "a 48 MiB token answer");
    assert_eq!(token_requests(&s, "client_credentials").await, 1);

    let browser = browser();
    login(&browser, &s.gw, "alice", "/app").await;
    let assertion = s.assertion(&browser).await;
    mock_post(&s.mock, "/__mock/expire?user=alice", None).await;
    long_answer(&s, "token", None, None).await;
    let refreshes = token_requests(&s, "refresh_token").await;
    assert_eq!(
        egress_status(&s.gw, &assertion).await,
        503,
        "an endless refresh answer"
    );
    assert_eq!(token_requests(&s, "refresh_token").await, refreshes + 1);
    assert_memory_bounded(&s, base, "an endless refresh answer");

    // The session was kept: once the failure's hold has passed, a refresh succeeds.
    s.gw.wait_until(
        Duration::from_secs(10),
        "alice's call to succeed after the refused refresh",
        || async { egress_status(&s.gw, &assertion).await == 200 },
    )
    .await;
}
