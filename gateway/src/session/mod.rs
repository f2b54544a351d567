//! User sessions: pending logins, the sealed session cookie, session records with the user's
//! tokens, and the one-at-a-time refresh of those tokens.
//!
//! The cookie holds only the sealed session id. The store holds records under a keyed hash of
//! that id, each record sealed as a whole (tokens included), so neither a stolen cookie jar
//! entry nor a stolen store file is readable, and a store file alone opens no session.
//! Records are cached in memory (moka) in front of the store.

pub mod crypto;
pub mod redis_store;
pub mod store;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::metrics::Metrics;
use crate::oauth::{now_ms, TokenEndpoint, TokenError};
use crate::secret::Secret;
use crate::tokens::is_fresh;
use crypto::{Keyring, Purpose};
use store::{Namespace, Store, StoreError};

/// A login must come back from Spotify within this time (issue: state expires in 10 min).
pub const LOGIN_TTL: Duration = Duration::from_secs(600);

/// How long one replica may hold a user's refresh lock. Longer than a token request may take
/// (10 s), so a slow refresh never overlaps another replica's: under PKCE a second refresh
/// with the same token would revoke the session.
const REFRESH_LOCK_TTL: Duration = Duration::from_secs(15);
/// How often a replica waiting for another's refresh looks at the store.
const REFRESH_POLL: Duration = Duration::from_millis(25);

/// Sessions kept in memory per replica; beyond this the least used are re-read from the store.
const CACHE_CAPACITY: u64 = 200_000;
/// An idle session leaves the memory cache after this long (it stays in the store).
const CACHE_IDLE: Duration = Duration::from_secs(15 * 60);
/// How long a replica trusts its memory of which session is a user's latest.
const USER_INDEX_TTL: Duration = Duration::from_secs(60);

mod exposed {
    //! Stored records keep real token values (the whole record is sealed before storing).
    use crate::secret::Secret;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(s: &Secret, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(s.expose())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Secret, D::Error> {
        String::deserialize(de).map(Secret::runtime)
    }
    pub mod opt {
        use super::*;
        pub fn serialize<S: Serializer>(s: &Option<Secret>, ser: S) -> Result<S::Ok, S::Error> {
            match s {
                Some(s) => ser.serialize_some(s.expose()),
                None => ser.serialize_none(),
            }
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Secret>, D::Error> {
            Option::<String>::deserialize(de).map(|o| o.map(Secret::runtime))
        }
    }
}

/// The scopes a session was granted, space-separated in one shared string (the form of
/// `X-Spotify-Scopes`). Sessions of a deployment nearly always hold the same set, so equal
/// sets share one allocation. Stored as a JSON list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scopes(Arc<str>);

/// Distinct scope sets kept for sharing; beyond this many, new sets are not shared.
const INTERNED_SCOPE_SETS: usize = 64;

impl Scopes {
    pub fn new<S: AsRef<str>>(list: &[S]) -> Scopes {
        let joined = list
            .iter()
            .map(AsRef::as_ref)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        static INTERNED: std::sync::Mutex<Vec<Arc<str>>> = std::sync::Mutex::new(Vec::new());
        let mut interned = INTERNED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(shared) = interned.iter().find(|s| ***s == *joined) {
            return Scopes(Arc::clone(shared));
        }
        let scopes: Arc<str> = joined.into();
        if interned.len() < INTERNED_SCOPE_SETS {
            interned.push(Arc::clone(&scopes));
        }
        Scopes(scopes)
    }

    /// Space-separated, as Spotify writes them.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.split(' ').filter(|s| !s.is_empty())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Scopes {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Scopes {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Scopes, D::Error> {
        Vec::<String>::deserialize(de).map(|list| Scopes::new(&list))
    }
}

/// A session as stored (sealed) and cached.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionRecord {
    pub user_id: String,
    pub display_name: Option<String>,
    pub scopes: Scopes,
    #[serde(with = "exposed")]
    pub access_token: Secret,
    pub access_expires_at_ms: u64,
    pub access_lifetime_ms: u64,
    #[serde(with = "exposed")]
    pub refresh_token: Secret,
    pub created_at_ms: u64,
    /// Last change (login or refresh): a replica adopts a stored record only if it is newer
    /// than its own copy.
    pub updated_at_ms: u64,
    pub expires_at_ms: u64,
}

/// A login between `/auth/login` and `/auth/callback`.
#[derive(Debug, Serialize, Deserialize)]
struct PendingLogin {
    return_to: String,
    #[serde(with = "exposed::opt")]
    pkce_verifier: Option<Secret>,
}

/// A session in this replica's memory.
pub struct LiveSession {
    /// Store key (keyed hash of the session id); the memory cache's key shares it.
    pub key: Arc<str>,
    record: RwLock<SessionRecord>,
    /// Held by the one request that refreshes this session's token.
    refresh: tokio::sync::Mutex<()>,
}

impl LiveSession {
    pub fn record(&self) -> SessionRecord {
        self.record
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reads the record in place (no copy); `f` must not block.
    pub fn with_record<T>(&self, f: impl FnOnce(&SessionRecord) -> T) -> T {
        f(&self.record.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn user_id(&self) -> String {
        self.with_record(|r| r.user_id.clone())
    }

    pub fn is_user(&self, user_id: &str) -> bool {
        self.with_record(|r| r.user_id == user_id)
    }

    fn is_expired(&self) -> bool {
        self.record
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .expires_at_ms
            <= now_ms()
    }

    /// The access token while it is fresh.
    fn usable_token(&self) -> Option<Secret> {
        let r = self.record.read().unwrap_or_else(|p| p.into_inner());
        is_fresh(
            r.access_expires_at_ms,
            Duration::from_millis(r.access_lifetime_ms),
        )
        .then(|| r.access_token.clone())
    }

    /// Spotify answered 401 to `token`: treat it as expired so the next use refreshes. A
    /// token that was already replaced by a refresh is left alone.
    pub fn token_rejected(&self, token: &Secret) {
        let mut r = self.record.write().unwrap_or_else(|p| p.into_inner());
        if r.access_token == *token {
            r.access_expires_at_ms = 0;
        }
    }
}

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

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("the login cookie is missing or invalid: the login expired or was started in another browser")]
    NoLoginCookie,
    #[error("the state does not match this browser's login")]
    StateMismatch,
    #[error("the login is unknown, expired or already completed")]
    UnknownState,
    #[error("the user declined access")]
    Denied,
    #[error("Spotify returned an error: {0}")]
    Provider(String),
    #[error("the callback has neither a code nor an error")]
    MissingCode,
    #[error("Spotify refused the authorization code")]
    CodeRefused,
    #[error(transparent)]
    Token(TokenError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the callback hands back on success.
pub struct NewSession {
    /// Value for the session cookie (sealed session id).
    pub cookie_value: String,
    pub return_to: String,
    pub user_id: String,
}

pub struct Sessions {
    store: Arc<dyn Store>,
    keys: Keyring,
    cache: moka::future::Cache<Arc<str>, Arc<LiveSession>>,
    /// Trusted-header mode: user id → store key of the user's session, so a call for a hot
    /// session does not read the store's user index. Checked against the session every time;
    /// a login of the same user elsewhere is picked up within `USER_INDEX_TTL`.
    user_keys: moka::future::Cache<String, Arc<str>>,
    endpoint: Arc<TokenEndpoint>,
    lifetime: Duration,
    metrics: Arc<Metrics>,
    /// `token_cache_total{result}` children, resolved once: counted on every egress call.
    token_cache_hits: prometheus::IntCounter,
    token_cache_misses: prometheus::IntCounter,
}

impl Sessions {
    pub fn new(
        store: Arc<dyn Store>,
        keys: Keyring,
        endpoint: Arc<TokenEndpoint>,
        lifetime: Duration,
        metrics: Arc<Metrics>,
    ) -> Sessions {
        let cache: moka::future::Cache<Arc<str>, Arc<LiveSession>> = moka::future::Cache::builder()
            .max_capacity(CACHE_CAPACITY)
            .time_to_idle(CACHE_IDLE)
            .build();
        if let Some(mut changes) = store.invalidations() {
            let cache = cache.clone();
            let forget = async move {
                while let Some(change) = changes.recv().await {
                    match change {
                        store::Invalidation::Key(key) => cache.invalidate(key.as_str()).await,
                        store::Invalidation::All => cache.invalidate_all(),
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
            .max_capacity(CACHE_CAPACITY)
            .time_to_live(USER_INDEX_TTL)
            .build();
        Sessions {
            store,
            keys,
            cache,
            user_keys,
            endpoint,
            lifetime,
            token_cache_hits: metrics.token_cache.with_label_values(&["hit"]),
            token_cache_misses: metrics.token_cache.with_label_values(&["miss"]),
            metrics,
        }
    }

    pub fn keys(&self) -> &Keyring {
        &self.keys
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Logs a store failure (the store wrapper has counted it).
    fn store_error(&self, e: StoreError) -> StoreError {
        tracing::error!(error = %e, "session store operation failed");
        e
    }

    // -- login ---------------------------------------------------------------------------------

    /// Starts a login: remembers it under its state and returns the authorize URL and the
    /// value of the login cookie that binds the state to this browser.
    pub async fn begin_login(
        &self,
        return_to: String,
        scopes: &[String],
    ) -> Result<(String, String), StoreError> {
        let req = self.endpoint.authorize(scopes);
        let pending = PendingLogin {
            return_to,
            pkce_verifier: req.pkce_verifier.map(Secret::runtime),
        };
        let key = self.keys.index_key("state", &req.state);
        let sealed = self.seal_record(&key, &pending)?;
        self.store
            .put(Namespace::Pending, &key, sealed, LOGIN_TTL)
            .await
            .map_err(|e| self.store_error(e))?;
        let cookie = self
            .keys
            .seal(Purpose::LoginCookie, b"", req.state.as_bytes());
        Ok((req.url.to_string(), cookie))
    }

    /// Completes a login from the callback. The state must match the browser's login cookie
    /// and a pending login, which is consumed: a replayed callback finds nothing.
    pub async fn finish_login(
        &self,
        login_cookie: Option<&str>,
        state: Option<&str>,
        code: Option<&str>,
        error: Option<&str>,
    ) -> Result<NewSession, LoginError> {
        let cookie_state = login_cookie
            .and_then(|c| self.keys.open(Purpose::LoginCookie, b"", c))
            .ok_or(LoginError::NoLoginCookie)?;
        let state = state.ok_or(LoginError::StateMismatch)?;
        if !bool::from(cookie_state.ct_eq(state.as_bytes())) {
            return Err(LoginError::StateMismatch);
        }
        let key = self.keys.index_key("state", state);
        let raw = self
            .store
            .take(Namespace::Pending, &key)
            .await
            .map_err(|e| self.store_error(e))?
            .ok_or(LoginError::UnknownState)?;
        let pending: PendingLogin = self
            .open_record(&key, &raw)
            .ok_or(LoginError::UnknownState)?;

        if let Some(error) = error {
            return Err(if error == "access_denied" {
                LoginError::Denied
            } else {
                LoginError::Provider(sanitize_code(error))
            });
        }
        let code = code
            .filter(|c| !c.is_empty())
            .ok_or(LoginError::MissingCode)?;
        let verifier = pending.pkce_verifier.map(|v| v.expose().to_string());
        let grant = self
            .endpoint
            .exchange_code(code.to_string(), verifier)
            .await
            .map_err(|e| match e {
                TokenError::InvalidGrant => LoginError::CodeRefused,
                other => LoginError::Token(other),
            })?;
        let refresh_token = grant
            .refresh_token
            .clone()
            .ok_or_else(|| LoginError::Provider("no refresh token in the token answer".into()))?;
        let profile = self
            .endpoint
            .profile(&grant.access_token)
            .await
            .map_err(LoginError::Token)?;

        let sid = crypto::random_id();
        let now = now_ms();
        let record = SessionRecord {
            user_id: profile.id,
            display_name: profile.display_name,
            scopes: Scopes::new(&grant.scopes),
            access_token: grant.access_token.clone(),
            access_expires_at_ms: grant.expires_at_ms,
            access_lifetime_ms: grant.lifetime.as_millis() as u64,
            refresh_token,
            created_at_ms: now,
            updated_at_ms: now,
            expires_at_ms: now + self.lifetime.as_millis() as u64,
        };
        let key: Arc<str> = self.keys.index_key("session", &sid).into();
        self.persist(&key, &record).await?;
        self.store
            .put(
                Namespace::UserIndex,
                &record.user_id,
                key.as_bytes().to_vec(),
                self.lifetime,
            )
            .await
            .map_err(|e| self.store_error(e))?;
        let user_id = record.user_id.clone();
        self.user_keys
            .insert(user_id.clone(), Arc::clone(&key))
            .await;
        self.cache
            .insert(key.clone(), Arc::new(live(key, record)))
            .await;
        Ok(NewSession {
            cookie_value: self.keys.seal(Purpose::SessionCookie, b"", sid.as_bytes()),
            return_to: pending.return_to,
            user_id,
        })
    }

    // -- lookup --------------------------------------------------------------------------------

    /// The session a cookie value names, if it is valid and alive.
    pub async fn by_cookie(&self, cookie: &str) -> Result<Option<Arc<LiveSession>>, StoreError> {
        let Some(sid) = self.keys.open(Purpose::SessionCookie, b"", cookie) else {
            return Ok(None);
        };
        let Ok(sid) = String::from_utf8(sid) else {
            return Ok(None);
        };
        let key = self.keys.index_key("session", &sid);
        if let Some(found) = self.by_key(&key).await? {
            return Ok(Some(found));
        }
        // Written before a secret rotation?
        match self.keys.previous_index_key("session", &sid) {
            Some(old) => self.by_key(&old).await,
            None => Ok(None),
        }
    }

    /// The session stored under `key` (memory first, then the store).
    pub async fn by_key(&self, key: &str) -> Result<Option<Arc<LiveSession>>, StoreError> {
        if let Some(s) = self.cache.get(key).await {
            if !s.is_expired() {
                return Ok(Some(s));
            }
            self.cache.invalidate(key).await;
            return Ok(None);
        }
        let Some(record) = self.load_record(key).await? else {
            return Ok(None);
        };
        let key: Arc<str> = key.into();
        let session = Arc::new(live(Arc::clone(&key), record));
        // Two concurrent misses may both load; either copy is the stored one.
        let entry = self.cache.entry(key).or_insert(session).await.into_value();
        Ok(Some(entry))
    }

    /// The latest session of a user (trusted-header mode).
    pub async fn by_user_id(&self, user_id: &str) -> Result<Option<Arc<LiveSession>>, StoreError> {
        if let Some(key) = self.user_keys.get(user_id).await {
            if let Some(s) = self.by_key(&key).await?.filter(|s| s.is_user(user_id)) {
                return Ok(Some(s));
            }
            // Ended (here or on another replica): ask the store's index again.
            self.user_keys.invalidate(user_id).await;
        }
        let key = self
            .store
            .get(Namespace::UserIndex, user_id)
            .await
            .map_err(|e| self.store_error(e))?;
        let Some(key) = key.and_then(|k| String::from_utf8(k).ok()) else {
            return Ok(None);
        };
        // The index is not sealed (its key is the user id): believe it only when the sealed
        // record it points at is that user's, so a write to the store cannot hand one user's
        // session to a request for another.
        let found = self.by_key(&key).await?.filter(|s| s.is_user(user_id));
        if let Some(s) = &found {
            self.user_keys
                .insert(user_id.to_string(), Arc::clone(&s.key))
                .await;
        }
        Ok(found)
    }

    // -- tokens --------------------------------------------------------------------------------

    /// A usable access token for the session: the cached one while fresh, else a refreshed
    /// one. Only one request per session refreshes; the others wait and use its result.
    pub async fn access_token(&self, session: &LiveSession) -> Result<Secret, SessionError> {
        if let Some(token) = session.usable_token() {
            self.token_cache_hits.inc();
            return Ok(token);
        }
        self.token_cache_misses.inc();
        let _refreshing = session.refresh.lock().await;
        // Whoever held the lock before us may have refreshed already.
        if let Some(token) = session.usable_token() {
            return Ok(token);
        }
        if session.is_expired() {
            return Err(SessionError::Ended);
        }
        // Across replicas: one holder of the store lock refreshes; the others wait for the
        // record it stores.
        let lock = format!("refresh:{}", session.key);
        let owner = crypto::random_id();
        let deadline = std::time::Instant::now() + REFRESH_LOCK_TTL + Duration::from_secs(2);
        loop {
            if self
                .store
                .lock(&lock, &owner, REFRESH_LOCK_TTL)
                .await
                .map_err(|e| self.store_error(e))?
            {
                let result = self.refresh_locked(session).await;
                if let Err(e) = self.store.unlock(&lock, &owner).await {
                    // The lock expires by itself.
                    self.store_error(e);
                }
                return result;
            }
            tokio::time::sleep(REFRESH_POLL).await;
            if let Some(token) = self.adopt_stored(session).await? {
                return Ok(token);
            }
            if std::time::Instant::now() > deadline {
                return Err(SessionError::Token(TokenError::Unavailable(
                    "another replica holds the refresh lock".into(),
                )));
            }
        }
    }

    /// Takes the stored record if it is newer than ours (another replica refreshed: the
    /// re-read oauth2-proxy and Nango both had to add after races logged users out), and
    /// returns its token if that is usable.
    async fn adopt_stored(&self, session: &LiveSession) -> Result<Option<Secret>, SessionError> {
        let Some(stored) = self.load_record(&session.key).await? else {
            // Ended elsewhere (logout, revoked).
            self.cache.invalidate(&session.key).await;
            return Err(SessionError::Ended);
        };
        {
            let mut local = session.record.write().unwrap_or_else(|p| p.into_inner());
            if stored.updated_at_ms > local.updated_at_ms {
                *local = stored;
            }
        }
        Ok(session.usable_token())
    }

    /// The refresh itself, with this replica holding the store lock.
    async fn refresh_locked(&self, session: &LiveSession) -> Result<Secret, SessionError> {
        if let Some(token) = self.adopt_stored(session).await? {
            return Ok(token);
        }
        let refresh_token = session.record().refresh_token;
        match self.endpoint.refresh(&refresh_token).await {
            Ok(grant) => {
                self.metrics
                    .token_refreshes
                    .with_label_values(&["ok"])
                    .inc();
                let updated = {
                    let mut r = session.record.write().unwrap_or_else(|p| p.into_inner());
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
                };
                // If the store is down the refreshed record still lives in memory; the error
                // is counted and logged by `persist`.
                let _ = self.persist(&session.key, &updated).await;
                tracing::debug!("refreshed a user token");
                Ok(grant.access_token)
            }
            Err(TokenError::InvalidGrant) => {
                self.metrics
                    .token_refreshes
                    .with_label_values(&["invalid_grant"])
                    .inc();
                tracing::info!("refresh token refused (invalid_grant): ending the session");
                // Best effort: the cache entry is gone either way.
                let _ = self.end(&session.key).await;
                Err(SessionError::Ended)
            }
            Err(e) => {
                self.metrics
                    .token_refreshes
                    .with_label_values(&["transient"])
                    .inc();
                tracing::warn!(error = %e, "token refresh failed; the session is kept");
                Err(SessionError::Token(e))
            }
        }
    }

    /// Ends a session everywhere this replica knows of (logout, revoked refresh token).
    pub async fn end(&self, key: &str) -> Result<(), StoreError> {
        let cached = self.cache.remove(key).await;
        let result = self.store.delete(Namespace::Session, key).await;
        if result.is_ok() {
            if let Err(e) = self.store.publish_invalidation(key).await {
                self.store_error(e);
            }
        }
        if let Some(s) = cached {
            let user = s.user_id();
            self.user_keys.invalidate(&user).await;
            // Only drop the index when it still points at this session.
            if let Ok(Some(k)) = self.store.get(Namespace::UserIndex, &user).await {
                if k == key.as_bytes() {
                    let _ = self.store.delete(Namespace::UserIndex, &user).await;
                }
            }
        }
        result.map(|_| ()).map_err(|e| self.store_error(e))
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
        self.cache.run_pending_tasks().await;
        match self.store.count(Namespace::Session).await {
            Ok(n) => self.metrics.active_sessions.set(n as i64),
            Err(e) => {
                self.store_error(e);
            }
        }
    }

    // -- records -------------------------------------------------------------------------------

    /// A record as stored: JSON, sealed and bound to its store key.
    fn seal_record<T: Serialize>(&self, key: &str, record: &T) -> Result<Vec<u8>, StoreError> {
        let plain = serde_json::to_vec(record).map_err(|e| StoreError {
            backend: self.store.backend(),
            op: "encode",
            detail: e.to_string(),
        })?;
        Ok(self
            .keys
            .seal(Purpose::StoredRecord, key.as_bytes(), &plain)
            .into_bytes())
    }

    async fn persist(&self, key: &str, record: &SessionRecord) -> Result<(), StoreError> {
        let sealed = self.seal_record(key, record)?;
        let ttl = Duration::from_millis(record.expires_at_ms.saturating_sub(now_ms()));
        self.store
            .put(Namespace::Session, key, sealed, ttl)
            .await
            .map_err(|e| self.store_error(e))
    }

    /// The live stored session record under `key`, if any.
    async fn load_record(&self, key: &str) -> Result<Option<SessionRecord>, StoreError> {
        let raw = self
            .store
            .get(Namespace::Session, key)
            .await
            .map_err(|e| self.store_error(e))?;
        Ok(raw
            .and_then(|raw| self.open_record::<SessionRecord>(key, &raw))
            .filter(|r| r.expires_at_ms > now_ms()))
    }

    fn open_record<T: serde::de::DeserializeOwned>(&self, key: &str, raw: &[u8]) -> Option<T> {
        let sealed = std::str::from_utf8(raw).ok()?;
        let plain = self
            .keys
            .open(Purpose::StoredRecord, key.as_bytes(), sealed)?;
        serde_json::from_slice(&plain).ok()
    }
}

fn live(key: Arc<str>, record: SessionRecord) -> LiveSession {
    LiveSession {
        key,
        record: RwLock::new(record),
        refresh: tokio::sync::Mutex::new(()),
    }
}

/// An OAuth error code from a query string, reduced to the characters RFC 6749 §4.1.2.1
/// allows, so it can be shown and logged without injecting anything.
fn sanitize_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_stored_as_a_list_and_equal_sets_share_one_string() {
        let a = Scopes::new(&["user-read-private", "user-read-email"]);
        assert_eq!(a.as_str(), "user-read-private user-read-email");
        assert_eq!(
            serde_json::to_string(&a).expect("json"),
            r#"["user-read-private","user-read-email"]"#
        );
        let b: Scopes =
            serde_json::from_str(r#"["user-read-private","user-read-email"]"#).expect("json");
        assert_eq!(a, b);
        assert!(Arc::ptr_eq(&a.0, &b.0), "one allocation for equal sets");
        assert_eq!(
            b.iter().collect::<Vec<_>>(),
            ["user-read-private", "user-read-email"]
        );
        let none: Scopes = serde_json::from_str("[]").expect("json");
        assert!(none.is_empty());
        assert_eq!(none.iter().count(), 0);
    }
    use crate::config::Config;

    const HOUR: Duration = Duration::from_secs(3600);

    fn sessions() -> Sessions {
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
        let endpoint =
            Arc::new(TokenEndpoint::new(&config.spotify, metrics.clone()).expect("endpoint"));
        Sessions::new(
            Arc::new(store::MemoryStore::default()),
            Keyring::new(&config.session.secret, None),
            endpoint,
            HOUR,
            metrics,
        )
    }

    fn record(user: &str) -> SessionRecord {
        let now = now_ms();
        SessionRecord {
            user_id: user.into(),
            display_name: None,
            scopes: Scopes::default(),
            access_token: Secret::runtime(format!("access-{user}")),
            access_expires_at_ms: now + 3_600_000,
            access_lifetime_ms: 3_600_000,
            refresh_token: Secret::runtime(format!("refresh-{user}")),
            created_at_ms: now,
            updated_at_ms: now,
            expires_at_ms: now + 3_600_000,
        }
    }

    #[tokio::test]
    async fn the_user_index_is_believed_only_for_that_users_record() {
        let s = sessions();
        s.persist("key-alice", &record("alice")).await.expect("put");
        s.persist("key-bob", &record("bob")).await.expect("put");
        // Someone with write access to the store points alice's index at bob's session.
        let index = |user: &'static str, key: &'static str| {
            s.store
                .put(Namespace::UserIndex, user, key.as_bytes().to_vec(), HOUR)
        };
        index("alice", "key-bob").await.expect("put");
        index("bob", "key-bob").await.expect("put");
        assert!(s.by_user_id("alice").await.expect("store").is_none());
        let bob = s.by_user_id("bob").await.expect("store").expect("bob");
        assert_eq!(bob.user_id(), "bob");
    }
}
