//! A user's access token: the cached one while it is fresh, else a refreshed one — one refresh
//! at a time per session, and across replicas one at a time per session through the store's
//! lock. A replica that waits for another's refresh adopts the record it stores.
//!
//! Under PKCE Spotify's refresh tokens are single-use: two refreshes with the same token would
//! revoke the session, which is why the lock spans replicas.
//!
//! [`UserTokens`] holds the token endpoint; the session's record is `session`'s, reached
//! through its record API (`Sessions::adopt_stored`, `save_refreshed`, `end_refused`). The
//! egress trip goes one way: `proxy` → `tokens` → `session`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::is_fresh;
use crate::clock::now_ms;
use crate::crypto;
use crate::events::{EndReason, Event, Events, Kind};
use crate::oauth::{TokenEndpoint, TokenError};
use crate::secret::AccessToken;
use crate::session::{LiveSession, Scopes, SessionError, Sessions};
use crate::store::{Store, StoreError};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::traces;

/// How long one replica may hold a user's refresh lock. Longer than a token request may take
/// (10 s), so a slow refresh never overlaps another replica's: under PKCE a second refresh
/// with the same token would revoke the session.
const REFRESH_LOCK_TTL: Duration = Duration::from_secs(15);
/// How often a replica waiting for another's refresh looks at the store.
const REFRESH_POLL: Duration = Duration::from_millis(25);
/// How often a refresh whose record waits for the store looks whether it has landed, to
/// release the refresh lock.
const UNSAVED_POLL: Duration = Duration::from_millis(50);

/// The answer for a session that needs no refresh attempt: ended, or a recent failure held.
fn settled(session: &LiveSession) -> Option<Result<AccessToken, SessionError>> {
    if session.is_expired() {
        return Some(Err(SessionError::Ended));
    }
    session.held_failure().map(|e| Err(SessionError::Token(e)))
}

/// The session's access token while it is fresh.
fn usable_token(session: &LiveSession) -> Option<AccessToken> {
    session.with_record(|r| {
        is_fresh(
            r.access_expires_at_ms,
            Duration::from_millis(r.access_lifetime_ms),
        )
        .then(|| r.access_token.clone())
    })
}

/// Users' access tokens: each session's, refreshed at the token endpoint when it goes stale.
pub struct UserTokens {
    endpoint: Arc<TokenEndpoint>,
    sessions: Arc<Sessions>,
    /// The sessions' store, for the cross-replica refresh lock.
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    /// The `session.ended` event of an `invalid_grant`.
    events: Arc<Events>,
    /// `token_cache_total{app,result}` children, resolved once: counted on every egress call.
    cache_hits: prometheus::IntCounter,
    cache_misses: prometheus::IntCounter,
}

impl UserTokens {
    pub fn new(
        endpoint: Arc<TokenEndpoint>,
        sessions: Arc<Sessions>,
        metrics: Arc<Metrics>,
        events: Arc<Events>,
    ) -> UserTokens {
        UserTokens {
            endpoint,
            store: Arc::clone(sessions.store()),
            sessions,
            cache_hits: metrics
                .token_cache
                .with_label_values(&[events.app(), "hit"]),
            cache_misses: metrics
                .token_cache
                .with_label_values(&[events.app(), "miss"]),
            metrics,
            events,
        }
    }

    /// Counts a refresh by result (`token_refreshes_total{app,result}`).
    fn count_refresh(&self, result: &str) {
        self.metrics
            .token_refreshes
            .with_label_values(&[self.events.app(), result])
            .inc();
    }

    /// A usable access token for the session: the cached one while fresh, else a refreshed
    /// one. Only one refresh per session runs at a time, and its outcome — a token or an
    /// error — is what everyone waiting for it gets; after a failure, callers get that error
    /// at once until its hold passes (a backoff per session), so a burst of calls costs one
    /// token request whether the endpoint works or not.
    ///
    /// The refresh runs as a task of its own: a caller that stops waiting (its call's deadline
    /// passed) does not cancel it, so a refresh token Spotify has already rotated is never
    /// dropped on the floor.
    pub async fn access_token(
        self: &Arc<Self>,
        session: &Arc<LiveSession>,
    ) -> Result<AccessToken, SessionError> {
        if let Some(token) = usable_token(session) {
            self.cache_hits.inc();
            return Ok(token);
        }
        self.cache_misses.inc();
        if let Some(answer) = settled(session) {
            return answer;
        }
        let waited_from = std::time::SystemTime::now();
        let mut refreshing = session.refresh_turn().await;
        // Whoever held the lock before us has refreshed, or failed, already: we followed
        // that refresh (the single flight's leader), and our span links to its.
        let followed = || traces::follower_of_current(waited_from, refreshing.as_ref());
        if let Some(token) = usable_token(session) {
            if let Some(span) = followed() {
                span.end(None);
            }
            return Ok(token);
        }
        if let Some(answer) = settled(session) {
            if let Some(span) = followed() {
                span.end(answer.as_ref().err().map(failure_kind));
            }
            return answer;
        }
        let this = Arc::clone(self);
        let session = Arc::clone(session);
        // A child of the request's span that started the refresh (while one is traced); the
        // refresh's own calls (the token request, the store's lock and write) are its.
        let span = traces::child_of_current("token refresh");
        *refreshing = span.as_ref().map(|s| s.reference());
        let scope = span.as_ref().map(|s| s.scope());
        let task = tokio::spawn(async move {
            let _refreshing = refreshing;
            let result = traces::in_scope(scope, this.refresh_across_replicas(&session)).await;
            match &result {
                Ok(_) => session.clear_failure(),
                Err(SessionError::Token(e)) => session.hold_failure(e.clone()),
                Err(_) => {}
            }
            if let Some(span) = span {
                span.end(result.as_ref().err().map(failure_kind));
            }
            result
        });
        task.await.unwrap_or_else(|e| {
            Err(SessionError::Token(TokenError::Unavailable(format!(
                "the refresh task failed: {e}"
            ))))
        })
    }

    /// Across replicas: one holder of the store lock refreshes; the others wait for the
    /// record it stores.
    async fn refresh_across_replicas(
        &self,
        session: &Arc<LiveSession>,
    ) -> Result<AccessToken, SessionError> {
        let lock = format!("refresh:{}", session.key.expose());
        let owner = crypto::random_id();
        let deadline = Instant::now() + REFRESH_LOCK_TTL + Duration::from_secs(2);
        loop {
            let locked = match self.store.lock(&lock, &owner, REFRESH_LOCK_TTL).await {
                Ok(locked) => locked,
                Err(e) => {
                    // The store may have taken the lock and then failed to answer (a master
                    // dying in between, its replica promoted with the lock): released, or it
                    // would keep every replica from refreshing this session until it expires.
                    self.unlock_once_saved(session, lock, owner);
                    return Err(store_error(e).into());
                }
            };
            if locked {
                let (result, saved) = self.refresh_locked(session).await;
                // A refreshed record the store did not take (or may not have: a write that
                // timed out) keeps the lock until it has landed (written again every second),
                // so another replica adopts it instead of refreshing with the refresh token
                // Spotify has already rotated away (a Redis failover in the middle of a
                // refresh); at worst the lock expires.
                let released = saved && {
                    let unlocked = self.store.unlock(&lock, &owner).await;
                    unlocked.map_err(store_error).is_ok()
                };
                if !released {
                    self.unlock_once_saved(session, lock, owner);
                }
                return result;
            }
            tokio::time::sleep(REFRESH_POLL).await;
            if let Some(token) = self.adopt_stored(session).await? {
                return Ok(token);
            }
            if Instant::now() > deadline {
                return Err(SessionError::Token(TokenError::Unavailable(
                    "another replica holds the refresh lock".into(),
                )));
            }
        }
    }

    /// Releases the refresh lock once the session's refreshed record has reached the store
    /// (or the session ended) and the store takes the release (a failover may have refused
    /// it: held on, the lock would keep every replica from refreshing until it expires),
    /// polling; the lock expires by itself meanwhile.
    fn unlock_once_saved(&self, session: &Arc<LiveSession>, lock: String, owner: String) {
        let (sessions, store, key) = (
            Arc::clone(&self.sessions),
            Arc::clone(&self.store),
            session.key.clone(),
        );
        let given_up = Instant::now() + REFRESH_LOCK_TTL;
        tokio::spawn(async move {
            loop {
                if Instant::now() > given_up {
                    return;
                }
                if !sessions.is_unsaved(&key) && store.unlock(&lock, &owner).await.is_ok() {
                    return;
                }
                tokio::time::sleep(UNSAVED_POLL).await;
            }
        });
    }

    /// Takes the stored record if it is newer than ours (another replica refreshed), and
    /// returns its token if that is usable.
    async fn adopt_stored(
        &self,
        session: &LiveSession,
    ) -> Result<Option<AccessToken>, SessionError> {
        self.sessions.adopt_stored(session).await?;
        Ok(usable_token(session))
    }

    /// The refresh itself, with this replica holding the store lock; with whether the store
    /// holds the outcome (false: a refreshed record waits in memory to be written again).
    async fn refresh_locked(
        &self,
        session: &Arc<LiveSession>,
    ) -> (Result<AccessToken, SessionError>, bool) {
        match self.adopt_stored(session).await {
            Ok(Some(token)) => return (Ok(token), true),
            Ok(None) => {}
            Err(e) => return (Err(e), true),
        }
        let refresh_token = session.with_record(|r| r.refresh_token.clone());
        match self.endpoint.refresh(&refresh_token).await {
            Ok(grant) => {
                self.count_refresh("ok");
                let updated = session.update(|r| {
                    r.access_token = grant.access_token.clone();
                    r.access_expires_at_ms = grant.expires_at_ms;
                    r.access_lifetime_ms = grant.lifetime.as_millis() as u64;
                    // Spotify may omit the refresh token: keep the old one. Under PKCE it
                    // rotates and the old one is already dead, so the new one must be kept.
                    if let Some(rt) = grant.refresh_token {
                        r.refresh_token = rt;
                    }
                    if !grant.scopes.is_empty() {
                        r.scopes = Scopes::new(&grant.scopes);
                    }
                    r.updated_at_ms = now_ms().max(r.updated_at_ms + 1);
                    r.clone()
                });
                // Spotify may have rotated the refresh token: if the store does not take the
                // new record now, it must not be lost (`save_refreshed` keeps it).
                let saved = self.sessions.save_refreshed(session, &updated).await;
                tracing::debug!("refreshed a user token");
                (Ok(grant.access_token), saved)
            }
            Err(TokenError::InvalidGrant) => {
                self.count_refresh("invalid_grant");
                tracing::info!("refresh token refused (invalid_grant): ending the session");
                // The user's answers go too, on every replica (Spotify's Developer Policy).
                self.sessions.end_refused(session).await;
                // Once: this replica holds the refresh lock, and the session is now ended. The
                // refresh runs as its own task, so no request id.
                self.events
                    .emit(Event::new(Kind::Ended(EndReason::InvalidGrant)).user(
                        session.user_id(),
                        session.with_record(|r| r.account_id.clone()),
                    ));
                (Err(SessionError::Ended), true)
            }
            Err(e) => {
                self.count_refresh("transient");
                tracing::warn!(error = %e, "token refresh failed; the session is kept");
                (Err(SessionError::Token(e)), true)
            }
        }
    }
}

/// Logs a store failure (the store wrapper has counted it), as `session` logs its own.
fn store_error(e: StoreError) -> StoreError {
    tracing::error!(error = %e, "session store operation failed");
    e
}
/// A refresh's failure as a span status: a bounded kind, never the endpoint's text.
fn failure_kind(e: &SessionError) -> &'static str {
    match e {
        SessionError::Token(TokenError::InvalidGrant) => "invalid_grant",
        SessionError::Token(_) => "token_endpoint",
        SessionError::Ended => "ended",
        SessionError::Store(_) => "store",
    }
}
