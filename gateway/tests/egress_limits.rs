//! What the egress listener refuses to pass on from Spotify: a gzip answer that inflates past
//! the gateway's bound (a gzip bomb: about 1 MiB that inflates to 1 GiB) fails, with the
//! gateway's memory bounded, counted and logged once; the next call is served as usual, its
//! links rewritten. A plain bomb is refused within its first chunks, mostly before the
//! header went out (502); one that starts with a MiB of ordinary-looking data gets its header
//! out and is cut off mid-body, as soon as a chunk inflates past the ratio.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// What the bomb inflates to.
const BOMB: u64 = 1 << 30;
/// Noise at the start of the second bomb (gzip only halves it, as it would JSON's).
const NOISE: u64 = 1 << 20;
/// The most a gzip answer may inflate to at the gateway (`proxy/egress/inflate.rs`).
const BOUND: u64 = 64 << 20;
/// How far the gateway's peak memory may grow while it refuses the bomb: less than the bound
/// itself, so not even a bound's worth of the bomb was held.
const MEMORY_GROWTH: u64 = 64 << 20;
const SEARCH: &str = "/v1/search?q=abba&type=track&limit=10";
const REFUSED: &str =
    r#"spotify_gateway_upstream_body_refused_total{app="default",reason="inflate_limit"}"#;
/// The log line's message (`proxy/egress/mod.rs`).
const LOGGED: &str = "refused Spotify's answer";

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

/// A search through the egress listener (with the app token) that lets Spotify gzip.
async fn search(s: &Stack) -> reqwest::Response {
    s.http
        .get(format!("{}{SEARCH}", s.gw.egress_url()))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("egress answers")
}

/// Reads the body as it streams, keeping only its length (and stopping once past `limit`):
/// the bytes received, and whether the body ended cleanly (`Ok`) or was cut off (`Err`).
async fn drain(mut resp: reqwest::Response, limit: u64) -> (u64, Result<(), reqwest::Error>) {
    let mut received = 0;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(120), resp.chunk())
            .await
            .expect("the body ends or fails within 120 s");
        match next {
            Ok(Some(chunk)) => {
                received += chunk.len() as u64;
                if received > limit {
                    return (received, Ok(()));
                }
            }
            Ok(None) => return (received, Ok(())),
            Err(e) => return (received, Err(e)),
        }
    }
}

/// What the client saw of a bomb, and what the gateway's peak memory did meanwhile.
struct Seen {
    status: u16,
    received: u64,
    read: Result<(), reqwest::Error>,
    /// The body, when it was an answer of the gateway's own (502).
    error_body: Option<Value>,
}

/// Starts a stack, warms it up with an ordinary gzip answer, arms `bomb` for the next
/// search and sends it; asserts the gateway's peak memory stayed bounded.
async fn send_bomb(bomb: Value) -> (Stack, Seen) {
    // No cache: the bomb is armed for the same search as the warm-up's.
    let s = Stack::builder().set("egress.cache_size", 0).start().await;
    // An ordinary gzip answer first (app token, connection pools), then measure.
    let resp = search(&s).await;
    assert_eq!(resp.status(), 200);
    resp.text().await.expect("body");
    let before = peak_memory(s.gw.pid());
    mock_post(&s.mock, "/__mock/reset", None).await;
    let zero = metric_value(&s.gw, REFUSED).await;
    assert_eq!(zero, Some(0.0), "the series is there from the start");

    s.fault(json!({"target": "api", "gzip_bomb": bomb, "path_prefix": "/v1/search"}))
        .await;
    let resp = search(&s).await;
    let status = resp.status().as_u16();
    let seen = if status == 502 {
        let body: Value = resp.json().await.expect("the gateway's JSON");
        let received = body.to_string().len() as u64;
        let (read, error_body) = (Ok(()), Some(body));
        Seen {
            status,
            received,
            read,
            error_body,
        }
    } else {
        let (received, read) = drain(resp, BOUND + (1 << 20)).await;
        let error_body = None;
        Seen {
            status,
            received,
            read,
            error_body,
        }
    };
    let after = peak_memory(s.gw.pid());
    let growth = after.saturating_sub(before);
    eprintln!(
        "bomb {bomb}: status {status}, the client received {} bytes ({:?}); gateway peak \
         memory {} MiB before, {} MiB after, growth {} MiB",
        seen.received,
        seen.read,
        before >> 20,
        after >> 20,
        growth >> 20
    );
    assert!(
        seen.received <= BOUND,
        "{} bytes of the bomb reached the client (the bound is {BOUND})",
        seen.received
    );
    assert!(
        growth < MEMORY_GROWTH,
        "the gateway's peak memory grew by {growth} bytes"
    );
    (s, seen)
}

/// After a refusal: counted once, logged once saying what the client got (no body content, no
/// second line from pingora), not asked for again, and the next call is Spotify's ordinary
/// answer with its links rewritten.
async fn refused_once_then_served(s: &Stack, seen: &Seen) {
    s.gw.wait_until(Duration::from_secs(5), "the refusal counted", || async {
        s.metric(REFUSED).await == 1.0
    })
    .await;
    let log = s.gw.log();
    assert_eq!(log.matches(LOGGED).count(), 1, "logged once:\n{log}");
    let client_gets = match seen.status {
        502 => "the client gets 502",
        _ => "the client gets the answer cut off mid-body",
    };
    assert!(log.contains("inflated past the gateway's bound"), "{log}");
    assert!(log.contains(client_gets), "{client_gets}:\n{log}");
    assert!(!log.contains("aaaaaaaa"), "no body content in the log");
    assert!(
        !log.contains("Fail to proxy"),
        "pingora's line is ours:\n{log}"
    );
    assert_eq!(
        s.api_requests().await,
        1,
        "the bomb was not asked for again"
    );

    let base = format!("{}/v1/", s.gw.egress_url());
    let resp = search(s).await;
    assert_eq!(resp.status(), 200);
    let page: Value = resp.json().await.expect("JSON");
    let next = page["tracks"]["next"].as_str().expect("next");
    assert!(next.starts_with(&base), "{next}");
    assert!(!page.to_string().contains(&s.mock.base_url()));
    assert_eq!(s.metric(REFUSED).await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_bomb_fails_within_its_first_chunks() {
    let (s, seen) = send_bomb(json!({"inflated_bytes": BOMB})).await;
    match seen.status {
        // The bound was passed before the header went out: the gateway's own answer.
        502 => {
            let body = seen.error_body.as_ref().expect("body");
            assert_eq!(body["error"]["status"], 502, "{body}");
            assert!(!body.to_string().contains("padding"), "{body}");
        }
        // After it: the answer is cut off, never ended as if complete.
        200 => assert!(
            seen.read.is_err(),
            "the client must see the answer cut off ({} bytes)",
            seen.received
        ),
        other => panic!("status {other}"),
    }
    // The ratio bound stops it a little past its floor (1 MiB), not at the total bound.
    assert!(seen.received <= 8 << 20, "{} bytes", seen.received);
    refused_once_then_served(&s, &seen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_bomb_behind_noise_is_cut_off_mid_body() {
    let (s, seen) = send_bomb(json!({"inflated_bytes": BOMB, "noise_bytes": NOISE})).await;
    // The noise keeps the ratio low for its first chunks: the header has gone out by the time
    // a chunk of the run inflates past the ratio.
    assert_eq!(seen.status, 200);
    assert!(
        seen.read.is_err(),
        "the client must see the answer cut off, not a complete body ({} bytes)",
        seen.received
    );
    assert!(
        seen.received <= NOISE + (8 << 20),
        "{} bytes",
        seen.received
    );
    refused_once_then_served(&s, &seen).await;
}
