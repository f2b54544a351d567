//! The store's contract: one small trait every backend implements, the record kinds it keeps
//! apart, and its errors. It knows no backend; `store::open` (mod.rs) is the one factory.
//!
//! Values are opaque, already-sealed bytes (see `crypto`): a backend never sees a token in
//! clear. Every value has an expiry; reads ignore expired values and `purge_expired` removes
//! them.

use std::time::Duration;

use async_trait::async_trait;

use crate::clock::now_ms;

/// Kinds of records; each backend keeps them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Namespace {
    /// Session records (user, scopes, tokens), by hashed session id.
    Session,
    /// Logins between `/auth/login` and `/auth/callback`, by hashed state.
    Pending,
    /// Latest session of a user, by user id (for the trusted-header mode).
    UserIndex,
}

impl Namespace {
    pub const ALL: [Namespace; 3] = [Namespace::Session, Namespace::Pending, Namespace::UserIndex];

    pub fn name(self) -> &'static str {
        match self {
            Namespace::Session => "sessions",
            Namespace::Pending => "pending",
            Namespace::UserIndex => "user_index",
        }
    }
}

/// One page of [`Store::users_page`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsersPage {
    pub users: Vec<String>,
    /// Pass as `after` for the next page; `None` when this page is the last.
    pub next: Option<String>,
}

impl UsersPage {
    /// A page of the first `limit` of `candidates` (ascending, more than `limit` when more
    /// follow).
    pub fn of(mut candidates: Vec<String>, limit: usize) -> UsersPage {
        let more = candidates.len() > limit;
        candidates.truncate(limit);
        let next = if more {
            candidates.last().cloned()
        } else {
            None
        };
        UsersPage {
            users: candidates,
            next,
        }
    }
}

/// A change another replica made that this replica's memory must forget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// One session (store key) changed or ended.
    Key(String),
    /// A user left (disconnected, revoked, `invalid_grant`): forget their shared answers.
    Answers(PurgeNotice),
    /// Messages may have been missed (the subscription was down): forget every session and
    /// every user's answers.
    All,
}

/// The user whose shared answers every replica forgets (`quota::purge`), named as the store
/// names what it indexes: by keyed hashes (`crypto::Keyring::index_key`) of the answers' owner
/// line, never by the user id. One hash per session secret in use (current, and previous
/// during a rotation), so replicas that have not reloaded the new secret yet still match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeNotice {
    pub owner_hashes: Vec<String>,
}

impl PurgeNotice {
    /// The most hashes a notice carries (current and previous secret).
    const MAX_HASHES: usize = 2;

    /// The wire form on a shared store: the hashes separated by spaces.
    pub fn encode(&self) -> String {
        self.owner_hashes.join(" ")
    }

    /// A notice of 1 or 2 URL-safe base64 hashes, else `None`.
    pub fn decode(text: &str) -> Option<PurgeNotice> {
        let owner_hashes: Vec<String> = text.split(' ').map(str::to_string).collect();
        let well_formed = |h: &String| {
            !h.is_empty()
                && h.len() <= 64
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        (owner_hashes.len() <= Self::MAX_HASHES && owner_hashes.iter().all(well_formed))
            .then_some(PurgeNotice { owner_hashes })
    }
}

/// A 429 cool-down one replica learnt from Spotify, for every replica to keep in memory
/// (`quota::CoolDown`): no call leaves for `hold_ms` from when it arrives. A duration rather
/// than an instant, so replicas' clocks need not agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoolDownNotice {
    pub hold_ms: u64,
    /// Spotify said `QUOTA_EXCEEDED` (the account's quota), not the rolling rate limit.
    pub quota_exceeded: bool,
    /// The app whose call Spotify refused (`[[apps]]`); `None`: the default app (and every
    /// notice of a gateway before `[[apps]]`). Set by the app's view of the store.
    pub app: Option<String>,
}

impl CoolDownNotice {
    /// The wire form on a shared store: `<hold_ms>:<quota_exceeded|rate_limited>`, and
    /// `:<app>` for an app other than the default (a label: `[a-z0-9_-]`).
    pub fn encode(&self) -> String {
        let reason = if self.quota_exceeded {
            "quota_exceeded"
        } else {
            "rate_limited"
        };
        match &self.app {
            Some(app) => format!("{}:{reason}:{app}", self.hold_ms),
            None => format!("{}:{reason}", self.hold_ms),
        }
    }

    pub fn decode(text: &str) -> Option<CoolDownNotice> {
        let (ms, rest) = text.split_once(':')?;
        let (reason, app) = match rest.split_once(':') {
            Some((reason, app)) => (reason, Some(app)),
            None => (rest, None),
        };
        let quota_exceeded = match reason {
            "quota_exceeded" => true,
            "rate_limited" => false,
            _ => return None,
        };
        let label = |a: &&str| {
            (1..=32).contains(&a.len())
                && a.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        };
        if app.is_some_and(|a| !label(&a)) {
            return None;
        }
        Some(CoolDownNotice {
            hold_ms: ms.parse().ok()?,
            quota_exceeded,
            app: app.map(str::to_string),
        })
    }
}

/// Calls one replica made while the shared budget could not be reached, by age (how long ago
/// each went out), for `Store::add_budget_calls`. Ages rather than instants, so replicas'
/// clocks need not agree with Redis's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalCalls {
    /// Every call.
    pub all: Vec<Duration>,
    /// The app-token calls among them, again.
    pub app: Vec<Duration>,
}

/// What kind of failure a store operation met: callers branch on this, never on the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The store did not answer or could not do the I/O (Redis down, disk error, timeout):
    /// retry later; nothing was lost.
    Unavailable,
    /// A value could not be encoded or decoded.
    Corrupt,
    /// Another party holds what this operation needs (the redb file is open in another
    /// process).
    Conflict,
}

impl StoreErrorKind {
    /// The `kind` label of `store_errors_total`.
    pub fn label(self) -> &'static str {
        match self {
            StoreErrorKind::Unavailable => "unavailable",
            StoreErrorKind::Corrupt => "corrupt",
            StoreErrorKind::Conflict => "conflict",
        }
    }
}

/// What every store operation returns.
pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, thiserror::Error)]
#[error("session store ({backend}) failed to {op}: {detail}")]
pub struct StoreError {
    pub kind: StoreErrorKind,
    pub backend: &'static str,
    pub op: &'static str,
    pub detail: String,
}

impl StoreError {
    pub fn new(
        kind: StoreErrorKind,
        backend: &'static str,
        op: &'static str,
        detail: impl Into<String>,
    ) -> StoreError {
        StoreError {
            kind,
            backend,
            op,
            detail: detail.into(),
        }
    }

    /// The common case: the store could not be reached or did not do the I/O.
    pub fn unavailable(
        backend: &'static str,
        op: &'static str,
        detail: impl Into<String>,
    ) -> StoreError {
        Self::new(StoreErrorKind::Unavailable, backend, op, detail)
    }
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Backend name for metrics and messages.
    fn backend(&self) -> &'static str;
    async fn get(&self, ns: Namespace, key: &str) -> StoreResult<Option<Vec<u8>>>;
    async fn put(&self, ns: Namespace, key: &str, value: Vec<u8>, ttl: Duration)
        -> StoreResult<()>;
    /// Removes a value; true if it was there.
    async fn delete(&self, ns: Namespace, key: &str) -> StoreResult<bool>;
    /// Reads and removes a value in one step: at most one caller gets it (single-use logins).
    async fn take(&self, ns: Namespace, key: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Removes expired values; returns how many.
    async fn purge_expired(&self) -> StoreResult<usize>;
    /// Live values in a namespace.
    async fn count(&self, ns: Namespace) -> StoreResult<usize>;
    /// Whether the store answers, and for the file store whether it takes a write now (for
    /// `/readyz`).
    async fn ping(&self) -> StoreResult<()>;

    // -- the user → sessions index ---------------------------------------------------------
    // Every session a user has, by store key, so all of them can be found at once: a user who
    // disconnects, an operator who revokes a user. Each entry expires with its session (`ttl`);
    // a stale entry (a session that ended otherwise) names a key that opens nothing.

    /// Adds `session_key` to `user_id`'s sessions, for `ttl`.
    async fn add_user_session(
        &self,
        user_id: &str,
        session_key: &str,
        ttl: Duration,
    ) -> StoreResult<()>;
    /// The keys of `user_id`'s sessions whose entry has not expired, in no particular order.
    async fn user_sessions(&self, user_id: &str) -> StoreResult<Vec<String>>;
    /// Removes `session_key` from `user_id`'s sessions; true if it was there.
    async fn remove_user_session(&self, user_id: &str, session_key: &str) -> StoreResult<bool>;
    /// Up to `limit` user ids that have a live entry in the index, in ascending byte order,
    /// starting after `after` (exclusive); with the cursor for the next page (the last id
    /// returned) when more may follow, `None` at the end. For the admin API's user list.
    async fn users_page(&self, after: Option<&str>, limit: usize) -> StoreResult<UsersPage>;

    /// Takes the lock `name` for `ttl` unless another owner holds it; true when taken. A
    /// single-process store needs no lock across processes (the caller also holds a local
    /// one), so the default always succeeds.
    async fn lock(&self, _name: &str, _owner: &str, _ttl: Duration) -> StoreResult<bool> {
        Ok(true)
    }
    /// Releases the lock `name` if `owner` still holds it.
    async fn unlock(&self, _name: &str, _owner: &str) -> StoreResult<()> {
        Ok(())
    }
    /// Tells other replicas to forget their cached copy of `key`.
    async fn publish_invalidation(&self, _key: &str) -> StoreResult<()> {
        Ok(())
    }
    /// Tells the other replicas to forget a user's shared answers (`Invalidation::Answers`),
    /// in order after the invalidations this replica published before.
    async fn publish_purge(&self, _notice: &PurgeNotice) -> StoreResult<()> {
        Ok(())
    }
    /// Invalidations published by other replicas; `Some` once for a shared store.
    fn invalidations(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Invalidation>> {
        None
    }
    /// Tells every replica (this one included) about a 429 cool-down. A single-process store
    /// has no one to tell: the caller keeps its own in memory.
    async fn publish_cool_down(&self, _notice: CoolDownNotice) -> StoreResult<()> {
        Ok(())
    }
    /// Cool-downs published by any replica, and on (re)subscribing the one still running;
    /// `Some` once for a shared store.
    fn cool_downs(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<CoolDownNotice>> {
        None
    }
    /// Takes one call from the budget of developer account `account` (`None`: the default
    /// account, a single-app gateway's), `limit` per rolling `window` shared by every replica
    /// (`quota::Budget`); each account's window is its own. With `app_limit`, an app-token call, which also needs fewer than
    /// `app_limit` app-token calls in the window. `Some(None)` when taken, `Some(Some(wait))`
    /// when full (room in `wait`). `None`: this store shares no budget, and the caller counts
    /// in memory.
    async fn take_budget(
        &self,
        _account: Option<&str>,
        _limit: u32,
        _app_limit: Option<u32>,
        _window: Duration,
    ) -> StoreResult<Option<Option<Duration>>> {
        Ok(None)
    }
    /// Adds `calls`, made while the shared budget could not be reached (counted in memory
    /// meanwhile), to the shared window of `window` of developer account `account`: Spotify
    /// counted them, so every replica's `take_budget` must too. A store that shares no budget
    /// has nothing to add them to.
    async fn add_budget_calls(
        &self,
        _account: Option<&str>,
        _calls: &LocalCalls,
        _window: Duration,
    ) -> StoreResult<()> {
        Ok(())
    }
}

/// The stored form in the embedded backends (memory, file): expiry (unix ms, big-endian),
/// then the value. Redis expires values itself.
pub(super) fn frame(value: &[u8], ttl: Duration) -> Vec<u8> {
    let expires = now_ms().saturating_add(ttl.as_millis() as u64);
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&expires.to_be_bytes());
    out.extend_from_slice(value);
    out
}

/// The value of a framed record if it has not expired.
pub(super) fn unframe(raw: &[u8]) -> Option<&[u8]> {
    let (head, value) = raw.split_at_checked(8)?;
    let expires = u64::from_be_bytes(head.try_into().ok()?);
    (expires > now_ms()).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_notices_round_trip_and_refuse_garbage() {
        let n = PurgeNotice {
            owner_hashes: vec!["abc-_09".into(), "XYZ".into()],
        };
        assert_eq!(PurgeNotice::decode(&n.encode()), Some(n));
        for bad in ["", "a  b", "a b c", "user:alice", "a\nb", &"x".repeat(65)] {
            assert_eq!(PurgeNotice::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn cool_down_notices_round_trip_and_refuse_garbage() {
        for quota_exceeded in [true, false] {
            for app in [None, Some("radio".to_string())] {
                let n = CoolDownNotice {
                    hold_ms: 2500,
                    quota_exceeded,
                    app,
                };
                assert_eq!(CoolDownNotice::decode(&n.encode()), Some(n));
            }
        }
        assert_eq!(CoolDownNotice::decode("5:rate_limited:Radio!"), None);
        assert_eq!(CoolDownNotice::decode("2500"), None);
        assert_eq!(CoolDownNotice::decode("x:rate_limited"), None);
        assert_eq!(CoolDownNotice::decode("5:other"), None);
    }
}
