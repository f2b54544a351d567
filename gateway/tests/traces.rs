//! OpenTelemetry spans through the real gateway to a real OTLP/HTTP receiver
//! (`common/otlp.rs`, decoding with the protocol's own definitions): a login and an egress
//! call make the spans an operator expects, linked to their parents and the trace id Spotify
//! and the access log see; a client's `traceparent` is continued; sampling at 0 exports
//! nothing yet still passes the trace on; a dead collector costs no request; and nothing
//! exported holds a token, a cookie or a user id.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// OTLP span kinds.
const INTERNAL: i32 = 1;
const SERVER: i32 = 2;
const CLIENT: i32 = 3;
/// OTLP status code for an error.
const ERROR: i32 = 2;
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A stack exporting to `receiver` at `ratio`.
fn traced(receiver: &OtlpReceiver, ratio: f64) -> StackBuilder {
    tracing_on()
        .set("tracing.otlp_endpoint", receiver.url.as_str())
        .set("tracing.sample_ratio", ratio)
}

/// A stack with `[tracing] enabled = true`.
fn tracing_on() -> StackBuilder {
    Stack::builder()
        .app(App::Echo)
        .edit(|doc| doc["tracing"] = toml_edit::table())
        .set("tracing.enabled", true)
}

/// The trace and parent ids of a `traceparent`, and its flags.
fn ids(traceparent: &str) -> (String, String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_and_an_egress_call_make_a_tree_of_spans() {
    let receiver = OtlpReceiver::start().await;
    let lifetime = Duration::from_secs(60);
    let s = traced(&receiver, 1.0)
        .token_lifetime(lifetime)
        .set("tracing.service_name", "gw-under-test")
        .start()
        .await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    for route in ["/auth/login", "/auth/callback"] {
        let span = receiver
            .span(route, |sp| sp.attr("http.route") == Some(route))
            .await;
        assert_eq!(span.kind, SERVER, "{span:?}");
        assert_eq!(span.name, format!("GET {route}"), "{span:?}");
        assert_eq!(span.attr("gateway.listener"), Some("public"), "{span:?}");
        assert_eq!(
            span.resource.get("service.name").map(String::as_str),
            Some("gw-under-test")
        );
    }
    // The login's audit event names the callback's trace.
    let callback = receiver
        .span("the callback", |sp| {
            sp.attr("http.route") == Some("/auth/callback")
        })
        .await;
    let events = wait_for_event(&s.gw, "login.succeeded").await;
    assert_eq!(
        events[0]["trace_id"],
        callback.trace_id.as_str(),
        "{:?}",
        events[0]
    );
    let assertion = s.assertion(&b).await;

    // The token runs out by the gateway's clock: the call refreshes it, misses the cache and
    // goes to Spotify.
    s.gw.advance_clock(lifetime).await;
    let resp = s
        .egress_as(&assertion, "/v1/me")
        .header("x-request-id", "req-traced-1")
        .send()
        .await
        .expect("egress");
    assert_eq!(resp.status(), 200);
    let at_spotify = s.last_api_request().await;
    let sent = at_spotify["headers"]["traceparent"]
        .as_str()
        .expect("traceparent")
        .to_string();
    let (trace_id, call_id, flags) = ids(&sent);
    assert_eq!(flags, "01", "a kept span is sampled: {sent}");

    let request = receiver.request_span("req-traced-1").await;
    assert_eq!(request.kind, SERVER);
    assert_eq!(request.name, "GET /v1/me");
    assert_eq!(request.trace_id, trace_id);
    assert_eq!(
        request.parent_span_id, "",
        "a new trace starts at the gateway"
    );
    assert_eq!(request.attr("spotify.endpoint"), Some("/v1/me"));
    assert_eq!(request.attr("spotify.cache"), Some("miss"), "{request:?}");
    assert_eq!(request.attr("http.response.status_code"), Some("200"));
    assert_ne!(request.status, ERROR);

    // The refresh the expired token needed is the request's child.
    let refresh = receiver
        .span("the token refresh", |sp| {
            sp.name == "token refresh" && sp.trace_id == request.trace_id
        })
        .await;
    assert_eq!(refresh.kind, INTERNAL);
    assert_eq!(refresh.parent_span_id, request.span_id);
    assert_ne!(refresh.status, ERROR, "{refresh:?}");

    // Spotify saw the call's own span as its parent.
    let call = receiver
        .span("the call to Spotify", |sp| sp.span_id == call_id)
        .await;
    assert_eq!(call.kind, CLIENT);
    assert_eq!(call.parent_span_id, request.span_id);
    assert_eq!(call.trace_id, trace_id);
    assert_eq!(call.attr("http.response.status_code"), Some("200"));
    assert!(call.attr("network.protocol.name").is_some(), "{call:?}");

    // The access line names the same trace.
    let line = format!("trace_id={trace_id}");
    s.gw.wait_until(
        Duration::from_secs(5),
        "the access line with the trace id",
        || async {
            s.gw.log()
                .lines()
                .any(|l| l.contains("req-traced-1") && l.contains(&line))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_given_traceparent_is_continued() {
    let receiver = OtlpReceiver::start().await;
    let s = traced(&receiver, 0.0).start().await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    let seen: Value = b
        .get(format!("{}/app", s.gw.public_url()))
        .header("traceparent", TRACEPARENT)
        .header("x-request-id", "req-continued")
        .send()
        .await
        .expect("public")
        .json()
        .await
        .expect("echo");
    let (given_trace, given_parent, _) = ids(TRACEPARENT);
    let (trace_id, parent, flags) = ids(seen["headers"]["traceparent"].as_str().expect("tp"));
    assert_eq!(trace_id, given_trace);
    assert_eq!(
        flags, "01",
        "the caller sampled it, so it is kept even at ratio 0"
    );
    let span = receiver.request_span("req-continued").await;
    assert_eq!(span.trace_id, given_trace);
    assert_eq!(span.parent_span_id, given_parent);
    // The app's parent is the gateway's span, not the client's.
    assert_eq!(span.span_id, parent);
    assert_eq!(seen["headers"]["x-request-id"], "req-continued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_at_zero_exports_nothing_but_passes_the_trace_on() {
    let receiver = OtlpReceiver::start().await;
    let s = traced(&receiver, 0.0).start().await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    let assertion = s.assertion(&b).await;
    let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    let resp = s
        .egress_as(&assertion, "/v1/me")
        .header("traceparent", unsampled)
        .send()
        .await
        .expect("egress");
    assert_eq!(resp.status(), 200);
    let at_spotify = s.last_api_request().await;
    let (trace_id, parent, flags) = ids(at_spotify["headers"]["traceparent"].as_str().expect("tp"));
    assert_eq!(trace_id, ids(unsampled).0);
    assert_eq!(flags, "00");
    assert_ne!(
        parent,
        ids(unsampled).1,
        "the gateway's own (unexported) span is the parent"
    );

    // A sampled caller's span is kept; the queue is in order, so once it arrives everything
    // made before it would have too.
    let resp = s
        .egress_as(&assertion, "/v1/me")
        .header("traceparent", TRACEPARENT)
        .header("x-request-id", "req-marker")
        .send()
        .await
        .expect("egress");
    assert_eq!(resp.status(), 200);
    receiver.request_span("req-marker").await;
    let others: Vec<_> = receiver
        .spans()
        .into_iter()
        .filter(|sp| sp.trace_id != ids(TRACEPARENT).0)
        .collect();
    assert!(others.is_empty(), "exported at ratio 0: {others:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_costs_no_request() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let s = tracing_on()
        .set("tracing.otlp_endpoint", dead.as_str())
        .start()
        .await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    let assertion = s.assertion(&b).await;
    for _ in 0..20 {
        let resp = s.egress_get_as(&assertion, "/v1/me").await;
        assert_eq!(resp.status(), 200);
    }
    s.gw.wait_until(
        Duration::from_secs(15),
        "a failed export counted",
        || async {
            s.metric("spotify_gateway_trace_spans_total{result=\"failed\"}")
                .await
                > 0.0
        },
    )
    .await;
    // And the gateway still answers once the exporter has failed.
    assert_eq!(s.egress_get_as(&assertion, "/v1/me").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_exported_holds_a_secret_or_a_user_id() {
    let receiver = OtlpReceiver::start().await;
    let lifetime = Duration::from_secs(60);
    let s = traced(&receiver, 1.0)
        .token_lifetime(lifetime)
        .start()
        .await;
    let b = browser();
    let trip = login(&b, &s.gw, "alice", "/").await;
    let assertion = s.assertion(&b).await;
    // The token runs out: the call refreshes it, so the refresh's spans are exported too.
    s.gw.advance_clock(lifetime).await;
    let resp = s
        .egress_as(&assertion, "/v1/users/alice")
        .header("x-request-id", "req-last")
        .send()
        .await
        .expect("egress");
    // Whatever Spotify says, the raw path with the user id went to it.
    assert!(resp.status().as_u16() < 500, "{}", resp.status());
    let at_spotify = s.last_api_request().await;
    assert!(
        at_spotify.to_string().contains("/v1/users/alice"),
        "{at_spotify}"
    );
    receiver.request_span("req-last").await;
    let dump = receiver.dump();
    let token = s.last_api_request().await["headers"]["authorization"]
        .as_str()
        .expect("bearer")
        .trim_start_matches("Bearer ")
        .to_string();
    let mut secrets = vec![
        ("the user id", "alice".to_string()),
        ("the client secret", CLIENT_SECRET.to_string()),
        ("the session secret", SESSION_SECRET.to_string()),
        ("the access token", token),
        ("the assertion", assertion.clone()),
    ];
    let cookie = trip.session_cookie();
    let (_, sealed) = cookie.split_once('=').expect("name=value");
    secrets.push(("the session cookie", sealed.to_string()));
    let callback = reqwest::Url::parse(&trip.callback_url).expect("callback url");
    let code = callback
        .query_pairs()
        .find(|(k, _)| k == "code")
        .expect("code");
    secrets.push(("the authorization code", code.1.into_owned()));
    for (what, secret) in secrets {
        assert!(!secret.is_empty());
        assert!(!dump.contains(&secret), "{what} was exported");
    }
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

/// An egress call with this request id (and `traceparent`, when given): its status.
async fn call(s: &Stack, assertion: &str, id: &str, traceparent: Option<&str>) -> u16 {
    let mut req = s.egress_as(assertion, "/v1/me").header("x-request-id", id);
    if let Some(tp) = traceparent {
        req = req.header("traceparent", tp);
    }
    req.send().await.expect("egress").status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_turns_tracing_on_and_sets_the_ratio() {
    let receiver = OtlpReceiver::start().await;
    let s = traced(&receiver, 1.0)
        .set("tracing.enabled", false)
        .start()
        .await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    let assertion = s.assertion(&b).await;
    assert_eq!(call(&s, &assertion, "req-off", None).await, 200);

    reload(&s, &s.gw.config().set("tracing.enabled", true), 1).await;
    assert_eq!(call(&s, &assertion, "req-on", None).await, 200);
    receiver.request_span("req-on").await;

    reload(&s, &s.gw.config().set("tracing.sample_ratio", 0.0), 2).await;
    assert_eq!(call(&s, &assertion, "req-zero", None).await, 200);
    let at_spotify = s.last_api_request().await;
    let (_, _, flags) = ids(at_spotify["headers"]["traceparent"].as_str().expect("tp"));
    assert_eq!(flags, "00", "not sampled at ratio 0");
    // A sampled caller's span is still kept, and comes after anything made before it.
    assert_eq!(
        call(&s, &assertion, "req-marker", Some(TRACEPARENT)).await,
        200
    );
    receiver.request_span("req-marker").await;
    let ids_seen: Vec<String> = receiver
        .spans()
        .iter()
        .filter_map(|sp| sp.attr("gateway.request_id").map(str::to_string))
        .collect();
    assert!(!ids_seen.iter().any(|id| id == "req-off"), "{ids_seen:?}");
    assert!(!ids_seen.iter().any(|id| id == "req-zero"), "{ids_seen:?}");
}
