//! Delivering events to `[[webhooks]]`: per receiver a bounded queue, one task that delivers
//! in order with its own HTTP client, and retries with exponential backoff and jitter for at
//! most `give_up_after`.
//!
//! The request path only ever calls [`Webhooks::enqueue`], a `try_send`: when a queue is full
//! the event is dropped and counted, so a receiver that is slow or down never slows a sign-in.
//! Each POST is signed (`signature.rs`), and carries the event id, so a receiver can drop a
//! duplicate (a delivery whose 2xx was lost is sent again).
//!
//! Metrics, labelled by the webhook's `name` (never its URL):
//! `webhook_deliveries_total{webhook,result}` (`delivered`, `retried` per extra attempt,
//! `dropped` when the queue was full or the retries ran out), `webhook_failing{webhook}` (1
//! while the latest attempt failed) and `webhook_queue_depth{webhook}`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntGauge};
use serde_json::Value;
use tokio::sync::mpsc;

use super::signature;
use crate::config::WebhookConfig;
use crate::net::tls_roots::{self, Trust};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::traces::{self, ChildSpan, SpanRef};
use opentelemetry::trace::SpanKind;
use opentelemetry::KeyValue;

/// The wait before the first retry; it doubles per failed attempt, with jitter.
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// The longest wait between two attempts.
const MAX_RETRY: Duration = Duration::from_secs(60);
const USER_AGENT: &str = concat!("spotify-gateway/", env!("CARGO_PKG_VERSION"));

/// One event waiting for delivery: its id and its JSON body, serialized once.
struct Delivery {
    id: String,
    event_type: &'static str,
    body: Arc<Vec<u8>>,
    /// When it was queued: `give_up_after` counts from here, so events that waited behind a
    /// failing one through a long outage are given up too, not retried one outage each.
    queued_at: Instant,
    /// The span of the traced request whose event this is: each attempt's span is its child.
    parent: Option<SpanRef>,
}

/// The request path's side of one webhook.
struct Queue {
    config: WebhookConfig,
    tx: mpsc::Sender<Delivery>,
    counters: Arc<Counters>,
}

struct Counters {
    delivered: IntCounter,
    retried: IntCounter,
    dropped: IntCounter,
    failing: IntGauge,
    depth: IntGauge,
}

impl Counters {
    fn of(metrics: &Metrics, name: &str) -> Counters {
        let result = |r: &str| metrics.webhook_deliveries.with_label_values(&[name, r]);
        let c = Counters {
            delivered: result("delivered"),
            retried: result("retried"),
            dropped: result("dropped"),
            failing: metrics.webhook_failing.with_label_values(&[name]),
            depth: metrics.webhook_queue_depth.with_label_values(&[name]),
        };
        c.failing.set(0);
        c.depth.set(0);
        c
    }
}

/// Every configured webhook.
pub struct Webhooks {
    queues: Vec<Queue>,
}

impl Webhooks {
    /// No webhooks.
    pub fn none() -> Webhooks {
        Webhooks { queues: Vec::new() }
    }

    /// Starts a delivery task per webhook on the I/O runtime (`runtime::io_home`).
    pub fn start(configs: &[WebhookConfig], metrics: &Metrics) -> std::io::Result<Webhooks> {
        if configs.is_empty() {
            return Ok(Webhooks::none());
        }
        let home = crate::runtime::io_home()?;
        let mut queues = Vec::with_capacity(configs.len());
        for config in configs {
            let client = client(config)?;
            let (tx, rx) = mpsc::channel(config.queue_size);
            let counters = Arc::new(Counters::of(metrics, &config.name));
            let worker = Worker {
                config: config.clone(),
                client,
                counters: Arc::clone(&counters),
            };
            home.spawn(worker.run(rx));
            tracing::info!(
                webhook = %config.name,
                "delivering audit events to this webhook"
            );
            queues.push(Queue {
                config: config.clone(),
                tx,
                counters,
            });
        }
        Ok(Webhooks { queues })
    }

    /// Events waiting in all queues (not counting those being delivered).
    pub fn queued(&self) -> usize {
        self.queues.iter().map(|q| depth(&q.tx) as usize).sum()
    }

    /// Queues `body` (an event of `event_type`) for every webhook that wants it. Never waits:
    /// a full queue drops the event and counts it.
    pub(super) fn enqueue(&self, event_type: &'static str, body: &Value) {
        let wanted: Vec<&Queue> = self
            .queues
            .iter()
            .filter(|q| q.config.wants(event_type))
            .collect();
        if wanted.is_empty() {
            return;
        }
        let id = body["id"].as_str().unwrap_or_default().to_string();
        let bytes = Arc::new(body.to_string().into_bytes());
        let queued_at = Instant::now();
        let parent = traces::current_parent();
        for queue in wanted {
            let delivery = Delivery {
                id: id.clone(),
                event_type,
                body: Arc::clone(&bytes),
                queued_at,
                parent: parent.clone(),
            };
            match queue.tx.try_send(delivery) {
                Ok(()) => queue.counters.depth.set(depth(&queue.tx)),
                Err(_) => {
                    queue.counters.dropped.inc();
                    tracing::warn!(
                        webhook = %queue.config.name,
                        event_type,
                        "webhook queue full (queue_size {}): event dropped; the receiver is \
                         slow or down",
                        queue.config.queue_size
                    );
                }
            }
        }
    }
}

/// Events waiting in a queue (the one being delivered is not counted).
fn depth<T>(tx: &mpsc::Sender<T>) -> i64 {
    (tx.max_capacity() - tx.capacity()) as i64
}

/// A webhook's own client: its timeout, the system's roots plus its `ca_file`, no redirects
/// (a redirect would send the signed event somewhere the operator did not name), and no proxy
/// from the environment (as the clients to Spotify).
fn client(config: &WebhookConfig) -> std::io::Result<reqwest::Client> {
    let purpose = format!("webhook {}", config.name);
    let trust = Trust::load_for(config.ca_file.as_ref(), &purpose, "webhooks.ca_file")?;
    reqwest::Client::builder()
        .use_preconfigured_tls(trust.client_config()?)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(config.timeout)
        .connect_timeout(config.timeout)
        .user_agent(USER_AGENT)
        .build()
        .map_err(|e| std::io::Error::other(format!("webhook {}: {e}", config.name)))
}

/// The delivery task of one webhook.
struct Worker {
    config: WebhookConfig,
    client: reqwest::Client,
    counters: Arc<Counters>,
}

impl Worker {
    async fn run(self, mut rx: mpsc::Receiver<Delivery>) {
        while let Some(delivery) = rx.recv().await {
            self.counters.depth.set(rx.len() as i64);
            self.deliver(&delivery).await;
        }
    }

    /// Attempts until a 2xx, or until the next attempt would start past `give_up_after`
    /// (counted from when the event was queued).
    async fn deliver(&self, delivery: &Delivery) {
        let started = delivery.queued_at;
        if started.elapsed() > self.config.give_up_after {
            self.counters.dropped.inc();
            tracing::warn!(
                webhook = %self.config.name,
                event_id = %delivery.id,
                event_type = delivery.event_type,
                "webhook delivery given up: the event waited in the queue past \
                 webhooks.give_up_after behind failing deliveries. Check that the receiver \
                 is up and answers 2xx"
            );
            return;
        }
        let mut attempt: u32 = 0;
        loop {
            let span = self.span(delivery, attempt);
            let result = self.attempt(delivery).await;
            if let Some(span) = span {
                match &result {
                    Ok(status) => span.end_http(status.as_u16(), None),
                    Err(_) => span.end_http(0, Some("unreachable")),
                }
            }
            let failure = match result {
                Ok(status) if status.is_success() => {
                    self.counters.delivered.inc();
                    self.counters.failing.set(0);
                    return;
                }
                Ok(status) => Failure::plain(format!("the receiver answered {status}")),
                Err(e) => Failure::of(&e.without_url()),
            };
            self.counters.failing.set(1);
            let wait = retry_delay(attempt);
            if started.elapsed() + wait > self.config.give_up_after {
                self.counters.dropped.inc();
                tracing::warn!(
                    webhook = %self.config.name,
                    event_id = %delivery.id,
                    event_type = delivery.event_type,
                    attempts = attempt + 1,
                    "webhook delivery given up after webhooks.give_up_after: {failure}. Check \
                     that the receiver is up and answers 2xx"
                );
                return;
            }
            if failure.operator_must_act {
                tracing::warn!(
                    webhook = %self.config.name,
                    event_id = %delivery.id,
                    retry_in_ms = wait.as_millis() as u64,
                    "webhook delivery failed, will retry: {failure}"
                );
            } else {
                tracing::info!(
                    webhook = %self.config.name,
                    event_id = %delivery.id,
                    retry_in_ms = wait.as_millis() as u64,
                    "webhook delivery failed, will retry: {failure}"
                );
            }
            tokio::time::sleep(wait).await;
            self.counters.retried.inc();
            attempt = attempt.saturating_add(1);
        }
    }

    /// An attempt's client span, a child of the request the event came from (none for an
    /// event no traced request made): the receiver's host, never its URL's path or query.
    fn span(&self, delivery: &Delivery, attempt: u32) -> Option<ChildSpan> {
        let span = traces::child_of(
            delivery.parent.as_ref(),
            "webhook delivery",
            SpanKind::Client,
        )?;
        span.set(traces::server_of(&self.config.url));
        span.set([
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("gateway.webhook", self.config.name.clone()),
            KeyValue::new("gateway.event.type", delivery.event_type),
            KeyValue::new("http.request.resend_count", i64::from(attempt)),
        ]);
        Some(span)
    }

    async fn attempt(&self, delivery: &Delivery) -> reqwest::Result<reqwest::StatusCode> {
        let now = crate::clock::now_ms() / 1000;
        let signed =
            signature::header_value(self.config.secret.expose().as_bytes(), now, &delivery.body);
        let resp = self
            .client
            .post(self.config.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(signature::HEADER, signed)
            .header("Spotify-Gateway-Event-Id", &delivery.id)
            .header("Spotify-Gateway-Event-Type", delivery.event_type)
            .body(delivery.body.as_ref().clone())
            .send()
            .await?;
        Ok(resp.status())
    }
}

/// Why an attempt failed, as the log line says it.
struct Failure {
    text: String,
    /// A certificate the webhook's client does not accept: retrying alone will not help.
    operator_must_act: bool,
}

impl Failure {
    fn plain(text: String) -> Failure {
        Failure {
            text,
            operator_must_act: false,
        }
    }

    /// A request that got no answer: a TLS failure named with its remedy (`tls_roots::classify`,
    /// as for Spotify, with this webhook's keys), else the error chain. The error carries no
    /// URL (`without_url`): a receiver's URL may hold a credential.
    fn of(e: &reqwest::Error) -> Failure {
        let chain = tls_roots::error_chain(e);
        match tls_roots::classify(&chain, false) {
            Some(reason) => Failure {
                text: format!(
                    "TLS to the receiver failed: {}; {}",
                    reason.cause(),
                    reason.remedy("this webhook's ca_file", "this webhook's url")
                ),
                operator_must_act: reason.is_certificate(),
            },
            None => Failure::plain(chain),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// The wait after failed attempt `attempt` (0-based): [`FIRST_RETRY`] doubling per attempt up
/// to [`MAX_RETRY`], then a random half of it taken off ("equal jitter"), so many gateways
/// retrying one receiver do not arrive together.
fn retry_delay(attempt: u32) -> Duration {
    let full = FIRST_RETRY
        .saturating_mul(1u32 << attempt.min(16))
        .min(MAX_RETRY);
    let half = full / 2;
    half + half.mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_delay_doubles_with_jitter_up_to_the_cap() {
        for attempt in 0..40 {
            let full = FIRST_RETRY
                .saturating_mul(1u32 << attempt.min(16))
                .min(MAX_RETRY);
            let d = retry_delay(attempt);
            assert!(d >= full / 2 && d <= full, "{attempt}: {d:?}");
        }
        assert!(retry_delay(30) <= MAX_RETRY);
    }
}
