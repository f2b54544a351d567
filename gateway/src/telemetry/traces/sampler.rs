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
