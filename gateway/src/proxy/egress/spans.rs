//! The egress call's spans (`telemetry::traces`): the request's span takes the route template
//! (`spotify.endpoint`, `endpoint.rs`) and the cache's word (`spotify.cache`); a cool-down
//! that answers for Spotify, the budget's wait and a retry's backoff are spans of their own;
//! and each attempt sent to Spotify is a client span, whose id the attempt carries on in
//! `traceparent`. All of it is a no-op while tracing is off.

use std::time::Duration;

use opentelemetry::trace::SpanKind;
use opentelemetry::KeyValue;

use super::{endpoint, EgressCtx};
use crate::quota::Reason;
use crate::telemetry::traces::{self, ChildSpan};

impl EgressCtx {
    /// The call's route template, on its span (computed only while it is traced).
    pub(super) fn span_endpoint(&mut self, path: &str) {
        if let Some(span) = &self.req.span {
            let template = endpoint::template(path);
            span.set([KeyValue::new("spotify.endpoint", template.clone())]);
            self.endpoint = template;
        }
    }

    /// The cache's part in this call: hit, coalesced, miss, revalidated.
    pub(super) fn span_cache(&self, status: &'static str) {
        if let Some(span) = &self.req.span {
            span.set([KeyValue::new("spotify.cache", status)]);
        }
    }

    /// The call is answered 429 by the gateway during Spotify's `Retry-After` (the cool-down
    /// every replica holds): a span that says so, with the reason and what is left of it.
    pub(super) fn span_cool_down(&self, wait: Duration, reason: Reason) {
        let Some(span) = &self.req.span else { return };
        let hold = span.child("cool-down hold", SpanKind::Internal);
        hold.set([
            KeyValue::new("spotify.cool_down.reason", reason.label()),
            KeyValue::new(
                "spotify.cool_down.remaining_ms",
                i64::try_from(wait.as_millis()).unwrap_or(i64::MAX),
            ),
        ]);
        hold.end(None);
    }

    /// The wait for room in `egress.budget_per_30s` begins.
    pub(super) fn span_budget_wait(&self) -> Option<ChildSpan> {
        let span = self.req.span.as_ref()?;
        Some(span.child("budget wait", SpanKind::Internal))
    }

    /// A retry's backoff begins, before attempt `attempt` (1 the first retry).
    pub(super) fn span_retry(&self, backoff: Duration) -> Option<ChildSpan> {
        let span = self
            .req
            .span
            .as_ref()?
            .child("retry backoff", SpanKind::Internal);
        span.set([
            KeyValue::new("http.request.resend_count", i64::from(self.attempts)),
            KeyValue::new(
                "gateway.retry.backoff_ms",
                i64::try_from(backoff.as_millis()).unwrap_or(i64::MAX),
            ),
        ]);
        Some(span)
    }

    /// An attempt leaves for Spotify (`api`, with `method`): its client span starts, and
    /// names itself upstream.
    pub(super) fn span_attempt(&mut self, api: &url::Url, method: &str) {
        self.span_attempt_failed("retried");
        let Some(span) = &self.req.span else { return };
        let call = span.child("spotify call", SpanKind::Client);
        call.set(traces::server_of(api));
        call.set([
            KeyValue::new("spotify.endpoint", self.endpoint.clone()),
            KeyValue::new("url.template", self.endpoint.clone()),
            KeyValue::new("http.request.method", method.to_owned()),
            KeyValue::new("http.request.resend_count", i64::from(self.attempts)),
        ]);
        self.req.trace.traceparent = call.traceparent();
        self.upstream_span = Some(call);
    }

    /// Spotify's answer header: the attempt's span ends with its status, protocol and
    /// `Retry-After`.
    pub(super) fn span_answer(
        &mut self,
        status: u16,
        protocol: &'static str,
        retry_after: Option<&str>,
    ) {
        let Some(call) = self.upstream_span.take() else {
            return;
        };
        call.set([KeyValue::new("network.protocol.name", protocol)]);
        if let Some(after) = retry_after {
            call.set([KeyValue::new(
                "http.response.header.retry-after",
                after.to_owned(),
            )]);
        }
        call.end_http(status, None);
    }

    /// The attempt got no answer (a connection failure, a timeout, a retry decided before
    /// one came): its span ends as an error of that kind.
    pub(super) fn span_attempt_failed(&mut self, why: &'static str) {
        if let Some(call) = self.upstream_span.take() {
            call.end_http(0, Some(why));
        }
    }
}
