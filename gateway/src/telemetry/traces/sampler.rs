//! Parent-based sampling at a ratio SIGHUP can change: a sampled parent is always kept, an
//! unsampled one never (the caller decided), and a trace started here is kept at
//! `tracing.sample_ratio`, by its trace id as every OpenTelemetry SDK decides it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use opentelemetry::trace::{
    Link, SamplingDecision, SamplingResult, SpanKind, TraceContextExt, TraceId,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{Sampler, ShouldSample};

/// The ratio of the moment, as `f64` bits.
#[derive(Clone, Debug)]
pub struct Ratio(Arc<AtomicU64>);

impl Ratio {
    pub fn new(ratio: f64) -> Ratio {
        Ratio(Arc::new(AtomicU64::new(ratio.to_bits())))
    }

    pub fn set(&self, ratio: f64) {
        self.0.store(ratio.to_bits(), Ordering::Relaxed);
    }

    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

impl ShouldSample for Ratio {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        // `Sampler::ParentBased` over a ratio read now, without its box per span.
        let parent = parent_context.filter(|cx| cx.has_active_span());
        if let Some(cx) = parent {
            let decision = if cx.span().span_context().is_sampled() {
                SamplingDecision::RecordAndSample
            } else {
                SamplingDecision::Drop
            };
            return SamplingResult {
                decision,
                attributes: Vec::new(),
                trace_state: cx.span().span_context().trace_state().clone(),
            };
        }
        Sampler::TraceIdRatioBased(self.get())
            .should_sample(None, trace_id, name, span_kind, attributes, links)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceState};

    fn decide(ratio: &Ratio, parent: Option<bool>) -> SamplingDecision {
        let cx = parent.map(|sampled| {
            let flags = if sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            };
            Context::new().with_remote_span_context(SpanContext::new(
                TraceId::from(7u128),
                SpanId::from(9u64),
                flags,
                true,
                TraceState::default(),
            ))
        });
        ratio
            .should_sample(
                cx.as_ref(),
                TraceId::from(u128::MAX / 3),
                "t",
                &SpanKind::Server,
                &[],
                &[],
            )
            .decision
    }

    #[test]
    fn a_parent_decides_and_the_ratio_decides_for_a_new_trace() {
        let ratio = Ratio::new(0.0);
        assert_eq!(
            decide(&ratio, Some(true)),
            SamplingDecision::RecordAndSample
        );
        assert_eq!(decide(&ratio, Some(false)), SamplingDecision::Drop);
        assert_eq!(decide(&ratio, None), SamplingDecision::Drop);
        // SIGHUP sets a new ratio; the next decision follows it.
        ratio.set(1.0);
        assert_eq!(decide(&ratio, None), SamplingDecision::RecordAndSample);
        assert_eq!(decide(&ratio, Some(false)), SamplingDecision::Drop);
    }
}
