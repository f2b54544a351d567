//! How spans leave the gateway, against real collectors (`common/otlp.rs`): the standard
//! `OTEL_*` variables and their precedence against `[tracing]`; a collector that hangs or is
//! dead costs no request (spans are dropped and counted instead) and is warned about once, not
//! once a batch; and SIGTERM sends the last request's spans before the exit.

mod common;

use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(15);

/// A stack with tracing on and no `otlp_endpoint` (the environment names it, or `endpoint`).
fn tracing_on(endpoint: Option<&str>) -> StackBuilder {
    let b = Stack::builder()
        .app(App::Echo)
        .edit(|doc| doc["tracing"] = toml_edit::table())
        .set("tracing.enabled", true);
    match endpoint {
        Some(url) => b.set("tracing.otlp_endpoint", url),
        None => b,
    }
}

/// One egress call with this request id.
async fn call(s: &Stack, assertion: &str, id: &str) -> u16 {
    s.egress_as(assertion, "/v1/me")
        .header("x-request-id", id)
        .send()
        .await
        .expect("egress")
        .status()
        .as_u16()
}

async fn signed_in(s: &Stack) -> String {
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    s.assertion(&b).await
}

fn dead_url() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standard_variables_name_the_collector_its_headers_and_the_service() {
    let receiver = OtlpReceiver::start().await;
    let s = tracing_on(None)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url.as_str())
        .env("OTEL_EXPORTER_OTLP_HEADERS", "x-backend-key=from-env")
        .env("OTEL_SERVICE_NAME", "svc-from-env")
        .start()
        .await;
    let assertion = signed_in(&s).await;
    assert_eq!(call(&s, &assertion, "req-env").await, 200);
    let span = receiver.request_span("req-env").await;
    assert_eq!(
        span.resource.get("service.name").map(String::as_str),
        Some("svc-from-env")
    );
    assert!(
        receiver
            .headers()
            .iter()
            .all(|h| h.get("x-backend-key").map(String::as_str) == Some("from-env")),
        "{:?}",
        receiver.headers()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_comes_before_the_traces_variable_which_comes_before_the_general_one() {
    // The config's endpoint and service name win over the variables.
    let by_config = OtlpReceiver::start().await;
    let by_env = OtlpReceiver::start().await;
    let traces_url = format!("{}/v1/traces", by_env.url);
    let s = tracing_on(Some(&by_config.url))
        .set("tracing.service_name", "svc-from-config")
        .env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces_url.as_str())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", dead_url())
        .env("OTEL_SERVICE_NAME", "svc-from-env")
        .start()
        .await;
    let assertion = signed_in(&s).await;
    assert_eq!(call(&s, &assertion, "req-config").await, 200);
    let span = by_config.request_span("req-config").await;
    assert_eq!(
        span.resource.get("service.name").map(String::as_str),
        Some("svc-from-config")
    );
    assert!(by_env.spans().is_empty(), "the variable lost to the config");

    // Without it, the traces variable (used as it is) before the general one.
    let t = tracing_on(None)
        .env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces_url.as_str())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", dead_url())
        .start()
        .await;
    let assertion = signed_in(&t).await;
    assert_eq!(call(&t, &assertion, "req-traces-var").await, 200);
    let span = by_env.request_span("req-traces-var").await;
    assert_eq!(
        span.resource.get("service.name").map(String::as_str),
        Some("spotify-gateway")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_collector_delays_no_request_and_the_spans_it_cannot_take_are_dropped() {
    let hanging = HangingCollector::start().await;
    let s = tracing_on(Some(&hanging.url))
        // A small queue and batches sent at once: the first export hangs at the collector,
        // and the spans after it fill the queue.
        .env("OTEL_BSP_MAX_QUEUE_SIZE", "4")
        .env("OTEL_BSP_SCHEDULE_DELAY", "10")
        .start()
        .await;
    let assertion = signed_in(&s).await;
    s.gw.wait_until(WAIT, "the collector to hold an export", || async {
        hanging.accepted() > 0
    })
    .await;
    for i in 0..20 {
        assert_eq!(call(&s, &assertion, &format!("req-{i}")).await, 200);
    }
    let dropped = "spotify_gateway_trace_spans_total{result=\"dropped\"}";
    assert!(s.metric(dropped).await > 0.0, "spans dropped, counted");
    assert_eq!(
        s.metric("spotify_gateway_trace_spans_total{result=\"exported\"}")
            .await,
        0.0,
        "the collector never answered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_is_warned_about_once_not_once_a_batch() {
    let s = tracing_on(Some(&dead_url()))
        .env("OTEL_BSP_SCHEDULE_DELAY", "10")
        .start()
        .await;
    let assertion = signed_in(&s).await;
    let failed = "spotify_gateway_trace_spans_total{result=\"failed\"}";
    let mut seen = 0.0;
    // Three batches, each after the one before has failed.
    for i in 0..3 {
        assert_eq!(call(&s, &assertion, &format!("req-{i}")).await, 200);
        s.gw.wait_until(WAIT, "the batch to fail", || async {
            s.metric(failed).await > seen
        })
        .await;
        seen = s.metric(failed).await;
    }
    let warnings = s.gw.log().matches("did not take spans").count();
    assert_eq!(warnings, 1, "one warning for three failed exports");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_sends_the_last_requests_spans_before_the_exit() {
    let receiver = OtlpReceiver::start().await;
    let mut s = tracing_on(Some(&receiver.url))
        // A batch would wait ten minutes: only the flush at the exit can send it.
        .env("OTEL_BSP_SCHEDULE_DELAY", "600000")
        .start()
        .await;
    let assertion = signed_in(&s).await;
    assert_eq!(call(&s, &assertion, "req-last").await, 200);
    assert!(
        receiver.spans().is_empty(),
        "nothing is sent before the batch is due"
    );
    let status = tokio::task::block_in_place(|| s.gw.terminate());
    assert!(status.success(), "{status}");
    let last = receiver
        .spans()
        .into_iter()
        .find(|sp| sp.attr("gateway.request_id") == Some("req-last"));
    assert!(
        last.is_some(),
        "the last request's span reached the collector"
    );
}
