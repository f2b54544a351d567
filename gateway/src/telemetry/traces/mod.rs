//! Traces: an OpenTelemetry span for every request on the public and egress listeners (and
//! children for the work inside one), exported as OTLP over HTTP/protobuf (`export.rs`) and
//! sampled parent-based at `tracing.sample_ratio` (`sampler.rs`).
//!
//! The request path holds a `RequestSpan` in its per-request context (`proxy::RequestInfo`):
//! made in the first phase from the client's `traceparent` (continued, not restarted), ended in
//! `logging`. While `tracing.enabled` is off no span is made and the request's trace context
//! is passed on as before. A span not sampled is still made, so the trace id and the caller's
//! decision travel on to the upstream; it is simply not exported.
//!
//! Attributes follow OpenTelemetry's HTTP semantic conventions and never carry a secret, a raw
//! path (it can hold a user id) or a raw user id: routes are the fixed templates the metrics use.

mod export;
mod sampler;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use futures::future::Either;
use opentelemetry::context::FutureExt;

use opentelemetry::trace::{
    Link, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer, TracerProvider,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, SpanExporter};
use opentelemetry_sdk::Resource;

use crate::config::TracingConfig;
use crate::telemetry::metrics::Metrics;

pub use export::QUEUE_SPANS;

/// The name a service gets when neither `tracing.service_name` nor `OTEL_SERVICE_NAME` gives one.
pub const DEFAULT_SERVICE_NAME: &str = "spotify-gateway";
/// How long the exit waits for the last spans to reach the collector.
pub const FLUSH_WITHIN: Duration = Duration::from_secs(5);

/// The tracer, for spans made below the listeners (`child_of_current`), which know no
/// `Traces`: set once at start (one gateway per process).
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// How long one export may take before it counts as failed.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The gateway's tracer and whether it is on.
pub struct Traces {
    tracer: SdkTracer,
    /// Holds the processor (and so the queue) for the process's life.
    _provider: SdkTracerProvider,
    /// The queue's handle, to flush it at the exit.
    queue: export::Queue,
    enabled: AtomicBool,
    ratio: sampler::Ratio,
}

impl Traces {
    /// The exporter and its queue, made whether or not tracing is on so SIGHUP can turn it
    /// on; nothing connects to the collector before a span is exported.
    pub fn start(config: &TracingConfig, metrics: Arc<Metrics>) -> std::io::Result<Traces> {
        let home = crate::runtime::io_home()?;
        let client = reqwest::Client::builder()
            .timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(std::io::Error::other)?;
        warn_of_grpc(|name| std::env::var(name).ok());
        // The endpoint: `otlp_endpoint`, else the crate reads the standard variables
        // (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as it is, `OTEL_EXPORTER_OTLP_ENDPOINT` plus
        // `/v1/traces`), else `http://localhost:4318/v1/traces`. The headers: the config's,
        // then `OTEL_EXPORTER_OTLP_TRACES_HEADERS` or `OTEL_EXPORTER_OTLP_HEADERS` on top.
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_timeout(EXPORT_TIMEOUT);
        if let Some(url) = &config.otlp_endpoint {
            builder = builder.with_endpoint(traces_url(url));
        }
        if let Some(headers) = &config.headers {
            builder = builder.with_headers(parse_headers(headers.expose()));
        }
        let mut exporter = builder.build().map_err(std::io::Error::other)?;
        let resource = Resource::builder_empty()
            .with_service_name(service_name(config, |name| std::env::var(name).ok()))
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        exporter.set_resource(&resource);
        let ratio = sampler::Ratio::new(config.sample_ratio);
        let queue = export::Queue::start(exporter, export::Settings::from_env(), &home, metrics);
        let provider = SdkTracerProvider::builder()
            .with_sampler(ratio.clone())
            .with_resource(resource)
            .with_span_processor(queue.clone())
            .build();
        let tracer = provider.tracer("spotify-gateway");
        let _ = TRACER.set(tracer.clone());
        Ok(Traces {
            tracer,
            _provider: provider,
            queue,
            enabled: AtomicBool::new(config.enabled),
            ratio,
        })
    }

    /// The exit (after the drain): sends the spans still queued, the last requests' among
    /// them, waiting at most `within`; whether they went.
    pub fn flush(&self, within: Duration) -> bool {
        self.queue.flush(within)
    }

    /// SIGHUP: `enabled` and `sample_ratio` apply to requests from now on.
    pub fn apply(&self, config: &TracingConfig) {
        self.enabled.store(config.enabled, Ordering::Relaxed);
        self.ratio.set(config.sample_ratio);
    }

    /// A request's server span, continuing `traceparent` when the client sent a valid one;
    /// `None` while tracing is off.
    pub fn request(
        &self,
        listener: &'static str,
        traceparent: Option<&str>,
    ) -> Option<RequestSpan> {
        if !self.enabled.load(Ordering::Relaxed) {
            return None;
        }
        let parent = traceparent
            .and_then(parse_traceparent)
            .map(|remote| Context::new().with_remote_span_context(remote))
            .unwrap_or_default();
        let span = self
            .tracer
            .span_builder(listener)
            .with_kind(SpanKind::Server)
            .with_attributes([KeyValue::new("gateway.listener", listener)])
            .start_with_context(&self.tracer, &parent);
        Some(RequestSpan {
            cx: parent.with_span(span),
            tracer: self.tracer.clone(),
        })
    }
}

/// A request's span, with what its children need.
pub struct RequestSpan {
    cx: Context,
    tracer: SdkTracer,
}

impl RequestSpan {
    /// The `traceparent` naming this span, for the upstream.
    pub fn traceparent(&self) -> String {
        traceparent_of(self.cx.span().span_context())
    }

    /// The request's context, owned (`in_scope`).
    pub fn scope(&self) -> Scope {
        Scope(self.cx.clone())
    }

    /// Adds attributes to the request's span.
    pub fn set(&self, attributes: impl IntoIterator<Item = KeyValue>) {
        self.cx.span().set_attributes(attributes);
    }

    /// A child span of the request (a client span when `kind` says so), started now.
    pub fn child(&self, name: &'static str, kind: SpanKind) -> ChildSpan {
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .start_with_context(&self.tracer, &self.cx);
        ChildSpan {
            cx: self.cx.with_span(span),
        }
    }

    /// Ends the span with the answer's status: named `{method} {route}`, an error for a 5xx
    /// or no answer at all (a server span's 4xx is the client's, not ours).
    pub fn end(self, method: &str, route: &'static str, status: u16) {
        let span = self.cx.span();
        span.update_name(format!("{method} {route}"));
        span.set_attributes([
            KeyValue::new("http.request.method", method.to_owned()),
            KeyValue::new("http.route", route),
        ]);
        if status != 0 {
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        if status == 0 || status >= 500 {
            span.set_status(Status::error(if status == 0 {
                "no answer".to_owned()
            } else {
                status.to_string()
            }));
        }
        span.end();
    }
}

/// `work` with the request's span as the current context (while there is one), so the spans
/// made inside it (`child_of_current`: a token refresh, a store operation) are its children.
pub fn within<F: Future>(span: Option<&RequestSpan>, work: F) -> impl Future<Output = F::Output> {
    in_scope(span.map(RequestSpan::scope), work)
}

/// A request's context, owned: `in_scope` takes it where the request's state is borrowed
/// mutably by the work itself.
pub struct Scope(Context);

/// `work` inside `scope` (see `within`).
pub fn in_scope<F: Future>(scope: Option<Scope>, work: F) -> impl Future<Output = F::Output> {
    match scope {
        Some(Scope(cx)) => Either::Left(work.with_context(cx)),
        None => Either::Right(work),
    }
}

/// A child of the current context's span, when there is one (inside `within`) and it is
/// recorded; `None` otherwise, so a caller outside a traced request pays nothing.
pub fn child_of_current(name: &'static str) -> Option<ChildSpan> {
    child_of_current_as(name, SpanKind::Internal)
}

/// A client span (a call that leaves the gateway) under the current context's span.
pub fn client_of_current(name: &'static str) -> Option<ChildSpan> {
    child_of_current_as(name, SpanKind::Client)
}

/// The current context's span, for a task that runs apart from it (`ChildSpan::scope`,
/// `child_of`): a webhook delivery made for a request's event.
pub fn current_parent() -> Option<SpanRef> {
    let cx = Context::current();
    let span = cx.span();
    span.is_recording()
        .then(|| SpanRef(span.span_context().clone()))
}

/// A span whose parent is `parent` (a request's, maybe ended long ago): the delivery of a
/// webhook for that request's event. `None` without a parent or while tracing is off.
pub fn child_of(parent: Option<&SpanRef>, name: &'static str, kind: SpanKind) -> Option<ChildSpan> {
    let SpanRef(parent) = parent?;
    let tracer = TRACER.get()?;
    let cx = Context::new().with_remote_span_context(parent.clone());
    let span = tracer
        .span_builder(name)
        .with_kind(kind)
        .start_with_context(tracer, &cx);
    Some(ChildSpan {
        cx: cx.with_span(span),
    })
}

/// A token refresh's follower: it waited (from `since`) for the leader's refresh of the same
/// session instead of refreshing itself; its span links to the leader's (`leader`, when that
/// one was traced), so a backend shows the one refresh every waiter took its token from.
pub fn follower_of_current(since: SystemTime, leader: Option<&SpanRef>) -> Option<ChildSpan> {
    let cx = Context::current();
    if !cx.span().is_recording() {
        return None;
    }
    let tracer = TRACER.get()?;
    let mut builder = tracer
        .span_builder("token refresh wait")
        .with_kind(SpanKind::Internal)
        .with_start_time(since);
    if let Some(SpanRef(leader)) = leader {
        builder = builder.with_links(vec![Link::with_context(leader.clone())]);
    }
    let span = builder.start_with_context(tracer, &cx);
    Some(ChildSpan {
        cx: cx.with_span(span),
    })
}

fn child_of_current_as(name: &'static str, kind: SpanKind) -> Option<ChildSpan> {
    let cx = Context::current();
    if !cx.span().is_recording() {
        return None;
    }
    let tracer = TRACER.get()?;
    let span = tracer
        .span_builder(name)
        .with_kind(kind)
        .start_with_context(tracer, &cx);
    Some(ChildSpan {
        cx: cx.with_span(span),
    })
}

/// A span's identity (trace and span id), to link to it or to parent a later span on it.
#[derive(Clone, Debug)]
pub struct SpanRef(SpanContext);

/// A span inside a request (the upstream call, a token refresh); ended by `end` or dropped.
pub struct ChildSpan {
    cx: Context,
}

impl ChildSpan {
    pub fn traceparent(&self) -> String {
        traceparent_of(self.cx.span().span_context())
    }

    pub fn set(&self, attributes: impl IntoIterator<Item = KeyValue>) {
        self.cx.span().set_attributes(attributes);
    }

    /// This span's identity, for the spans that link to it.
    pub fn reference(&self) -> SpanRef {
        SpanRef(self.cx.span().span_context().clone())
    }

    /// This span as the current context of work done apart from the request (the token
    /// refresh's own task): its store operations are its children.
    pub fn scope(&self) -> Scope {
        Scope(self.cx.clone())
    }

    /// Ends an internal span: an error with `error` when there is one.
    pub fn end(self, error: Option<&'static str>) {
        let span = self.cx.span();
        if let Some(e) = error {
            span.set_status(Status::error(e));
        }
        span.end();
    }

    /// Ends a client span with the answer's status: an error for a 4xx or 5xx (HTTP semantic
    /// conventions for client spans), or for `error` when there was no answer.
    pub fn end_http(self, status: u16, error: Option<&'static str>) {
        let span = self.cx.span();
        if status != 0 {
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        match (status, error) {
            (0, e) => {
                let e = e.unwrap_or("no answer");
                span.set_attribute(KeyValue::new("error.type", e));
                span.set_status(Status::error(e));
            }
            (s, _) if s >= 400 => {
                span.set_attribute(KeyValue::new("error.type", s.to_string()));
                span.set_status(Status::error(s.to_string()));
            }
            _ => {}
        }
        span.end();
    }
}

/// A client span's `server.address` and `server.port` (HTTP semantic conventions) for `url`.
pub fn server_of(url: &url::Url) -> [KeyValue; 2] {
    [
        KeyValue::new("server.address", url.host_str().unwrap_or("").to_owned()),
        KeyValue::new(
            "server.port",
            i64::from(url.port_or_known_default().unwrap_or(0)),
        ),
    ]
}

/// `service.name`: `tracing.service_name` when the config sets it, else `OTEL_SERVICE_NAME`,
/// else `spotify-gateway`.
fn service_name(config: &TracingConfig, var: impl Fn(&str) -> Option<String>) -> String {
    config
        .service_name
        .clone()
        .or_else(|| var("OTEL_SERVICE_NAME").filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned())
}

/// The gateway exports OTLP over HTTP/protobuf only: a protocol variable asking for gRPC is
/// said to be ignored, once, at start (the HTTP endpoint is still read from the variables).
fn warn_of_grpc(var: impl Fn(&str) -> Option<String>) -> bool {
    let asked = [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ]
    .into_iter()
    .find_map(|name| var(name).map(|v| (name, v)));
    match asked {
        Some((name, value)) if value.trim() != "http/protobuf" => {
            tracing::warn!(
                variable = name,
                value = %value,
                "the gateway exports OTLP over HTTP/protobuf only; {name} is ignored \
                 (point the endpoint at the collector's HTTP port, 4318)"
            );
            true
        }
        _ => false,
    }
}

/// `{endpoint}/v1/traces`, as `OTEL_EXPORTER_OTLP_ENDPOINT` is read (its path kept before).
fn traces_url(base: &url::Url) -> String {
    format!("{}/v1/traces", base.as_str().trim_end_matches('/'))
}

/// `key=value,key2=value2`, the `OTEL_EXPORTER_OTLP_HEADERS` format (values percent-decoded
/// are not needed for API keys); pairs without `=` are skipped.
fn parse_headers(raw: &str) -> HashMap<String, String> {
    raw.split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

/// A valid version-00 `traceparent` (`proxy::trace` has checked it) as a remote parent.
fn parse_traceparent(value: &str) -> Option<SpanContext> {
    let mut parts = value.split('-');
    let (_version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(SpanContext::new(
        TraceId::from_hex(trace).ok()?,
        SpanId::from_hex(parent).ok()?,
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    ))
}

fn traceparent_of(sc: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_round_trips() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let sc = parse_traceparent(tp).expect("valid");
        assert!(sc.is_sampled() && sc.is_remote());
        assert_eq!(traceparent_of(&sc), tp);
    }

    #[test]
    fn headers_are_pairs() {
        let h = parse_headers("api-key=abc, x-scope = team ,bad");
        assert_eq!(h.len(), 2);
        assert_eq!(h["api-key"], "abc");
        assert_eq!(h["x-scope"], "team");
    }

    #[test]
    fn the_service_name_is_the_configs_then_the_environments() {
        let mut config = TracingConfig::default();
        let env = |name: &str| (name == "OTEL_SERVICE_NAME").then(|| "from-env".to_string());
        assert_eq!(service_name(&config, env), "from-env");
        assert_eq!(service_name(&config, |_| None), DEFAULT_SERVICE_NAME);
        config.service_name = Some("from-config".into());
        assert_eq!(service_name(&config, env), "from-config");
    }

    #[test]
    fn only_a_grpc_protocol_is_warned_about() {
        let env = |value: &'static str| {
            move |name: &str| (name == "OTEL_EXPORTER_OTLP_PROTOCOL").then(|| value.to_string())
        };
        assert!(warn_of_grpc(env("grpc")));
        assert!(!warn_of_grpc(env("http/protobuf")));
        assert!(!warn_of_grpc(|_| None));
    }
}
