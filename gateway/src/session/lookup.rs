//! Finding a session: by the cookie a browser sends, by the store key an assertion names, or
//! by user id (the trusted-header mode). Memory first, then the store.

use std::sync::Arc;

use super::opened::Named;
use super::record::account_index;
use super::record::LiveSession;
use super::registry::Sessions;
use super::streams::StreamGuard;
use crate::crypto::{Keyring, Purpose};
use crate::secret::{SessionId, SessionKey};
use crate::store::{Namespace, StoreError};
use crate::telemetry::traces;
use opentelemetry::KeyValue;

impl Sessions {
    /// The session a cookie value names, if it is valid and alive. What a cookie opens to is
    /// remembered (`opened`); whether its session lives is asked every time.
    pub async fn by_cookie(&self, cookie: &str) -> Result<Option<Arc<LiveSession>>, StoreError> {
        let keys = self.keys();
        let named = match self.opened.get(&keys, cookie) {
            Some(named) => named,
            None => {
                let Some(named) = open_cookie(&keys, cookie) else {
                    return Ok(None);
                };
                self.opened.put(&keys, cookie, &named);
                named
            }
        };
        if let Some(found) = self.by_key(&named.current).await? {
            return Ok(Some(found));
        }
        // Written before a secret rotation?
        match &named.previous {
            Some(old) => self.by_key(old).await,
            None => Ok(None),
        }
    }

    /// The session stored under `key` (memory first, then the store), in a `session lookup`
    /// span while a traced request asks (its store operations are the span's children).
    pub async fn by_key(&self, key: &SessionKey) -> Result<Option<Arc<LiveSession>>, StoreError> {
        let Some(span) = traces::child_of_current("session lookup") else {
            return self.find_by_key(key).await;
        };
        let found = traces::in_scope(Some(span.scope()), self.find_by_key(key)).await;
        let (outcome, error) = match &found {
            Ok(Some(_)) => ("found", None),
            Ok(None) => ("none", None),
            Err(_) => ("store_error", Some("store")),
        };
        span.set([KeyValue::new("gateway.session.lookup", outcome)]);
        span.end(error);
        found
    }

    async fn find_by_key(&self, key: &SessionKey) -> Result<Option<Arc<LiveSession>>, StoreError> {
        if let Some(s) = self.cache.get(key) {
            if !s.is_expired() {
                return Ok(Some(s));
            }
            self.forget_expired(key).await;
            return Ok(None);
        }
        if self.has_ended(key) {
            return Ok(None);
        }
        // A refreshed session the store has not taken yet: its stored record is older.
        if let Some(s) = self.unsaved(key) {
            return Ok(Some(s));
        }
        let Some(record) = self.load_record(key).await? else {
            return Ok(None);
        };
        let session = Arc::new(LiveSession::new(key.clone(), record));
        // Two concurrent misses may both load; either copy is the stored one.
        let entry = self.cache.get_or_insert(key.clone(), session);
        // The session may have ended while we read it (here, or announced by another
        // replica): `end` marks it ended before it drops the cached copy, so checking after
        // filling the cache cannot miss it, and the copy we put there goes again.
        if self.has_ended(key) {
            entry.mark_ended();
            self.cache.remove(key);
            return Ok(None);
        }
        Ok(Some(entry))
    }

    /// The latest session of a user (trusted-header mode).
    pub async fn by_user_id(&self, user_id: &str) -> Result<Option<Arc<LiveSession>>, StoreError> {
        self.by_index(user_id, |s| s.is_user(user_id)).await
    }

    /// The latest session of the user with this Spotify `account_id` (trusted-header mode).
    pub async fn by_account_id(
        &self,
        account_id: &str,
    ) -> Result<Option<Arc<LiveSession>>, StoreError> {
        let index = account_index(account_id);
        self.by_index(&index, |s| {
            s.with_record(|r| r.account_id.as_deref() == Some(account_id))
        })
        .await
    }

    /// A user id or an account id: whichever names a live session.
    pub async fn by_identity(&self, id: &str) -> Result<Option<Arc<LiveSession>>, StoreError> {
        // A hot account id is answered from memory, without asking the store for a user id
        // first.
        if self.user_keys.contains_key(&account_index(id)) {
            if let Some(s) = self.by_account_id(id).await? {
                return Ok(Some(s));
            }
        }
        match self.by_user_id(id).await? {
            Some(s) => Ok(Some(s)),
            None => self.by_account_id(id).await,
        }
    }

    /// The session the `UserIndex` entry `index` points at, if `owns` says it is that
    /// identity's.
    async fn by_index(
        &self,
        index: &str,
        owns: impl Fn(&LiveSession) -> bool,
    ) -> Result<Option<Arc<LiveSession>>, StoreError> {
        if let Some(key) = self.user_keys.get(index).await {
            if let Some(s) = self.by_key(&key).await?.filter(|s| owns(s)) {
                return Ok(Some(s));
            }
            // Ended (here or on another replica): ask the store's index again.
            self.user_keys.invalidate(index).await;
        }
        let key = self
            .store
            .get(Namespace::UserIndex, index)
            .await
            .map_err(|e| self.store_error(e))?;
        let Some(key) = key.and_then(|k| String::from_utf8(k).ok().map(SessionKey::new)) else {
            return Ok(None);
        };
        // The index is not sealed (its key is the user id): believe it only when the sealed
        // record it points at is that user's, so a write to the store cannot hand one user's
        // session to a request for another.
        let found = self.by_key(&key).await?.filter(|s| owns(s));
        if let Some(s) = &found {
            self.user_keys
                .insert(index.to_string(), s.key.clone())
                .await;
        }
        Ok(found)
    }
}

/// A request that stays open (a WebSocket, an event stream) joins its session's streams
/// (`streams`), closed when the session ends.
impl Sessions {
    /// Registers a stream of `session`, closed when the session ends (`close` does that; it
    /// must not block). `None` when the session has ended meanwhile: whoever ends a session
    /// marks it ended before closing its streams, so a stream registered after that close sees
    /// the mark, and one registered before it is closed by it.
    pub fn join_streams(
        &self,
        session: &LiveSession,
        close: impl FnOnce() + Send + 'static,
    ) -> Option<StreamGuard> {
        let stream = self.streams.open(session, close);
        if session.is_ended() || self.has_ended(&session.key) {
            return None;
        }
        Some(stream)
    }

    /// Closes the streams of sessions the store no longer holds (ended on a replica whose
    /// invalidation this one missed), as the invalidation follower does after lost messages.
    #[cfg(test)]
    pub(crate) async fn close_streams_of_gone_sessions(&self) {
        super::streams::close_streams_of_gone_sessions(&*self.store, &self.streams).await;
    }
}

/// The store keys a session cookie names, if it opens with `keys`.
fn open_cookie(keys: &Keyring, cookie: &str) -> Option<Named> {
    let sid = keys.open(Purpose::SessionCookie, b"", cookie)?;
    let sid = String::from_utf8(sid).map(SessionId::new).ok()?;
    Some(Named {
        current: SessionKey::new(keys.index_key("session", sid.expose())),
        previous: keys
            .previous_index_key("session", sid.expose())
            .map(SessionKey::new),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::registry::tests::{record, sessions};
    use crate::secret::SessionKey;
    use crate::store::Namespace;

    const HOUR: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn the_user_index_is_believed_only_for_that_users_record() {
        let s = sessions();
        s.persist(&SessionKey::new("key-alice"), &record("alice"))
            .await
            .expect("put");
        s.persist(&SessionKey::new("key-bob"), &record("bob"))
            .await
            .expect("put");
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

    #[tokio::test]
    async fn an_account_id_finds_only_the_session_with_that_account() {
        let s = sessions();
        let mut alice = record("alice");
        alice.account_id = Some("acc-alice".into());
        let mut bob = record("bob");
        bob.account_id = Some("acc-bob".into());
        s.persist(&SessionKey::new("key-alice"), &alice)
            .await
            .expect("put");
        s.persist(&SessionKey::new("key-bob"), &bob)
            .await
            .expect("put");
        let index = |name: &'static str, key: &'static str| {
            s.store
                .put(Namespace::UserIndex, name, key.as_bytes().to_vec(), HOUR)
        };
        index("account:acc-alice", "key-alice").await.expect("put");
        // Pointed at the wrong record by someone who can write to the store.
        index("account:acc-bob", "key-alice").await.expect("put");
        let found = s
            .by_identity("acc-alice")
            .await
            .expect("store")
            .expect("alice");
        assert_eq!(found.user_id(), "alice");
        // Hot now: found from memory the same way.
        let again = s
            .by_account_id("acc-alice")
            .await
            .expect("store")
            .expect("alice");
        assert_eq!(again.user_id(), "alice");
        assert!(s.by_account_id("acc-bob").await.expect("store").is_none());
        assert!(s.by_identity("acc-nobody").await.expect("store").is_none());
    }
}
