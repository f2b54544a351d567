//! The open streams of sessions: every request of a signed-in session that the public listener
//! is proxying to the app right now (a WebSocket, an event stream, a long poll, any response
//! still under way), by session, so that a session's end closes them all at once.
//!
//! A check at the handshake alone (oauth2-proxy, Pomerium and nginx `auth_request` do that)
//! lets a socket opened before a logout carry frames for as long as it stays open. Here each
//! stream is closed when its session ends: on this replica (`Sessions::end`: logout, disconnect,
//! an operator's revocation, `invalid_grant`, a new login replacing it), on another one (its
//! published invalidation, `registry`), or by itself at its deadline or lifetime's end (this
//! registry's timer). A request joins through `Sessions::join_streams`, which refuses a session
//! that ended while the request looked it up. How a stream is closed is the listener's business
//! (`listeners::Cut`): the registry holds only a way to close each one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::record::LiveSession;
use crate::clock::now_ms;
use crate::secret::SessionKey;
use crate::store::{Namespace, Store};
use crate::telemetry::metrics::Metrics;

/// The timer looks again at least this often (a clock step, a registry dropped in tests).
const TIMER_IDLE: Duration = Duration::from_secs(60);

/// Why a session's streams were closed: `streams_closed_total{reason}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// `/auth/logout`.
    SignedOut,
    /// A new login in the same browser replaced the session.
    Replaced,
    /// `/auth/disconnect`: every session of the user.
    Disconnected,
    /// An operator's `DELETE /admin/v1/users/{id}`.
    Revoked,
    /// Spotify refused the refresh token.
    InvalidGrant,
    /// The session reached its re-consent deadline (`session.reauth_after`).
    Deadline,
    /// The session reached its `session.lifetime`.
    Lifetime,
    /// Another replica ended the session (its published invalidation, or the record found gone
    /// from the shared store after the subscription was lost).
    OtherReplica,
}

impl CloseReason {
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::SignedOut => "signed_out",
            CloseReason::Replaced => "replaced",
            CloseReason::Disconnected => "disconnected",
            CloseReason::Revoked => "revoked",
            CloseReason::InvalidGrant => "invalid_grant",
            CloseReason::Deadline => "deadline",
            CloseReason::Lifetime => "lifetime",
            CloseReason::OtherReplica => "other_replica",
        }
    }
}

/// The open streams, by session store key.
pub struct Streams {
    open: Mutex<Open>,
    next_id: AtomicU64,
    /// Wakes the timer when a stream ends sooner than any before it.
    wake: Arc<tokio::sync::Notify>,
    /// `streams_open{app}` and `streams_closed_total{app,reason}` of this registry's app.
    open_gauge: prometheus::IntGauge,
    closed: prometheus::IntCounterVec,
    app: String,
}

#[derive(Default)]
struct Open {
    by_session: HashMap<SessionKey, HashMap<u64, Stream>>,
    /// The soonest end the timer is waiting for (`u64::MAX`: none).
    earliest_ms: u64,
}

struct Stream {
    close: Box<dyn FnOnce() + Send>,
    /// When the session ends by itself (unix ms), and why then.
    ends_at_ms: u64,
    ends_by: CloseReason,
}

/// One open stream, registered until this is dropped (the request is over) or the stream is
/// closed, whichever comes first.
pub struct StreamGuard {
    streams: Arc<Streams>,
    key: SessionKey,
    id: u64,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.streams.forget(&self.key, self.id);
    }
}

impl Streams {
    /// An empty registry, its timer running on the I/O runtime.
    pub fn new(metrics: &Metrics, app: &str) -> Arc<Streams> {
        let streams = Arc::new(Streams {
            open: Mutex::new(Open {
                by_session: HashMap::new(),
                earliest_ms: u64::MAX,
            }),
            next_id: AtomicU64::new(0),
            wake: Arc::new(tokio::sync::Notify::new()),
            open_gauge: metrics.streams_open.with_label_values(&[app]),
            closed: metrics.streams_closed.clone(),
            app: app.to_string(),
        });
        match crate::runtime::io_home() {
            Ok(home) => {
                home.spawn(keep_time(Arc::downgrade(&streams)));
            }
            Err(e) => tracing::error!(
                error = %e,
                "cannot run the timer that closes streams at their session's end"
            ),
        }
        streams
    }

    /// Registers a stream of `session`; `close` ends it (called at most once, from any thread,
    /// and must not block).
    pub fn open(
        self: &Arc<Self>,
        session: &LiveSession,
        close: impl FnOnce() + Send + 'static,
    ) -> StreamGuard {
        let (ends_at_ms, ends_by) = session.with_record(|r| match r.reauth_by_ms {
            Some(by) if by <= r.expires_at_ms => (by, CloseReason::Deadline),
            _ => (r.expires_at_ms, CloseReason::Lifetime),
        });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let key = session.key.clone();
        let sooner = {
            let mut open = self.lock();
            open.by_session.entry(key.clone()).or_default().insert(
                id,
                Stream {
                    close: Box::new(close),
                    ends_at_ms,
                    ends_by,
                },
            );
            let sooner = ends_at_ms < open.earliest_ms;
            if sooner {
                open.earliest_ms = ends_at_ms;
            }
            sooner
        };
        self.open_gauge.inc();
        if sooner {
            self.wake.notify_one();
        }
        StreamGuard {
            streams: Arc::clone(self),
            key,
            id,
        }
    }

    /// Closes every stream of the session under `key`; returns how many.
    pub fn close(&self, key: &SessionKey, reason: CloseReason) -> usize {
        let streams = self.lock().by_session.remove(key);
        let closing: Vec<Stream> = streams
            .map(|s| s.into_values().collect())
            .unwrap_or_default();
        self.closed_now(closing.into_iter().map(|s| (s, reason)))
    }

    /// The sessions that have streams open (their store keys).
    pub fn sessions(&self) -> Vec<SessionKey> {
        self.lock().by_session.keys().cloned().collect()
    }

    /// How many streams are open.
    pub fn count(&self) -> usize {
        self.lock().by_session.values().map(HashMap::len).sum()
    }

    /// Closes the streams whose session has reached its end by now; returns the soonest end
    /// still ahead, which the timer waits for next.
    fn close_due(&self) -> Option<u64> {
        let now = now_ms();
        let mut due = Vec::new();
        let earliest = {
            let mut open = self.lock();
            open.by_session.retain(|_, streams| {
                let ids: Vec<u64> = streams
                    .iter()
                    .filter(|(_, s)| s.ends_at_ms <= now)
                    .map(|(id, _)| *id)
                    .collect();
                for id in ids {
                    if let Some(s) = streams.remove(&id) {
                        let reason = s.ends_by;
                        due.push((s, reason));
                    }
                }
                !streams.is_empty()
            });
            let earliest = open
                .by_session
                .values()
                .flat_map(HashMap::values)
                .map(|s| s.ends_at_ms)
                .min()
                .unwrap_or(u64::MAX);
            open.earliest_ms = earliest;
            earliest
        };
        self.closed_now(due.into_iter());
        (earliest != u64::MAX).then_some(earliest)
    }

    /// Closes streams already taken out of the registry, and counts them.
    fn closed_now(&self, closing: impl Iterator<Item = (Stream, CloseReason)>) -> usize {
        let mut counts: Vec<(CloseReason, usize)> = Vec::new();
        for (stream, reason) in closing {
            // Counted first: whoever sees the stream closed sees it counted.
            self.open_gauge.dec();
            self.closed
                .with_label_values(&[&self.app, reason.label()])
                .inc();
            (stream.close)();
            match counts.iter_mut().find(|(r, _)| *r == reason) {
                Some((_, n)) => *n += 1,
                None => counts.push((reason, 1)),
            }
        }
        for (reason, n) in &counts {
            tracing::info!(
                reason = reason.label(),
                streams = n,
                "closed the streams of an ended session"
            );
        }
        counts.iter().map(|(_, n)| n).sum()
    }

    /// A request is over: its stream leaves the registry (unless it was closed already).
    fn forget(&self, key: &SessionKey, id: u64) {
        let removed = {
            let mut open = self.lock();
            let Some(streams) = open.by_session.get_mut(key) else {
                return;
            };
            let removed = streams.remove(&id).is_some();
            if streams.is_empty() {
                open.by_session.remove(key);
            }
            removed
        };
        if removed {
            self.open_gauge.dec();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Closes the streams whose session record is gone from `store`; a store that does not answer
/// closes nothing.
pub(super) async fn close_streams_of_gone_sessions(store: &dyn Store, streams: &Streams) {
    for key in streams.sessions() {
        if let Ok(None) = store.get(Namespace::Session, key.expose()).await {
            streams.close(&key, CloseReason::OtherReplica);
        }
    }
}

/// Closes streams as their sessions reach their end, waking at the soonest end, or sooner when
/// a stream that ends sooner arrives. Stops once the registry is gone.
async fn keep_time(streams: Weak<Streams>) {
    loop {
        let Some(registry) = streams.upgrade() else {
            return;
        };
        let wait = match registry.close_due() {
            Some(at) => Duration::from_millis(at.saturating_sub(now_ms())).min(TIMER_IDLE),
            None => TIMER_IDLE,
        };
        let wake = Arc::clone(&registry.wake);
        drop(registry);
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::registry::tests::record;
    use std::sync::atomic::AtomicUsize;

    fn live(key: &str, edit: impl FnOnce(&mut crate::session::SessionRecord)) -> LiveSession {
        let mut r = record("alice");
        edit(&mut r);
        LiveSession::new(SessionKey::new(key), r)
    }

    fn closer(count: &Arc<AtomicUsize>) -> impl FnOnce() + Send + 'static {
        let count = Arc::clone(count);
        move || {
            count.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Closing a session closes its streams only, once each, counted by reason; a request that
    /// ends by itself leaves the registry; nothing is left behind either way.
    #[tokio::test]
    async fn a_session_closes_its_own_streams_once_and_leaves_nothing() {
        let metrics = Metrics::new();
        let streams = Streams::new(&metrics, "default");
        let closed = Arc::new(AtomicUsize::new(0));
        let alice = live("key-a", |_| {});
        let bob = live("key-b", |_| {});
        let a1 = streams.open(&alice, closer(&closed));
        let a2 = streams.open(&alice, closer(&closed));
        let b1 = streams.open(&bob, closer(&closed));
        let finished = streams.open(&alice, closer(&closed));
        assert_eq!(
            metrics.streams_open.with_label_values(&["default"]).get(),
            4
        );
        drop(finished);
        assert_eq!(
            metrics.streams_open.with_label_values(&["default"]).get(),
            3
        );

        assert_eq!(
            streams.close(&SessionKey::new("key-a"), CloseReason::SignedOut),
            2
        );
        assert_eq!(closed.load(Ordering::SeqCst), 2);
        assert_eq!(
            streams.close(&SessionKey::new("key-a"), CloseReason::SignedOut),
            0
        );
        // The requests end after their close: counted once.
        drop((a1, a2));
        assert_eq!(
            metrics.streams_open.with_label_values(&["default"]).get(),
            1
        );
        assert_eq!(streams.sessions(), vec![SessionKey::new("key-b")]);
        let signed_out = metrics
            .streams_closed
            .with_label_values(&["default", "signed_out"]);
        assert_eq!(signed_out.get(), 2);

        drop(b1);
        assert_eq!(
            metrics.streams_open.with_label_values(&["default"]).get(),
            0
        );
        assert_eq!(streams.count(), 0);
        assert_eq!(closed.load(Ordering::SeqCst), 2);
    }

    /// A stream closes at its session's end by itself: the deadline when it comes first,
    /// otherwise the lifetime; the timer wakes for a stream that ends sooner than the others.
    #[tokio::test]
    async fn a_stream_closes_at_its_sessions_end() {
        let metrics = Metrics::new();
        let streams = Streams::new(&metrics, "default");
        let closed = Arc::new(AtomicUsize::new(0));
        let later = live("key-later", |r| r.expires_at_ms = now_ms() + 3_600_000);
        let _later = streams.open(&later, closer(&closed));
        let soon = now_ms() + 300;
        let deadline = live("key-deadline", |r| {
            r.reauth_by_ms = Some(soon);
            r.expires_at_ms = soon;
        });
        let lifetime = live("key-lifetime", |r| {
            r.reauth_by_ms = Some(soon + 3_600_000);
            r.expires_at_ms = soon;
        });
        let _d = streams.open(&deadline, closer(&closed));
        let _l = streams.open(&lifetime, closer(&closed));
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while closed.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(closed.load(Ordering::SeqCst), 2);
        let by = |reason: &str| {
            metrics
                .streams_closed
                .with_label_values(&["default", reason])
                .get()
        };
        assert_eq!((by("deadline"), by("lifetime")), (1, 1));
        assert_eq!(streams.sessions(), vec![SessionKey::new("key-later")]);
        assert_eq!(
            metrics.streams_open.with_label_values(&["default"]).get(),
            1
        );
    }

    /// A request that looked its session up just before the session ended does not join it:
    /// it sees the end, and leaves nothing registered.
    #[tokio::test]
    async fn a_stream_does_not_join_a_session_that_has_ended() {
        let s = crate::session::registry::tests::sessions();
        s.persist(&SessionKey::new("key-a"), &record("alice"))
            .await
            .expect("put");
        let looked_up = s
            .by_key(&SessionKey::new("key-a"))
            .await
            .expect("store")
            .expect("live");
        s.end(&SessionKey::new("key-a"), CloseReason::SignedOut)
            .await
            .expect("end");
        assert!(s.join_streams(&looked_up, || {}).is_none());
        assert_eq!(s.streams.count(), 0);
        assert_eq!(
            s.metrics.streams_open.with_label_values(&["default"]).get(),
            0
        );
    }

    /// After lost invalidations, the streams of sessions gone from the store close; those of
    /// sessions still there stay.
    #[tokio::test]
    async fn streams_of_sessions_gone_from_the_store_close_after_lost_invalidations() {
        let s = crate::session::registry::tests::sessions();
        let closed = Arc::new(AtomicUsize::new(0));
        s.persist(&SessionKey::new("key-kept"), &record("alice"))
            .await
            .expect("put");
        let _kept = s.streams.open(&live("key-kept", |_| {}), closer(&closed));
        let _gone = s.streams.open(&live("key-gone", |_| {}), closer(&closed));
        s.close_streams_of_gone_sessions().await;
        assert_eq!(closed.load(Ordering::SeqCst), 1);
        assert_eq!(s.streams.sessions(), vec![SessionKey::new("key-kept")]);
        let other = s
            .metrics
            .streams_closed
            .with_label_values(&["other_replica"]);
        assert_eq!(other.get(), 1);
    }
}
