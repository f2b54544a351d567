//! Audit events: what happened to a sign-in or a session, as one JSON object, written to the
//! log target `audit` (`audit.rs`) and POSTed, signed, to each `[[webhooks]]` receiver
//! (`webhooks.rs`, `signature.rs`).
//!
//! The catalogue is stable (docs/events-and-webhooks.md): a type name never changes
//! meaning, fields are only ever added. No event holds a token, a code, a cookie, a session id
//! or a secret: an [`Event`] has no field that could carry one. The user is named by a keyed
//! hash unless `server.log_user_id` is on ([`UserHasher`]).
//!
//! Emitting never waits: the log line is written in place and each webhook gets the event
//! through a bounded queue (`try_send`), so a receiver that is slow or down never slows the
//! request that caused the event.

mod audit;
pub mod signature;
pub mod webhooks;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use hmac::Mac;
use serde_json::{json, Value};

pub use audit::AuditLayer;
pub use webhooks::Webhooks;

use crate::crypto::{HmacSha256, Keyring};
use crate::telemetry::metrics::Metrics;

/// The log target of audit lines; always on, whatever `server.log_level` says.
pub const AUDIT_TARGET: &str = "audit";

/// Why a session ended without the user asking (`session.ended`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// Spotify refused the refresh token (`invalid_grant`): revoked, or past its six months.
    InvalidGrant,
    /// The session reached its `reauth_by` deadline (`session.reauth_after` after its login).
    Deadline,
    /// The session reached its `session.lifetime` before its deadline.
    Lifetime,
}

/// What happened: the event's `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A login callback made a session.
    LoginSucceeded,
    /// The user declined at Spotify's consent page.
    LoginDenied,
    /// `[access]` refused the user at the callback.
    LoginNotAllowed,
    /// Development mode: the user is not registered in the app's Spotify dashboard.
    LoginNotRegistered,
    /// The user signed out (`/auth/logout`).
    SignedOut,
    /// The user disconnected (`/auth/disconnect`): every session of theirs is deleted.
    Disconnected,
    /// A session ended by itself: Spotify's `invalid_grant`, its deadline, or its lifetime.
    Ended(EndReason),
    /// An operator revoked the user (`DELETE /admin/v1/users/{id}`).
    Revoked,
    /// `/auth/playback-token` gave the user's page an access token (`[playback]`).
    TokenIssued,
}

impl Kind {
    /// Every kind, for tests and the catalogue.
    pub const ALL: [Kind; 11] = [
        Kind::LoginSucceeded,
        Kind::LoginDenied,
        Kind::LoginNotAllowed,
        Kind::LoginNotRegistered,
        Kind::SignedOut,
        Kind::Disconnected,
        Kind::Ended(EndReason::InvalidGrant),
        Kind::Ended(EndReason::Deadline),
        Kind::Ended(EndReason::Lifetime),
        Kind::Revoked,
        Kind::TokenIssued,
    ];

    /// The `type` field; also the label of `audit_events_total` and the names
    /// `webhooks.events` filters on (`config::webhooks::EVENT_TYPES`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::LoginSucceeded => "login.succeeded",
            Kind::LoginDenied => "login.denied",
            Kind::LoginNotAllowed => "login.not_allowed",
            Kind::LoginNotRegistered => "login.not_registered",
            Kind::SignedOut => "session.signed_out",
            Kind::Disconnected => "session.disconnected",
            Kind::Ended(_) => "session.ended",
            Kind::Revoked => "user.revoked",
            Kind::TokenIssued => "token.issued",
        }
    }

    /// The `reason` of `sessions_ended_total{reason}` (and of the event, for `session.ended`);
    /// `None` for events that end no session.
    pub fn end_reason(self) -> Option<&'static str> {
        match self {
            Kind::SignedOut => Some("signed_out"),
            Kind::Disconnected => Some("disconnected"),
            Kind::Ended(EndReason::InvalidGrant) => Some("invalid_grant"),
            Kind::Ended(EndReason::Deadline) => Some("deadline"),
            Kind::Ended(EndReason::Lifetime) => Some("lifetime"),
            Kind::Revoked => Some("revoked"),
            _ => None,
        }
    }
}

/// One event as the emit site knows it. Only identifiers and counts: nothing secret fits.
#[derive(Clone, Debug)]
pub struct Event {
    pub kind: Kind,
    /// The Spotify user id, when known (a declined login has none).
    pub user_id: Option<String>,
    /// Spotify's `account_id`, when known.
    pub account_id: Option<String>,
    /// The request that caused it (`X-Request-Id`); `None` when a background task did.
    pub request_id: Option<String>,
    /// The W3C trace id of that request (the access line's `trace_id`); `None` as above.
    pub trace_id: Option<String>,
    /// Sessions ended (disconnect, revocation).
    pub sessions_ended: Option<usize>,
}

impl Event {
    pub fn new(kind: Kind) -> Event {
        Event {
            kind,
            user_id: None,
            account_id: None,
            request_id: None,
            trace_id: None,
            sessions_ended: None,
        }
    }

    pub fn user(mut self, user_id: impl Into<String>, account_id: Option<String>) -> Event {
        self.user_id = Some(user_id.into());
        self.account_id = account_id;
        self
    }

    pub fn request(mut self, request_id: &str) -> Event {
        if !request_id.is_empty() {
            self.request_id = Some(request_id.to_string());
        }
        self
    }

    pub fn trace(mut self, trace_id: &str) -> Event {
        if !trace_id.is_empty() {
            self.trace_id = Some(trace_id.to_string());
        }
        self
    }

    pub fn sessions_ended(mut self, n: usize) -> Event {
        self.sessions_ended = Some(n);
        self
    }
}

/// Names users in events without their Spotify id: `HMAC-SHA256(K, id)`, hex, the first 16
/// bytes, where `K` is derived from `session.secret` with its own label
/// ([`Keyring::audit_key`]). Stable across restarts and across replicas sharing the secret, so
/// one user's events can be followed; it changes when `session.secret` is rotated.
struct UserHasher {
    mac: HmacSha256,
}

impl UserHasher {
    fn new(keys: &Keyring) -> UserHasher {
        UserHasher {
            mac: <HmacSha256 as Mac>::new_from_slice(keys.audit_key())
                .expect("HMAC takes any key length"),
        }
    }

    fn hash(&self, id: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(id.as_bytes());
        let digest = mac.finalize().into_bytes();
        digest[..16].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Where events go: the audit log, the metrics and every webhook.
pub struct Events {
    /// The app whose events these are (`[[apps]]`; `default` for a single-app gateway).
    app: String,
    shared: Arc<Shared>,
}

/// What the events of every app share.
/// Every series of `app` exists from the start (at 0), so a rate over it is never absent.
fn register_series(metrics: &Metrics, app: &str) {
    for kind in Kind::ALL {
        metrics.audit_events.with_label_values(&[app, kind.name()]);
        if let Some(reason) = kind.end_reason() {
            metrics.sessions_ended.with_label_values(&[app, reason]);
        }
    }
}

struct Shared {
    /// `server.log_user_id` (live on SIGHUP): plain user ids instead of hashes.
    log_user_id: AtomicBool,
    hasher: RwLock<UserHasher>,
    metrics: Arc<Metrics>,
    webhooks: Webhooks,
}

impl Events {
    pub fn new(
        keys: &Keyring,
        log_user_id: bool,
        metrics: Arc<Metrics>,
        webhooks: Webhooks,
    ) -> Events {
        // No series yet: each app's exist once its events are made (`for_app`), so the `app`
        // label takes the configured names only.
        Events {
            app: crate::config::DEFAULT_APP.to_string(),
            shared: Arc::new(Shared {
                log_user_id: AtomicBool::new(log_user_id),
                hasher: RwLock::new(UserHasher::new(keys)),
                metrics,
                webhooks,
            }),
        }
    }

    /// The app these events name.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// The events of the app `app`: the same log, counters and webhooks, each event naming
    /// the app.
    pub fn for_app(&self, app: &str) -> Events {
        register_series(&self.shared.metrics, app);
        Events {
            app: app.to_string(),
            shared: Arc::clone(&self.shared),
        }
    }

    /// Events that go to the log and the metrics only (unit tests, benches).
    pub fn without_webhooks(keys: &Keyring, metrics: Arc<Metrics>) -> Events {
        Events::new(keys, false, metrics, Webhooks::none())
    }

    /// A reload: `server.log_user_id` and, after a `session.secret` rotation, the hash key.
    pub fn reconfigure(&self, log_user_id: bool, keys: Option<&Keyring>) {
        self.shared
            .log_user_id
            .store(log_user_id, Ordering::Relaxed);
        if let Some(keys) = keys {
            *self
                .shared
                .hasher
                .write()
                .unwrap_or_else(|p| p.into_inner()) = UserHasher::new(keys);
        }
    }

    /// A user as the audit events name them: the plain id with `server.log_user_id`, else
    /// its keyed hash (spans carry the same, `telemetry::traces`); and whether it is plain.
    pub fn user_name(&self, user_id: &str) -> (String, bool) {
        if self.shared.log_user_id.load(Ordering::Relaxed) {
            return (user_id.to_owned(), true);
        }
        let hasher = self.shared.hasher.read().unwrap_or_else(|p| p.into_inner());
        (hasher.hash(user_id), false)
    }

    pub fn webhooks(&self) -> &Webhooks {
        &self.shared.webhooks
    }

    /// Records `event`: one audit line, the counters, and a copy queued for each webhook
    /// that wants it. Never waits.
    pub fn emit(&self, event: Event) {
        let body = self.render(&event, &new_event_id(), crate::clock::now_ms());
        let kind = event.kind;
        self.shared
            .metrics
            .audit_events
            .with_label_values(&[&self.app, kind.name()])
            .inc();
        if let Some(reason) = kind.end_reason() {
            let n = match kind {
                Kind::Disconnected | Kind::Revoked => event.sessions_ended.unwrap_or(0),
                _ => 1,
            };
            self.shared
                .metrics
                .sessions_ended
                .with_label_values(&[&self.app, reason])
                .inc_by(n as u64);
        }
        audit::write(&body);
        self.shared.webhooks.enqueue(kind.name(), &body);
    }

    /// The event's JSON object.
    fn render(&self, event: &Event, id: &str, at_ms: u64) -> Value {
        let plain = self.shared.log_user_id.load(Ordering::Relaxed);
        let hasher = self.shared.hasher.read().unwrap_or_else(|p| p.into_inner());
        let name = |id: &Option<String>| match id {
            Some(id) if plain => Value::String(id.clone()),
            Some(id) => Value::String(hasher.hash(id)),
            None => Value::Null,
        };
        let mut body = json!({
            "id": id,
            "type": event.kind.name(),
            "time": rfc3339_millis(at_ms),
            "request_id": event.request_id,
            "trace_id": event.trace_id,
            "user": name(&event.user_id),
            "user_hashed": !plain && event.user_id.is_some(),
            "account_id": name(&event.account_id),
            "app": self.app,
        });
        if let Kind::Ended(_) = event.kind {
            body["reason"] = json!(event.kind.end_reason());
        }
        if let Some(n) = event.sessions_ended {
            body["sessions_ended"] = json!(n);
        }
        body
    }
}

/// `evt_` and 24 hex characters (96 random bits): unique enough to deduplicate deliveries.
fn new_event_id() -> String {
    let bytes: [u8; 12] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("evt_{hex}")
}

fn rfc3339_millis(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::tests::ring;

    fn events(log_user_id: bool) -> Events {
        let keys = ring("a-secret-that-is-long-enough-for-tests-000");
        let e = Events::without_webhooks(&keys, Arc::new(Metrics::new()));
        e.reconfigure(log_user_id, None);
        e
    }

    #[test]
    fn every_kind_is_in_the_config_catalogue() {
        for kind in Kind::ALL {
            assert!(
                crate::config::EVENT_TYPES.contains(&kind.name()),
                "{}",
                kind.name()
            );
        }
        assert_eq!(crate::config::EVENT_TYPES.len(), 9);
    }

    #[test]
    fn users_are_hashed_unless_log_user_id_and_the_hash_is_stable_per_secret() {
        let event = Event::new(Kind::Ended(EndReason::InvalidGrant))
            .user("alice", Some("acc-1".into()))
            .request("req-1");
        let hashed = events(false).render(&event, "evt_1", 0);
        let user = hashed["user"].as_str().expect("user");
        assert_eq!(user.len(), 32);
        assert!(user.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(hashed["account_id"], "acc-1");
        assert_eq!(hashed["user_hashed"], true);
        assert_eq!(hashed["app"], "default");
        let radio = events(false).for_app("radio").render(&event, "evt_1", 0);
        assert_eq!(radio["app"], "radio");
        assert_eq!(
            radio["user"], hashed["user"],
            "one user, one hash in every app"
        );
        assert_eq!(hashed["reason"], "invalid_grant");
        assert_eq!(hashed["request_id"], "req-1");
        assert_eq!(hashed["time"], "1970-01-01T00:00:00.000Z");
        // Another gateway with the same secret names the same user the same way.
        assert_eq!(events(false).render(&event, "evt_2", 0)["user"], user);
        let other = Events::without_webhooks(
            &ring("another-deployment-secret-0123456789abcdef"),
            Arc::new(Metrics::new()),
        );
        assert_ne!(other.render(&event, "evt_3", 0)["user"], user);
        let plain = events(true).render(&event, "evt_4", 0);
        assert_eq!(plain["user"], "alice");
        assert_eq!(plain["account_id"], "acc-1");
        assert_eq!(plain["user_hashed"], false);
    }

    #[test]
    fn an_event_without_a_user_says_so() {
        let body = events(false).render(&Event::new(Kind::LoginDenied), "evt_1", 0);
        assert_eq!(body["user"], Value::Null);
        assert_eq!(body["user_hashed"], false);
        assert_eq!(body["request_id"], Value::Null);
        assert!(body.get("reason").is_none());
    }

    #[test]
    fn event_ids_are_distinct() {
        let a = new_event_id();
        assert!(a.starts_with("evt_") && a.len() == 28, "{a}");
        assert_ne!(a, new_event_id());
    }
}
