//! The way spans leave: a bounded queue the request path only `try_send`s into (full: the span
//! is dropped and counted), and one task on the I/O runtime that sends them in batches to the
//! OTLP exporter. No request waits for a collector, slow or dead; a collector that fails is
//! warned about at most once a minute, not once a batch; at the exit (`Traces::flush`) what is
//! queued is sent, within a bound.

use std::sync::Arc;
use std::time::{Duration, Instant};

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
/// At most one warning about failed exports in this long (the count says the rest).
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The queue's sizes and delays: ours, or the standard `OTEL_BSP_*` variables' (the batch span
/// processor's, which every OpenTelemetry SDK reads) when set to a number.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    pub queue: usize,
    pub batch: usize,
    pub delay: Duration,
}

impl Settings {
    pub fn from_env() -> Settings {
        Settings::from(|name| std::env::var(name).ok())
    }

    fn from(var: impl Fn(&str) -> Option<String>) -> Settings {
        let number = |name: &str| {
            var(name)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|n| *n > 0)
        };
        let queue = number("OTEL_BSP_MAX_QUEUE_SIZE").map_or(QUEUE_SPANS, |n| n as usize);
        let batch = number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE").map_or(BATCH_SPANS, |n| n as usize);
        Settings {
            queue,
            // The spec: a batch is never larger than the queue.
            batch: batch.min(queue),
            delay: number("OTEL_BSP_SCHEDULE_DELAY").map_or(BATCH_DELAY, Duration::from_millis),
        }
    }
}

/// What the sending task takes: spans, or a request to send everything queued now.
enum Message {
    Span(Box<SpanData>),
    /// Send what is queued, then say so.
    Flush(std::sync::mpsc::SyncSender<()>),
}

/// The SDK's span processor: ended, sampled spans into the queue.
#[derive(Clone, Debug)]
pub struct Queue {
    tx: mpsc::Sender<Message>,
    /// A flush asks on a line of its own, so a full queue cannot refuse it.
    flush: mpsc::Sender<Message>,
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

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Message")
    }
}

impl Queue {
    /// The queue, and its sending task spawned on `home`.
    pub fn start<E: SpanExporter + 'static>(
        exporter: E,
        settings: Settings,
        home: &tokio::runtime::Handle,
        metrics: Arc<Metrics>,
    ) -> Queue {
        let (tx, rx) = mpsc::channel(settings.queue);
        let (flush, flush_rx) = mpsc::channel(1);
        let sender = Sender {
            exporter,
            settings,
            metrics: MetricsRef(metrics.clone()),
            warned: None,
            failed_since_warned: 0,
        };
        home.spawn(sender.run(rx, flush_rx));
        Queue {
            tx,
            flush,
            metrics: MetricsRef(metrics),
        }
    }

    /// Sends what is queued now and waits for it, at most `within` (the exit: a collector
    /// that hangs does not hold the process).
    pub fn flush(&self, within: Duration) -> bool {
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        if self.flush.try_send(Message::Flush(done)).is_err() {
            return false;
        }
        wait.recv_timeout(within).is_ok()
    }
}

impl SpanProcessor for Queue {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.tx.try_send(Message::Span(Box::new(span))).is_err() {
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

/// The sending task's state.
struct Sender<E> {
    exporter: E,
    settings: Settings,
    metrics: MetricsRef,
    /// When the last warning about a failed export was logged.
    warned: Option<Instant>,
    /// Batches that failed since then, unsaid.
    failed_since_warned: u64,
}

impl<E: SpanExporter> Sender<E> {
    /// Takes a batch (up to `batch` spans, or what came within `delay` of its first span)
    /// and exports it; a failed export is counted, its spans are not tried again (a collector
    /// that is down would otherwise hold the queue full of old spans).
    async fn run(mut self, mut rx: mpsc::Receiver<Message>, mut flush: mpsc::Receiver<Message>) {
        let mut batch: Vec<SpanData> = Vec::with_capacity(self.settings.batch);
        loop {
            let first = tokio::select! {
                m = rx.recv() => m,
                m = flush.recv() => m,
            };
            let Some(first) = first else { return };
            let mut flushed = self.take(first, &mut batch);
            let deadline = tokio::time::Instant::now() + self.settings.delay;
            while flushed.is_none() && batch.len() < self.settings.batch {
                let next = tokio::select! {
                    m = rx.recv() => m,
                    m = flush.recv() => m,
                    _ = tokio::time::sleep_until(deadline) => None,
                };
                match next {
                    Some(m) => flushed = self.take(m, &mut batch),
                    None => break,
                }
            }
            self.export(&mut batch).await;
            if let Some(done) = flushed {
                // Everything queued before the flush was asked for, in batches.
                while let Ok(m) = rx.try_recv() {
                    if let Some(other) = self.take(m, &mut batch) {
                        let _ = other.send(());
                    }
                    if batch.len() >= self.settings.batch {
                        self.export(&mut batch).await;
                    }
                }
                self.export(&mut batch).await;
                let _ = done.send(());
            }
        }
    }

    /// A span into the batch; a flush request handed back.
    fn take(
        &self,
        message: Message,
        batch: &mut Vec<SpanData>,
    ) -> Option<std::sync::mpsc::SyncSender<()>> {
        match message {
            Message::Span(span) => {
                batch.push(*span);
                None
            }
            Message::Flush(done) => Some(done),
        }
    }

    async fn export(&mut self, batch: &mut Vec<SpanData>) {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        let result = match self.exporter.export(std::mem::take(batch)).await {
            Ok(()) => "exported",
            Err(e) => {
                self.failed(&e, n);
                "failed"
            }
        };
        self.metrics
            .0
            .trace_spans
            .with_label_values(&[result])
            .inc_by(n);
    }

    /// A failed export: warned about at most once per `WARN_EVERY` (a dead collector would
    /// otherwise log a line per batch), with the number of failures since the last warning.
    fn failed(&mut self, e: &impl std::fmt::Display, spans: u64) {
        self.failed_since_warned += 1;
        if self.warned.is_some_and(|at| at.elapsed() < WARN_EVERY) {
            return;
        }
        tracing::warn!(
            error = %e,
            spans,
            failed_exports = self.failed_since_warned,
            "the OTLP collector did not take spans (this warning repeats at most once a \
             minute; spotify_gateway_trace_spans_total{{result=\"failed\"}} counts them all)"
        );
        self.warned = Some(Instant::now());
        self.failed_since_warned = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bsp_variables_set_the_queue() {
        let none = Settings::from(|_| None);
        assert_eq!(none.queue, QUEUE_SPANS);
        assert_eq!(none.batch, BATCH_SPANS);
        assert_eq!(none.delay, BATCH_DELAY);
        let set = Settings::from(|name| match name {
            "OTEL_BSP_MAX_QUEUE_SIZE" => Some("8".into()),
            "OTEL_BSP_SCHEDULE_DELAY" => Some("250".into()),
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE" => Some("junk".into()),
            _ => None,
        });
        assert_eq!(set.queue, 8);
        assert_eq!(set.batch, 8, "never larger than the queue");
        assert_eq!(set.delay, Duration::from_millis(250));
    }
}
