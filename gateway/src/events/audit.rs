//! The audit log: each event as one JSON object on one line of the gateway's log output
//! (stderr), whatever `server.log_format` is, and whatever `server.log_level` or `RUST_LOG`
//! say — audit lines are always on.
//!
//! An event is a `tracing` event at target [`AUDIT_TARGET`](super::AUDIT_TARGET) whose message
//! is the JSON object. The ordinary output layer skips that target (`telemetry/logging.rs`), and
//! [`AuditLayer`] writes the message as it is, so a log collector gets a line it can parse as
//! JSON without unwrapping a text or JSON log record around it.

use std::fmt::Write as _;
use std::io::Write as _;

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

use super::AUDIT_TARGET;

/// Writes an audit event (its JSON object) to the log.
pub(super) fn write(body: &Value) {
    tracing::info!(target: AUDIT_TARGET, "{body}");
}

/// The layer that prints audit events, one JSON object per line on stderr. Install it with a
/// filter that lets [`AUDIT_TARGET`](super::AUDIT_TARGET) through (`logging::init`).
pub struct AuditLayer;

impl<S: Subscriber> Layer<S> for AuditLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != AUDIT_TARGET {
            return;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        if message.0.is_empty() {
            return;
        }
        message.0.push('\n');
        // One write of the whole line, so lines from several threads never interleave.
        let _ = std::io::stderr().lock().write_all(message.0.as_bytes());
    }
}

struct Message(String);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `info!("{body}")` records the message as `fmt::Arguments`, whose Debug is its text.
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        }
    }
}
