//! The egress call's spans (`telemetry::traces`): the request's span takes the cache's word
//! (`spotify.cache`), and each attempt sent to Spotify is a client span of its own, whose id
//! the attempt carries on in `traceparent`. All of it is a no-op while tracing is off.

use opentelemetry::trace::SpanKind;
use opentelemetry::KeyValue;

use super::EgressCtx;

impl EgressCtx {
    /// The cache's part in this call: hit, coalesced, miss, revalidated.
    pub(super) fn span_cache(&self, status: &'static str) {
        if let Some(span) = &self.req.span {
            span.set([KeyValue::new("spotify.cache", status)]);
        }
    }

    /// An attempt leaves for Spotify: its client span starts, and names itself upstream.
    pub(super) fn span_attempt(&mut self) {
        self.span_attempt_failed("retried");
        let Some(span) = &self.req.span else { return };
        let call = span.child("spotify call", SpanKind::Client);
        call.set([
            KeyValue::new("spotify.endpoint", self.req.route),
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
