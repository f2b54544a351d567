//! The way spans leave: a bounded queue the request path only `try_send`s into (full: the span
//! is dropped and counted), and one task on the I/O runtime that sends them in batches to the
//! OTLP exporter. No request waits for a collector, slow or dead.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use tokio::sync::mpsc;

use crate::telemetry::metrics::Metrics;

/// Spans waiting to leave; past it new ones are dropped. At ~1 KiB a span, a few MiB at most.
pub const QUEUE_SPANS: usize = 4096;
/// Spans sent in one export.
const BATCH_SPANS: usize = 512;
/// How long a span waits for its batch to fill before the batch goes anyway.
const BATCH_DELAY: Duration = Duration::from_secs(2);

/// The SDK's span processor: ended, sampled spans into the queue.
#[derive(Debug)]
pub struct Queue {
    tx: mpsc::Sender<SpanData>,
    metrics: MetricsRef,
}

/// `Metrics` for `Debug` (the SDK asks processors to be `Debug`).
#[derive(Clone)]
struct MetricsRef(Arc<Metrics>);

impl std::fmt::Debug for MetricsRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Queue {
    /// The queue, and its sending task spawned on `home`.
    pub fn start<E: SpanExporter + 'static>(
        exporter: E,
        home: &tokio::runtime::Handle,
        metrics: Arc<Metrics>,
    ) -> Queue {
        let (tx, rx) = mpsc::channel(QUEUE_SPANS);
        home.spawn(send_batches(exporter, rx, MetricsRef(metrics.clone())));
        Queue {
            tx,
            metrics: MetricsRef(metrics),
        }
    }
}

impl SpanProcessor for Queue {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.tx.try_send(span).is_err() {
            self.metrics
                .0
                .trace_spans
                .with_label_values(&["dropped"])
                .inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// Takes a batch (up to `BATCH_SPANS`, or what came within `BATCH_DELAY` of its first span)
/// and exports it; a failed export is counted, its spans are not tried again (a collector
/// that is down would otherwise hold the queue full of old spans).
async fn send_batches<E: SpanExporter>(
    exporter: E,
    mut rx: mpsc::Receiver<SpanData>,
    metrics: MetricsRef,
) {
    let mut batch = Vec::with_capacity(BATCH_SPANS);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        let deadline = tokio::time::Instant::now() + BATCH_DELAY;
        while batch.len() < BATCH_SPANS {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(span)) => batch.push(span),
                Ok(None) | Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        let result = match exporter.export(std::mem::take(&mut batch)).await {
            Ok(()) => "exported",
            Err(e) => {
                tracing::warn!(error = %e, spans = n, "the OTLP collector did not take spans");
                "failed"
            }
        };
        metrics.0.trace_spans.with_label_values(&[result]).inc_by(n);
    }
}
