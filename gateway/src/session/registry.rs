//! The [`Sessions`] registry: the store, the keys, the memory cache in front of the store, how
//! records are sealed into and opened from the store, and ending a session. Logins
//! (`login`), lookups (`lookup`), a session's streams (`streams`), users as an operator sees
//! them (`users`) and the records of a token refresh (`records`) are its other methods. The
//! fields are this room's alone: other rooms go through those methods.
//!
//! Why this file is over 600 lines: about a fifth is the unit tests of sessions that end by
//! themselves (deadline, lifetime: one event each), which need the private memory cache;
//! the rest is the registry, already split by job into the files named above.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;

use super::cache::SessionCache;
use super::record::{LiveSession, SessionRecord};
use super::streams::{close_streams_of_gone_sessions, CloseReason, Streams};
use crate::clock::now_ms;
use crate::crypto::{Keyring, Purpose};
use crate::events::{EndReason, Event, Events, Kind};
use crate::oauth::TokenError;
use crate::quota::{purge, SharedAnswers};
use crate::secret::SessionKey;
use crate::store::{Invalidation, Namespace, PurgeNotice, Store, StoreError, StoreErrorKind};
use crate::telemetry::metrics::Metrics;

/// Sessions kept in memory per replica; beyond this the least used are re-read from the store.
const CACHE_CAPACITY: usize = 200_000;
/// An idle session leaves the memory cache after this long (it stays in the store).
const CACHE_IDLE: Duration = Duration::from_secs(15 * 60);
/// How long a replica trusts its memory of which session is a user's latest.
const USER_INDEX_TTL: Duration = Duration::from_secs(60);
/// How long a replica remembers that a session ended (here, or on another replica by a
/// published invalidation). A lookup that read the record from the store just before it was
/// deleted finishes within a store round trip (at most a few seconds); remembering far longer
/// than that costs a few bytes per ended session.
const ENDED_MEMORY: Duration = Duration::from_secs(5 * 60);

/// How long replicas remember that a session's deadline or lifetime end was reported (its
/// `session.ended` event): longer than any replica keeps the session cached (`CACHE_IDLE`).
const DEADLINE_REPORT_MEMORY: Duration = Duration::from_secs(60 * 60);

/// From this long before its deadline, a browser is offered a re-consent (`proxy::public`).
pub const REAUTH_NOTICE: Duration = Duration::from_secs(7 * 24 * 3600);
/// `sessions_reauth_due` counts the sessions whose deadline is this close.
pub const REAUTH_GAUGE_WINDOW: Duration = Duration::from_secs(14 * 24 * 3600);

/// Why a session gives no token.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The session is gone (logged out, expired, refresh token revoked): log in again.
    #[error("the session has ended; log in again")]
    Ended,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Token(TokenError),
}

pub struct Sessions {
    pub(super) store: Arc<dyn Store>,
    /// Swapped whole when SIGHUP rotates `session.secret`; shared with the task that follows
    /// other replicas' purge notices (named by keyed hashes).
    keys: Arc<RwLock<Arc<Keyring>>>,
    /// The egress's cache and calls in flight: a user who leaves leaves no answer there
    /// (`purge`).
    pub(super) answers: Arc<SharedAnswers>,
    /// Purge notices the store did not take, published again every second (`purge`).
    pub(super) unpublished_purges: Mutex<Vec<PurgeNotice>>,
    pub(super) cache: Arc<SessionCache>,
    /// Store keys of sessions that ended lately. A lookup that raced with the end (it read the
    /// record before the delete, and fills the cache after it) checks here after filling the
    /// cache, so an ended session can never be cached again (`lookup::by_key`).
    pub(super) ended: moka::future::Cache<SessionKey, ()>,
    /// Sessions refreshed at Spotify whose new record the store did not take (it was down):
    /// the only copy of a rotated refresh token. Written again until the store takes it
    /// (`save_unsaved`); `/readyz` fails meanwhile.
    pub(super) unsaved: Mutex<HashMap<SessionKey, Arc<LiveSession>>>,
    /// Trusted-header mode: user id → store key of the user's session, so a call for a hot
    /// session does not read the store's user index. Checked against the session every time;
    /// a login of the same user elsewhere is picked up within `USER_INDEX_TTL`.
    pub(super) user_keys: moka::future::Cache<String, SessionKey>,
    pub(super) lifetime: Duration,
    /// `session.reauth_after`: the deadline is this long after a login.
    pub(super) reauth_after: Duration,
    pub(super) metrics: Arc<Metrics>,
    /// The requests each session has under way on the public listener (WebSockets, event
    /// streams), closed when it ends.
    pub(super) streams: Arc<Streams>,
    /// Audit events of sessions ending by themselves (`invalid_grant`, the deadline, the
    /// lifetime).
    pub(super) events: Arc<Events>,
}

impl Sessions {
    pub fn new(
        store: Arc<dyn Store>,
        answers: Arc<SharedAnswers>,
        keys: Keyring,
        lifetime: Duration,
        reauth_after: Duration,
        metrics: Arc<Metrics>,
        events: Arc<Events>,
    ) -> Sessions {
        let cache = Arc::new(SessionCache::new(CACHE_CAPACITY, CACHE_IDLE));
        let ended: moka::future::Cache<SessionKey, ()> = moka::future::Cache::builder()
            .max_capacity(CACHE_CAPACITY as u64)
            .time_to_live(ENDED_MEMORY)
            .build();
        let keys = Arc::new(RwLock::new(Arc::new(keys)));
        let streams = Streams::new(&metrics, events.app());
        if let Some(mut changes) = store.invalidations() {
            let cache = Arc::clone(&cache);
            let ended = ended.clone();
            let answers = Arc::clone(&answers);
            let keys = Arc::clone(&keys);
            let purged = metrics.answers_purged.with_label_values(&[events.app()]);
            let streams = Arc::clone(&streams);
            let store = Arc::clone(&store);
            let forget = async move {
                while let Some(change) = changes.recv().await {
                    match change {
                        // Another replica ended it: remember that before forgetting the copy,
                        // so a lookup filling the cache right now sees it (`by_key`); then its
                        // streams here close.
                        Invalidation::Key(key) => {
                            let key = SessionKey::new(key);
                            ended.insert(key.clone(), ()).await;
                            if let Some(s) = cache.remove(&key) {
                                s.mark_ended();
                            }
                            streams.close(&key, CloseReason::OtherReplica);
                        }
                        // Invalidations may have been lost: what is cached is read again when
                        // used, and a stream, never looked up again, is checked now.
                        // A task of its own: the next invalidations must not wait for it.
                        Invalidation::All => {
                            cache.clear();
                            super::purge::purge_counted(&answers, purge::every_user(), &purged);
                            let (store, streams) = (Arc::clone(&store), Arc::clone(&streams));
                            tokio::spawn(async move {
                                close_streams_of_gone_sessions(&*store, &streams).await
                            });
                        }
                        // After the invalidations of the user's sessions, sent before it.
                        Invalidation::Answers(notice) => {
                            let keys = Arc::clone(&keys.read().unwrap_or_else(|p| p.into_inner()));
                            let named = super::purge::owners_named(keys, notice);
                            super::purge::purge_counted(&answers, named, &purged);
                        }
                    }
                }
            };
            match crate::runtime::io_home() {
                Ok(home) => {
                    home.spawn(forget);
                }
                Err(e) => tracing::error!(error = %e, "cannot follow session invalidations"),
            }
        }
        let user_keys = moka::future::Cache::builder()
            .max_capacity(CACHE_CAPACITY as u64)
            .time_to_live(USER_INDEX_TTL)
            .build();
        Sessions {
            store,
            keys,
            answers,
            unpublished_purges: Mutex::new(Vec::new()),
            cache,
            ended,
            unsaved: Mutex::new(HashMap::new()),
            user_keys,
            lifetime,
            reauth_after,
            metrics,
            streams,
            events,
        }
    }

    /// The current keys (cookies, records, assertions).
    pub fn keys(&self) -> Arc<Keyring> {
        Arc::clone(&self.keys.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Replaces the keys (a `session.secret` rotation at SIGHUP). Cookies, records and
    /// assertions sealed with the previous secret still open while it is configured as
    /// `session.previous_secret`.
    pub fn set_keys(&self, keys: Keyring) {
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Logs a store failure (the store wrapper has counted it).
    pub(super) fn store_error(&self, e: StoreError) -> StoreError {
        tracing::error!(error = %e, "session store operation failed");
        e
    }

    /// Ends a session everywhere (logout, revoked refresh token): remembered as ended here
    /// first, so no lookup can cache it again, then dropped from memory with its streams
    /// closed (`reason` counts them), deleted from the store and announced to the other
    /// replicas, which do the same.
    pub async fn end(&self, key: &SessionKey, reason: CloseReason) -> Result<(), StoreError> {
        self.ended.insert(key.clone(), ()).await;
        let cached = self.cache.remove(key);
        if let Some(s) = &cached {
            s.mark_ended();
        }
        self.streams.close(key, reason);
        self.forget_unsaved(key);
        // Whose session it is, for the user's index: from memory, else from the store.
        let user = match &cached {
            Some(s) => Some(s.user_id()),
            None => self
                .load_record(key)
                .await
                .ok()
                .flatten()
                .map(|r| r.user_id),
        };
        let result = self.store.delete(Namespace::Session, key.expose()).await;
        if result.is_ok() {
            if let Err(e) = self.store.publish_invalidation(key.expose()).await {
                self.store_error(e);
            }
            if let Some(user) = &user {
                // A stale entry would only name a key that opens nothing.
                let _ = self.store.remove_user_session(user, key.expose()).await;
            }
        }
        if let Some(s) = cached {
            for index in s.with_record(super::record::identity_indexes) {
                self.user_keys.invalidate(&index).await;
                // Only drop the index when it still points at this session.
                if let Ok(Some(k)) = self.store.get(Namespace::UserIndex, &index).await {
                    if key.is(&k) {
                        let _ = self.store.delete(Namespace::UserIndex, &index).await;
                    }
                }
            }
        }
        result.map(|_| ()).map_err(|e| self.store_error(e))
    }

    /// Deletes everything the gateway holds for `session`'s user (a user who disconnects, as
    /// Spotify's Developer Policy requires): every session of the user, on every replica —
    /// each ended as by `end` (remembered as ended, cached copies dropped here and, by the
    /// published invalidation, on the other replicas) — and the user's indexes. Returns how
    /// many sessions ended.
    pub async fn disconnect(&self, session: &LiveSession) -> Result<usize, StoreError> {
        let (user, indexes) =
            session.with_record(|r| (r.user_id.clone(), super::record::identity_indexes(r)));
        let keys = self
            .user_session_keys(&user)
            .await
            .map_err(|e| self.store_error(e))?;
        self.end_user(
            &user,
            keys,
            Some(&session.key),
            indexes,
            CloseReason::Disconnected,
        )
        .await
    }

    /// The core of [`Self::disconnect`] and of an operator's revocation (`users`): ends every
    /// session in `keys` (and `also`) as by `end`, drops the user's identity `indexes`, then
    /// the user's shared answers on every replica (`purge`; also when a store error stopped
    /// the rest half-way, as the sessions that did end cannot ask again). Returns how many
    /// keys it ended.
    pub(super) async fn end_user(
        &self,
        user: &str,
        keys: Vec<SessionKey>,
        also: Option<&SessionKey>,
        indexes: Vec<String>,
        reason: CloseReason,
    ) -> Result<usize, StoreError> {
        let ended = self
            .end_user_sessions(user, keys, also, indexes, reason)
            .await;
        self.purge_user_answers(user).await;
        ended
    }

    async fn end_user_sessions(
        &self,
        user: &str,
        mut keys: Vec<SessionKey>,
        also: Option<&SessionKey>,
        indexes: Vec<String>,
        reason: CloseReason,
    ) -> Result<usize, StoreError> {
        if let Some(also) = also {
            if !keys.iter().any(|k| k == also) {
                keys.push(also.clone());
            }
        }
        for key in &keys {
            self.end(key, reason).await?;
            // `end` found no record for a key whose session had already gone: its entry too.
            let _ = self.store.remove_user_session(user, key.expose()).await;
        }
        for index in indexes {
            self.user_keys.invalidate(&index).await;
            self.store
                .delete(Namespace::UserIndex, &index)
                .await
                .map_err(|e| self.store_error(e))?;
        }
        Ok(keys.len())
    }

    /// The demo's stand-in for time passing (`spotify-gateway demo`, next to the mock's
    /// `/__mock/age`): every session of `user_id` is `by` older as far as its re-consent
    /// deadline goes, so the re-consent offer (and, past the deadline, the end) can be seen
    /// without waiting months. Returns how many sessions it aged. Not in production builds.
    #[cfg(feature = "demo")]
    pub async fn age_authorization(
        &self,
        user_id: &str,
        by: Duration,
    ) -> Result<usize, StoreError> {
        let by_ms = by.as_millis() as u64;
        let mut aged = 0;
        for key in self.user_session_keys(user_id).await? {
            let Some(session) = self.by_key(&key).await? else {
                continue;
            };
            let record = session.update(|r| {
                if let Some(deadline) = r.reauth_by_ms.as_mut() {
                    *deadline = deadline.saturating_sub(by_ms);
                    r.expires_at_ms = r.expires_at_ms.min(*deadline);
                }
                r.updated_at_ms = now_ms().max(r.updated_at_ms + 1);
                r.clone()
            });
            self.persist(&key, &record).await?;
            aged += 1;
        }
        Ok(aged)
    }

    /// The store keys of `user`'s sessions, from the store's user → sessions index (stale ones
    /// too: a key whose session has gone opens nothing).
    pub(super) async fn user_session_keys(
        &self,
        user: &str,
    ) -> Result<Vec<SessionKey>, StoreError> {
        let keys = self.store.user_sessions(user).await?;
        Ok(keys.into_iter().map(SessionKey::new).collect())
    }

    /// Drops the expired cached copy under `key`. When it went by itself (not signed out, not
    /// ended elsewhere), that is a `session.ended` event with reason `deadline` (its
    /// re-consent deadline) or `lifetime` (its `session.lifetime`, which came first): reported
    /// once — by whoever removes the copy here, and across replicas by whoever takes the
    /// store's lock named for it (Redis; a single process always does).
    pub(super) async fn forget_expired(&self, key: &SessionKey) {
        let Some(s) = self.cache.remove(key) else {
            return;
        };
        if s.is_ended() || self.has_ended(key) {
            return;
        }
        let (reason, close) = if s.reauth_due_within(Duration::ZERO) {
            (EndReason::Deadline, CloseReason::Deadline)
        } else if s.with_record(|r| r.expires_at_ms <= now_ms()) {
            (EndReason::Lifetime, CloseReason::Lifetime)
        } else {
            return;
        };
        // Its streams' timer may be waiting for a later end (the demo ages sessions).
        self.streams.close(key, close);
        // One lock name for both reasons (a session ends once); it predates `lifetime`.
        let report = self
            .store
            .lock(
                &format!("deadline-reported:{}", key.expose()),
                &crate::crypto::random_id(),
                DEADLINE_REPORT_MEMORY,
            )
            .await;
        if let Ok(true) = report {
            self.events.emit(
                Event::new(Kind::Ended(reason))
                    .user(s.user_id(), s.with_record(|r| r.account_id.clone())),
            );
        }
    }

    /// Whether the session under `key` ended lately on any replica this one heard of.
    pub(super) fn has_ended(&self, key: &SessionKey) -> bool {
        self.ended.contains_key(key)
    }

    /// Removes expired records from the store and updates the active-session gauge.
    pub async fn housekeeping(&self) {
        match self.store.purge_expired().await {
            Ok(n) if n > 0 => tracing::debug!(purged = n, "removed expired sessions and logins"),
            Ok(_) => {}
            Err(e) => {
                self.store_error(e);
            }
        }
        self.cache.evict_idle();
        // Sessions in memory that reached their deadline since they were last used: their
        // `session.ended` event is due now, not at the next request (which may never come).
        let due: Vec<SessionKey> = self
            .cache
            .snapshot()
            .into_iter()
            .filter(|s| s.is_expired())
            .map(|s| s.key.clone())
            .collect();
        for key in due {
            self.forget_expired(&key).await;
        }
        match self.store.count(Namespace::Session).await {
            Ok(n) => self
                .metrics
                .active_sessions
                .with_label_values(&[self.events.app()])
                .set(n as i64),
            Err(e) => {
                self.store_error(e);
            }
        }
    }

    /// Updates `sessions_reauth_due`: the live sessions in this replica's memory whose
    /// re-consent deadline is within [`REAUTH_GAUGE_WINDOW`] (run at every scrape).
    pub fn count_reauth_due(&self) {
        self.metrics
            .sessions_reauth_due
            .with_label_values(&[self.events.app()])
            .set(self.reauth_due() as i64);
    }

    /// How many cached sessions are due for a re-consent soon (`count_reauth_due`'s figure,
    /// for a sum over several apps).
    pub fn reauth_due(&self) -> usize {
        self.cache
            .snapshot()
            .iter()
            .filter(|s| !s.is_expired() && s.reauth_due_within(REAUTH_GAUGE_WINDOW))
            .count()
    }

    // -- records as stored --------------------------------------------------------------------

    /// A record as stored: JSON, sealed and bound to its store key.
    pub(super) fn seal_record<T: Serialize>(
        &self,
        key: &str,
        record: &T,
    ) -> Result<Vec<u8>, StoreError> {
        let plain = serde_json::to_vec(record).map_err(|e| {
            StoreError::new(
                StoreErrorKind::Corrupt,
                self.store.backend(),
                "encode",
                e.to_string(),
            )
        })?;
        Ok(self
            .keys()
            .seal(Purpose::StoredRecord, key.as_bytes(), &plain)
            .into_bytes())
    }

    /// Writes a session record under `key`, to expire with the session.
    pub(super) async fn persist(
        &self,
        key: &SessionKey,
        record: &SessionRecord,
    ) -> Result<(), StoreError> {
        let key = key.expose();
        let sealed = self.seal_record(key, record)?;
        let ttl = Duration::from_millis(record.expires_at_ms.saturating_sub(now_ms()));
        self.store
            .put(Namespace::Session, key, sealed, ttl)
            .await
            .map_err(|e| self.store_error(e))
    }

    /// The live stored session record under `key`, if any.
    pub(super) async fn load_record(
        &self,
        key: &SessionKey,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let key = key.expose();
        let raw = self
            .store
            .get(Namespace::Session, key)
            .await
            .map_err(|e| self.store_error(e))?;
        Ok(raw
            .and_then(|raw| self.open_record::<SessionRecord>(key, &raw))
            .filter(|r| r.expires_at_ms > now_ms()))
    }

    /// A sealed record, opened; `None` when it does not open under this key (tampered,
    /// moved to another key, or sealed by another deployment).
    pub(super) fn open_record<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
        raw: &[u8],
    ) -> Option<T> {
        let sealed = std::str::from_utf8(raw).ok()?;
        let plain = self
            .keys()
            .open(Purpose::StoredRecord, key.as_bytes(), sealed)?;
        serde_json::from_slice(&plain).ok()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::clock::now_ms;
    use crate::config::Config;
    use crate::secret::{AccessToken, RefreshToken};
    use crate::session::Scopes;
    use crate::store::MemoryStore;

    const HOUR: Duration = Duration::from_secs(3600);

    /// A registry on the memory store with a unit-test config.
    pub(crate) fn sessions() -> Sessions {
        let text = r#"
[spotify]
client_id = "abc"
client_secret = "client-secret"
redirect_uri = "http://127.0.0.1:8080/auth/callback"
[session]
secret = "unit-test-session-secret-0123456789abcdef"
[store]
backend = "memory"
"#;
        let config = Config::parse(text, "t", &|_| None).expect("config");
        let metrics = Arc::new(Metrics::new());
        let keys = Keyring::new(&config.session.secret, None);
        let events = Arc::new(Events::without_webhooks(&keys, metrics.clone()));
        Sessions::new(
            Arc::new(MemoryStore::default()),
            Arc::new(SharedAnswers::new(0)),
            keys,
            HOUR,
            HOUR,
            metrics,
            events,
        )
    }

    /// How a test makes a cached session expire.
    type Expire = fn(&mut SessionRecord);

    fn ended(s: &Sessions, reason: &str) -> u64 {
        s.metrics
            .sessions_ended
            .with_label_values(&["default", reason])
            .get()
    }

    /// A cached session past its `session.lifetime` but before its deadline ends with reason
    /// `lifetime`, one at its deadline with `deadline`; each once, whoever notices it (the
    /// housekeeping or a lookup), and a signed-out one not at all.
    #[tokio::test]
    async fn a_session_that_expires_by_itself_ends_once_with_its_reason() {
        let s = sessions();
        let cases: [(&str, Expire); 3] = [
            ("key-life", |r| r.expires_at_ms = now_ms() - 1),
            ("key-deadline", |r| {
                r.reauth_by_ms = Some(now_ms() - 1);
                r.expires_at_ms = now_ms() - 1;
            }),
            ("key-out", |r| r.expires_at_ms = now_ms() - 1),
        ];
        for (name, expire) in &cases {
            let key = SessionKey::new(*name);
            let mut live = record("alice");
            live.reauth_by_ms = Some(now_ms() + 3_600_000);
            s.persist(&key, &live).await.expect("put");
            let cached = s.by_key(&key).await.expect("store").expect("live");
            cached.update(*expire);
            if *name == "key-out" {
                cached.mark_ended();
            }
        }
        // The housekeeping notices (and drops) the expired copies; then nothing is left to
        // report, whoever looks.
        s.housekeeping().await;
        s.housekeeping().await;
        for (name, _) in &cases {
            s.forget_expired(&SessionKey::new(*name)).await;
        }
        assert_eq!(ended(&s, "lifetime"), 1);
        assert_eq!(ended(&s, "deadline"), 1);
        assert_eq!(
            s.metrics
                .audit_events
                .with_label_values(&["default", "session.ended"])
                .get(),
            2
        );
    }

    /// A live record of `user`, valid for an hour.
    pub(crate) fn record(user: &str) -> SessionRecord {
        let now = now_ms();
        SessionRecord {
            user_id: user.into(),
            account_id: None,
            display_name: None,
            scopes: Scopes::default(),
            access_token: AccessToken::new(format!("access-{user}")),
            access_expires_at_ms: now + 3_600_000,
            access_lifetime_ms: 3_600_000,
            refresh_token: RefreshToken::new(format!("refresh-{user}")),
            created_at_ms: now,
            reauth_by_ms: None,
            updated_at_ms: now,
            expires_at_ms: now + 3_600_000,
        }
    }
}
