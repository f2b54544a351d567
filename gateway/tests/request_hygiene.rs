//! What an upstream may disagree with the gateway about (hardening issue, items 2 and 3): the
//! path the gateway decides on (dot segments, encoded separators, backslashes are refused on
//! the public listener, so the app sees the path the session decision was made on), and
//! headers that read as framing or hop-by-hop headers once `_` is read as `-` (dropped on
//! both listeners, so no upstream frames the body otherwise than the gateway).
//!
//! Raw requests throughout: HTTP clients normalise dot segments and refuse odd header names.

mod common;

use common::*;
use serde_json::Value;

/// The names an upstream that folds `_` into `-` would read as framing or hop-by-hop.
const FRAMING: [&str; 4] = [
    "transfer-encoding",
    "content-length",
    "keep-alive",
    "proxy-connection",
];

/// A raw GET of `target` on `port`, closing after the answer.
async fn get(port: u16, target: &str) -> (u16, String) {
    let request = format!("GET {target} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n");
    raw_request(port, request.as_bytes()).await
}

/// What the recording app received so far.
fn hits(s: &Stack) -> Vec<AppHit> {
    s.hits().lock().expect("hits").clone()
}

/// Targets the public listener refuses with 400 before any routing decision.
const REFUSED: &[&str] = &[
    "/public/../app/secret",
    "/public/%2e%2e/app/secret",
    "/public/%2E%2E/app/secret",
    "/public/.%2E/app/secret",
    "/public/%2e./app/secret",
    "/public/..%2fapp/secret",
    "/public/..%2Fapp/secret",
    "/public/%2e%2e%2fapp/secret",
    "/public/%2E%2E%2Fapp%2Fsecret",
    "/public/..%5capp/secret",
    "/public/..%5Capp/secret",
    "/public/..\\app/secret",
    "/public\\..\\app\\secret",
    "/public/./../app/secret",
    "/public/..;/app/secret",
    "/public/x/..",
    "/public/.",
    "/public/x/%2e",
    "/public/../app/secret?x=1",
    "/app/../public/x",
    "/auth/../app/secret",
    "/%2e%2e/app/secret",
    "/public/%2fapp",
];

/// Public paths with dots that are no dot segments: they reach the app as sent.
const PASSED: &[&str] = &[
    "/public/x",
    "/public/...x",
    "/public/...",
    "/public/.x",
    "/public/x..",
    "/public/a.b/",
    "/public/a%2eb",
    "/public/%2ex",
    "/public/a%25/b",
    "/public/x?next=../app&p=%2F",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_and_encoded_separators_never_reach_the_app() {
    let s = Stack::builder().app(App::Recording).start().await;
    let table = REFUSED.iter().map(|t| (*t, true));
    for (target, refused) in table.chain(PASSED.iter().map(|t| (*t, false))) {
        let before = hits(&s).len();
        let (status, answer) = get(s.gw.ports.public, target).await;
        let reached: Vec<String> = hits(&s)
            .split_off(before)
            .into_iter()
            .map(|h| h.path)
            .collect();
        if refused {
            assert_eq!(status, 400, "{target}: {answer}");
            assert!(answer.contains("bad_request"), "{target}: {answer}");
            assert!(reached.is_empty(), "{target} reached the app: {reached:?}");
        } else {
            assert_eq!(status, 200, "{target}: {answer}");
            assert_eq!(reached, [target], "the app sees the path as sent");
        }
    }
    // A protected path with a dot still asks for a session, and reaches the app with one.
    let (status, answer) = get(s.gw.ports.public, "/a.b/").await;
    assert!(status == 302 || status == 401, "{status}: {answer}");
    let browser = browser();
    login(&browser, &s.gw, "alice", "/").await;
    let before = hits(&s).len();
    let (status, seen) = via_public(&browser, &s.gw, "/a.b/").await;
    assert_eq!(status, 200, "{seen}");
    let reached = hits(&s).split_off(before);
    assert_eq!(reached.len(), 1);
    assert_eq!(reached[0].path, "/a.b/");
    assert_eq!(reached[0].lookalike_values("x-spotify-user-id"), ["alice"]);
}

/// POSTs (or PUTs) `body` to `target` with a real `Content-Length` and `extra` header lines.
fn framed(method: &str, target: &str, extra: &str, body: &str) -> String {
    format!(
        "{method} {target} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nContent-Length: {}\r\n{extra}X_Custom_Note: kept\r\n\r\n{body}",
        body.len()
    )
}

/// The look-alike header lines each case adds, and the method it uses.
const LOOKALIKES: [(&str, &str); 5] = [
    ("POST", "Transfer_Encoding: chunked\r\n"),
    ("POST", "Content_Length: 48\r\n"),
    ("PUT", "TRANSFER_ENCODING: chunked\r\nContent_length: 0\r\n"),
    (
        "PATCH",
        "Keep_Alive: timeout=5\r\nProxy_Connection: keep-alive\r\nTransfer_encoding: gzip, chunked\r\n",
    ),
    ("DELETE", "content_LENGTH: 5\r\nTransfer_Encoding: chunked\r\n"),
];

/// Whether a header name reads as a framing or hop-by-hop header once `_` is read as `-`.
fn is_lookalike(name: &str) -> bool {
    name.contains('_') && FRAMING.contains(&name.to_ascii_lowercase().replace('_', "-").as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_lookalikes_never_reach_the_app() {
    let s = Stack::builder().app(App::Recording).start().await;
    for (method, extra) in LOOKALIKES {
        let before = hits(&s).len();
        let request = framed(method, "/public/x", extra, "hello");
        let (status, answer) = raw_request(s.gw.ports.public, request.as_bytes()).await;
        assert_eq!(status, 200, "{extra:?}: {answer}");
        let after = hits(&s);
        assert_eq!(after.len(), before + 1, "{extra:?}");
        let hit = &after[before];
        assert_eq!(hit.method, method, "{extra:?}");
        assert_eq!(hit.body, b"hello", "{extra:?}");
        assert_eq!(hit.lookalike_values("content-length"), ["5"], "{extra:?}");
        assert!(
            !hit.headers.iter().any(|(n, _)| is_lookalike(n)),
            "{extra:?}: {:?}",
            hit.headers
        );
        assert_eq!(hit.lookalike_values("x-custom-note"), ["kept"], "{extra:?}");
    }
    // A chunked body with a Content-Length look-alike: the chunks arrive, the look-alike not.
    let before = hits(&s).len();
    let request = "POST /public/x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nTransfer-Encoding: chunked\r\nContent_Length: 100\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let (status, answer) = raw_request(s.gw.ports.public, request.as_bytes()).await;
    assert_eq!(status, 200, "{answer}");
    let after = hits(&s);
    assert_eq!(after.len(), before + 1);
    assert_eq!(after[before].body, b"hello");
    assert!(
        !after[before].headers.iter().any(|(n, _)| is_lookalike(n)),
        "{:?}",
        after[before].headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_lookalikes_never_reach_spotify() {
    let s = Stack::builder().start().await;
    let target = "/v1/search?q=a&type=track";
    for (method, extra) in LOOKALIKES {
        let before = mock_requests(&s.mock).await.len();
        let request = framed(method, target, extra, "hello");
        let (status, answer) = raw_request(s.gw.ports.egress, request.as_bytes()).await;
        assert!(status != 0 && status < 500, "{extra:?}: {answer}");
        let api: Vec<Value> = mock_requests(&s.mock)
            .await
            .into_iter()
            .skip(before)
            .filter(|r| r["target"] == "api")
            .collect();
        assert_eq!(api.len(), 1, "{extra:?}: {api:?}");
        let seen = &api[0];
        assert_eq!(seen["method"], method, "{extra:?}");
        assert_eq!(seen["body"], "hello", "{extra:?}");
        let headers = seen["headers"].as_object().expect("headers");
        assert_eq!(headers["content-length"], "5", "{extra:?}");
        assert!(
            !headers.keys().any(|n| is_lookalike(n)),
            "{extra:?}: {headers:?}"
        );
        assert_eq!(headers["x_custom_note"], "kept", "{extra:?}");
    }
}
