//! Requests as they arrive on the wire, and what gets past the gateway: malformed and
//! smuggling requests are refused (duplicate or odd framing, obs-fold, bare CR, oversized
//! headers, odd methods; CL+TE and TE+CL never become a second request); the egress sends
//! tokens to the configured API host only, whatever the target, path or `Host` says; and
//! what an upstream may disagree with the gateway about: the path the gateway decides on (dot
//! segments, encoded separators, backslashes are refused on the public listener, so the app
//! sees the path the session decision was made on), and headers that read as framing or
//! hop-by-hop headers once `_` is read as `-` (dropped on both listeners, so no upstream
//! frames the body otherwise than the gateway).
//!
//! Raw requests throughout: HTTP clients normalise dot segments and refuse odd header names.
//! The adversarial cases check refusal, no state change and no call to Spotify
//! (`common/snapshot.rs`).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_smuggling_requests_are_refused() {
    let s = watched_stack(Stack::builder()).await;
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
    let s = watched_stack(Stack::builder().set("egress.cache_size", 0)).await;
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
