//! W3C trace context through the real gateway: a valid `traceparent` is kept from the client
//! to the app and from the app's egress call to Spotify, an invalid or missing one is replaced
//! by a new trace (and the client's `tracestate` dropped), a `tracestate` outside the spec's
//! limits is dropped while its `traceparent` is kept, and every access line carries the
//! trace id next to the request id.

mod common;

use common::*;
use serde_json::Value;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// The trace id of a `traceparent`, checking it is a valid version-00 one.
fn trace_id_of(traceparent: &str) -> String {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[0], "00", "{traceparent}");
    assert_eq!(parts[1].len(), 32, "{traceparent}");
    assert_eq!(parts[2].len(), 16, "{traceparent}");
    assert!(parts[1].bytes().any(|b| b != b'0'), "{traceparent}");
    assert!(
        traceparent
            .bytes()
            .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{traceparent}"
    );
    parts[1].to_string()
}

/// Waits until the gateway's log has an access line of `listener` with both ids.
async fn access_line(s: &Stack, listener: &str, request_id: &str, trace_id: &str) -> String {
    let find = || {
        s.gw.log()
            .lines()
            .find(|l| {
                l.contains("access")
                    && l.contains(&format!("listener=\"{listener}\""))
                    && l.contains(&format!("request_id={request_id}"))
                    && l.contains(&format!("trace_id={trace_id}"))
            })
            .map(str::to_string)
    };
    s.gw.wait_until(
        std::time::Duration::from_secs(5),
        format!("an access line of {listener} with request {request_id} and trace {trace_id}"),
        || async { find().is_some() },
    )
    .await;
    find().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_traceparent_is_followed_from_the_client_through_the_app_to_spotify() {
    let s = Stack::builder().app(App::Echo).start().await;
    let browser = browser();
    login(&browser, &s.gw, "alice", "/").await;
    let resp = browser
        .get(format!("{}/app", s.gw.public_url()))
        .header("traceparent", TRACEPARENT)
        .header("tracestate", "vendor=opaque")
        .header("x-request-id", "req-public-1")
        .send()
        .await
        .expect("public");
    assert_eq!(resp.status(), 200);
    let seen: Value = resp.json().await.expect("echo");
    assert_eq!(seen["headers"]["traceparent"], TRACEPARENT, "{seen}");
    assert_eq!(seen["headers"]["tracestate"], "vendor=opaque", "{seen}");
    assert_eq!(seen["headers"]["x-request-id"], "req-public-1");
    access_line(&s, "public", "req-public-1", TRACE_ID).await;

    // The app calls the egress listener with the trace it was given: Spotify sees it too.
    let assertion = seen["headers"]["x-gateway-user"]
        .as_str()
        .expect("assertion");
    let resp = s
        .egress_as(assertion, "/v1/me")
        .header("traceparent", TRACEPARENT)
        .header("x-request-id", "req-egress-1")
        .send()
        .await
        .expect("egress");
    assert_eq!(resp.status(), 200);
    let at_spotify = s.last_api_request().await;
    assert_eq!(
        at_spotify["headers"]["traceparent"], TRACEPARENT,
        "{at_spotify}"
    );
    access_line(&s, "egress", "req-egress-1", TRACE_ID).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_or_missing_traceparent_starts_a_new_trace() {
    let s = Stack::builder().app(App::Echo).start().await;
    let browser = browser();
    login(&browser, &s.gw, "alice", "/").await;
    let invalid = [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "not a traceparent",
    ];
    let mut traces = Vec::new();
    for (i, bad) in invalid.iter().map(Some).chain([None]).enumerate() {
        let request_id = format!("req-new-{i}");
        let mut req = browser
            .get(format!("{}/app", s.gw.public_url()))
            .header("x-request-id", &request_id)
            .header("tracestate", "vendor=opaque");
        if let Some(bad) = bad {
            req = req.header("traceparent", *bad);
        }
        let seen: Value = req
            .send()
            .await
            .expect("public")
            .json()
            .await
            .expect("echo");
        let given = seen["headers"]["traceparent"]
            .as_str()
            .expect("traceparent");
        let trace_id = trace_id_of(given);
        assert_ne!(trace_id, TRACE_ID, "{bad:?}");
        assert!(
            seen["headers"].get("tracestate").is_none(),
            "a tracestate without its traceparent is dropped: {seen}"
        );
        access_line(&s, "public", &request_id, &trace_id).await;
        traces.push(trace_id);
    }
    traces.sort();
    traces.dedup();
    assert_eq!(
        traces.len(),
        invalid.len() + 1,
        "each request its own trace"
    );
}

/// `tracestate` values the gateway must not pass on (W3C Trace Context §3.3.1), each with a
/// valid `traceparent`: too long (the 6 KB of quotes and braces, in members each of
/// which is valid), too many members, a key twice, keys and values off the grammar.
fn invalid_tracestates() -> Vec<(&'static str, String)> {
    let braces: Vec<String> = (0..30)
        .map(|i| format!("k{i}={}", "\"{}\"".repeat(50)))
        .collect();
    let members: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
    vec![
        ("6 KB of quotes and braces", braces.join(",")),
        ("33 members", members.join(",")),
        ("a key twice", "rojo=1,congo=2,rojo=3".into()),
        ("an uppercase key", "Vendor=opaque".into()),
        ("a member without a value", "vendor".into()),
        ("a value with '='", "vendor=a=b".into()),
        ("a space in a key", "ven dor=opaque".into()),
        ("a key too long", format!("{}=v", "k".repeat(257))),
    ]
}

/// A passed-on `tracestate` for a failure message: its start and length.
fn shorter(passed: Option<&str>) -> String {
    match passed {
        Some(v) => format!(
            "passed on {:?}… ({} characters)",
            &v[..v.len().min(40)],
            v.len()
        ),
        None => "dropped".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tracestate_outside_the_spec_is_dropped_and_the_traceparent_kept() {
    // No cache: every egress call reaches Spotify, whose log shows what it was sent.
    let s = Stack::builder()
        .app(App::Echo)
        .set("egress.cache_size", 0)
        .start()
        .await;
    let browser = browser();
    login(&browser, &s.gw, "alice", "/").await;
    let assertion = s.assertion(&browser).await;
    // A valid one, with members and whitespace as the spec allows, passes both listeners.
    let good = "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE,tenant@vendor=\"{x}\"";
    for (what, state) in [("valid", good.to_string())]
        .into_iter()
        .chain(invalid_tracestates())
    {
        let want = (what == "valid").then_some(state.as_str());
        let seen: Value = browser
            .get(format!("{}/app", s.gw.public_url()))
            .header("traceparent", TRACEPARENT)
            .header("tracestate", &state)
            .send()
            .await
            .expect("public")
            .json()
            .await
            .expect("echo");
        assert_eq!(
            seen["headers"]["traceparent"], TRACEPARENT,
            "{what}: {seen}"
        );
        let passed = seen["headers"]["tracestate"].as_str();
        assert!(
            passed == want,
            "public listener, {what}: {}",
            shorter(passed)
        );

        let resp = s
            .egress_as(&assertion, "/v1/me")
            .header("traceparent", TRACEPARENT)
            .header("tracestate", &state)
            .send()
            .await
            .expect("egress");
        assert_eq!(resp.status(), 200, "{what}");
        let at_spotify = s.last_api_request().await;
        assert_eq!(
            at_spotify["headers"]["traceparent"], TRACEPARENT,
            "{what}: {at_spotify}"
        );
        let passed = at_spotify["headers"]["tracestate"].as_str();
        assert!(
            passed == want,
            "egress listener, {what}: {}",
            shorter(passed)
        );
    }
    // Two headers are one list: a key in both makes it invalid.
    let resp = s
        .egress_as(&assertion, "/v1/me")
        .header("traceparent", TRACEPARENT)
        .header("tracestate", "rojo=1")
        .header("tracestate", "rojo=2")
        .send()
        .await
        .expect("egress");
    assert_eq!(resp.status(), 200);
    let at_spotify = s.last_api_request().await;
    assert!(
        at_spotify["headers"].get("tracestate").is_none(),
        "{at_spotify}"
    );
}
