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
use std::time::Duration;

use futures::future::Either;
use opentelemetry::context::FutureExt;

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer, TracerProvider,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, SpanExporter};
use opentelemetry_sdk::Resource;

use crate::config::TracingConfig;
use crate::telemetry::metrics::Metrics;

pub use export::QUEUE_SPANS;

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
            .with_service_name(config.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        exporter.set_resource(&resource);
        let ratio = sampler::Ratio::new(config.sample_ratio);
        let provider = SdkTracerProvider::builder()
            .with_sampler(ratio.clone())
            .with_resource(resource)
            .with_span_processor(export::Queue::start(exporter, &home, metrics))
            .build();
        let tracer = provider.tracer("spotify-gateway");
        let _ = TRACER.set(tracer.clone());
        Ok(Traces {
            tracer,
            _provider: provider,
            enabled: AtomicBool::new(config.enabled),
            ratio,
        })
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
/// made inside it (`child_of_current`: a token refresh) are its children.
pub fn within<F: Future>(span: Option<&RequestSpan>, work: F) -> impl Future<Output = F::Output> {
    match span {
        Some(span) => Either::Left(work.with_context(span.cx.clone())),
        None => Either::Right(work),
    }
}

/// A child of the current context's span, when there is one (inside `within`) and it is
/// recorded; `None` otherwise, so a caller outside a traced request pays nothing.
pub fn child_of_current(name: &'static str) -> Option<ChildSpan> {
    let cx = Context::current();
    if !cx.span().is_recording() {
        return None;
    }
    let tracer = TRACER.get()?;
    let span = tracer
        .span_builder(name)
        .with_kind(SpanKind::Internal)
        .start_with_context(tracer, &cx);
    Some(ChildSpan {
        cx: cx.with_span(span),
    })
}

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
            (0, e) => span.set_status(Status::error(e.unwrap_or("no answer"))),
            (s, _) if s >= 400 => span.set_status(Status::error(s.to_string())),
            _ => {}
        }
        span.end();
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
}
