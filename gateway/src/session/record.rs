//! A session as it is stored and as a replica holds it: the record (user, scopes, tokens,
//! times), the pending login, and the live copy in memory. Records are sealed as a whole
//! (tokens included) by `registry` before they reach the store.

use crate::telemetry::traces::SpanRef;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use serde::{Deserialize, Serialize};

use crate::clock::now_ms;
use crate::oauth::TokenError;
use crate::secret::{exposed, AccessToken, PkceVerifier, RefreshToken, SessionKey};
use crate::tokens::failure_hold::FailureHold;

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
    /// Spotify's `account_id` (2026), when `/v1/me` gave one; records from before have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    pub display_name: Option<String>,
    pub scopes: Scopes,
    #[serde(with = "exposed")]
    pub access_token: AccessToken,
    pub access_expires_at_ms: u64,
    pub access_lifetime_ms: u64,
    #[serde(with = "exposed")]
    pub refresh_token: RefreshToken,
    pub created_at_ms: u64,
    /// When the refresh token stops working: `session.reauth_after` after the user's
    /// authorization (the login), kept as it is across refreshes. `None` for records written
    /// before the gateway knew of the deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reauth_by_ms: Option<u64>,
    /// Last change (login or refresh): a replica adopts a stored record only if it is newer
    /// than its own copy.
    pub updated_at_ms: u64,
    pub expires_at_ms: u64,
}

/// A login between `/auth/login` and `/auth/callback`.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct PendingLogin {
    pub return_to: String,
    #[serde(with = "exposed::opt")]
    pub pkce_verifier: Option<PkceVerifier>,
}

/// A session in this replica's memory. What a hot session holds is counted, field by field,
/// in benches/README.md ("What a cached session holds"): keep it small, a replica caches up
/// to `CACHE_CAPACITY` of them.
pub struct LiveSession {
    /// Store key (keyed hash of the session id); the memory cache's key shares it.
    pub key: SessionKey,
    record: RwLock<SessionRecord>,
    /// What only a session whose token is being (or was) refreshed needs, made at its first
    /// refresh: most cached sessions never refresh while cached, and checking for a held
    /// failure is then one load, not a lock.
    refresh: OnceLock<Box<RefreshState>>,
    /// Set when the session ends: whoever still holds this copy stops using it.
    ended: AtomicBool,
    /// When it was last used, in seconds of this process' life (`cache`: idle ones go).
    last_used: AtomicU32,
}

/// This process' start, for [`LiveSession::touch`]'s 4-byte stamps.
fn process_secs() -> u32 {
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs()
        .try_into()
        .unwrap_or(u32::MAX)
}

struct RefreshState {
    /// Held by the one refresh of this session's token in flight (`tokens::user`); owned by
    /// the refresh task, so a caller that gives up does not cancel it.
    /// It holds the span of the last refresh made in this turn (`None` untraced), so the
    /// callers that waited for it link their spans to it.
    turn: Arc<tokio::sync::Mutex<Option<SpanRef>>>,
    /// The last failed refresh, shared with everyone who asks until its hold passes.
    failure: FailureHold<TokenError>,
}

impl LiveSession {
    pub fn new(key: SessionKey, record: SessionRecord) -> LiveSession {
        LiveSession {
            key,
            record: RwLock::new(record),
            refresh: OnceLock::new(),
            ended: AtomicBool::new(false),
            last_used: AtomicU32::new(process_secs()),
        }
    }

    /// Used now (the memory cache keeps the recently used).
    pub(super) fn touch(&self) {
        let now = process_secs();
        // A store only when the second changed: lookups on both threads then rarely write
        // the same cache line.
        if self.last_used.load(Ordering::Relaxed) != now {
            self.last_used.store(now, Ordering::Relaxed);
        }
    }

    /// How long since it was last used, to the second.
    pub(super) fn idle_for(&self) -> std::time::Duration {
        let last = self.last_used.load(Ordering::Relaxed);
        std::time::Duration::from_secs(u64::from(process_secs().saturating_sub(last)))
    }

    fn refresh_state(&self) -> &RefreshState {
        self.refresh.get_or_init(|| {
            Box::new(RefreshState {
                turn: Arc::new(tokio::sync::Mutex::new(None)),
                failure: FailureHold::default(),
            })
        })
    }

    pub fn record(&self) -> SessionRecord {
        self.with_record(SessionRecord::clone)
    }

    /// Reads the record in place (no copy); `f` must not block.
    pub fn with_record<T>(&self, f: impl FnOnce(&SessionRecord) -> T) -> T {
        f(&self.record.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Changes the record in place; `f` must not block.
    pub(crate) fn update<T>(&self, f: impl FnOnce(&mut SessionRecord) -> T) -> T {
        f(&mut self.record.write().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn user_id(&self) -> String {
        self.with_record(|r| r.user_id.clone())
    }

    pub fn is_user(&self, user_id: &str) -> bool {
        self.with_record(|r| r.user_id == user_id)
    }

    /// Whether `id` is this session's user id or account id.
    pub fn is_identity(&self, id: &str) -> bool {
        self.with_record(|r| r.user_id == id || r.account_id.as_deref() == Some(id))
    }

    /// Whether the re-consent deadline is within `notice` of now.
    pub fn reauth_due_within(&self, notice: std::time::Duration) -> bool {
        self.with_record(|r| {
            r.reauth_by_ms
                .is_some_and(|by| by <= now_ms() + notice.as_millis() as u64)
        })
    }

    /// Past its lifetime, or ended.
    pub(crate) fn is_expired(&self) -> bool {
        self.is_ended() || self.with_record(|r| r.expires_at_ms <= now_ms())
    }

    pub(crate) fn mark_ended(&self) {
        self.ended.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    /// Waits for this session's turn to refresh its token (`tokens::user`): one refresh at a
    /// time. The turn is owned, so the refresh task can hold it after its caller gave up.
    pub(crate) async fn refresh_turn(&self) -> tokio::sync::OwnedMutexGuard<Option<SpanRef>> {
        Arc::clone(&self.refresh_state().turn).lock_owned().await
    }

    /// The error of the last refresh while its hold lasts.
    pub(crate) fn held_failure(&self) -> Option<TokenError> {
        self.refresh.get()?.failure.held()
    }

    /// A refresh failed (transiently): hold its answer, longer for each failure in a row.
    pub(crate) fn hold_failure(&self, error: TokenError) {
        self.refresh_state().failure.fail(error);
    }

    /// A refresh worked: the next failure starts the backoff afresh.
    pub(crate) fn clear_failure(&self) {
        if let Some(state) = self.refresh.get() {
            state.failure.clear();
        }
    }

    /// Spotify answered 401 to `token`: treat it as expired so the next use refreshes. A
    /// token that was already replaced by a refresh is left alone.
    pub fn token_rejected(&self, token: &AccessToken) {
        self.update(|r| {
            if r.access_token == *token {
                r.access_expires_at_ms = 0;
            }
        })
    }
}

/// The `UserIndex` keys that lead to a user's latest session: the user id, and the account id
/// (prefixed, so it cannot collide with a user id) when Spotify gave one.
pub(super) fn identity_indexes(record: &SessionRecord) -> Vec<String> {
    let mut out = vec![record.user_id.clone()];
    if let Some(account) = &record.account_id {
        out.push(account_index(account));
    }
    out
}

pub(super) fn account_index(account_id: &str) -> String {
    format!("account:{account_id}")
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
}
