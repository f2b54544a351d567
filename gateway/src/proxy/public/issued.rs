//! The assertions (`X-Gateway-User`) the public listener issued lately, one per session, given
//! again to the session's next requests for the first minute of their five: signing one is an
//! HMAC, a JSON serialisation and two base64 encodings, about 22,000 instructions, a sixth of
//! a public request's (issue 29).
//!
//! Why reusing one keeps what a fresh one promised:
//! - **The same claims.** A slot answers only for the session key it was issued for (compared
//!   whole), the same user id, account id and re-consent deadline, and the very keyring that
//!   signed it (`Arc::ptr_eq`): after a secret rotation, for another app, or when the record's
//!   identity changed, a new one is signed.
//! - **No longer valid than a fresh one.** It is given again only while it is younger than
//!   [`REUSE_SECS`], so it always has at least 4 of its 5 minutes left, and it expires at most
//!   5 minutes after the request that carried it, as a fresh one would: an app can act for a
//!   user no longer after the last request it served than before.
//! - **Bound to a live session.** The egress checks the session an assertion names on every
//!   call, so an ended session's assertion (cached here or not) opens nothing, and the public
//!   listener reaches this table only for a live session.
//! - **Bounded.** A direct-mapped table of [`SLOTS`] slots (about 0.5 MiB when all are used);
//!   two sessions in one slot only cost a signature.

use std::sync::{Arc, Mutex};

use http::HeaderValue;

use crate::crypto::Keyring;
use crate::proxy::assertion::{self, Extra, ASSERTION_TTL_SECS};
use crate::secret::SessionKey;

/// How long an issued assertion is given again: a fifth of its lifetime.
pub const REUSE_SECS: u64 = ASSERTION_TTL_SECS / 5;

/// Slots of the table.
const SLOTS: usize = 1024;

/// One assertion issued, with what it was issued for.
struct Slot {
    keys: Arc<Keyring>,
    session_key: SessionKey,
    user_id: Box<str>,
    account_id: Option<Box<str>>,
    reauth_by_ms: Option<u64>,
    /// Unix seconds it was signed at (its `iat`).
    issued_at: u64,
    /// The assertion as a header value: giving it again copies nothing.
    value: HeaderValue,
}

impl Slot {
    fn is_for(&self, keys: &Arc<Keyring>, key: &SessionKey, user_id: &str, extra: &Extra) -> bool {
        Arc::ptr_eq(&self.keys, keys)
            && crate::crypto::same_bytes(
                self.session_key.expose().as_bytes(),
                key.expose().as_bytes(),
            )
            && *self.user_id == *user_id
            && self.account_id.as_deref() == extra.account_id
            && self.reauth_by_ms == extra.reauth_by_ms
    }
}

/// The table (one per app's public proxy).
pub struct Issued {
    slots: Box<[Mutex<Option<Slot>>]>,
}

impl Default for Issued {
    fn default() -> Self {
        Issued {
            slots: (0..SLOTS).map(|_| Mutex::new(None)).collect(),
        }
    }
}

impl Issued {
    /// The session's assertion: the one issued for it less than [`REUSE_SECS`] ago with these
    /// keys and this identity, or a fresh one (`assertion::issue_with`), kept for the next.
    pub fn assertion(
        &self,
        keys: &Arc<Keyring>,
        key: &SessionKey,
        user_id: &str,
        extra: Extra<'_>,
    ) -> HeaderValue {
        let slot = &self.slots[slot_of(key.expose())];
        let now = crate::clock::now_ms() / 1000;
        {
            let held = slot.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(s) = held.as_ref() {
                // `now < issued_at` only if the clock went back: sign anew.
                let young = now >= s.issued_at && now - s.issued_at < REUSE_SECS;
                if young && s.is_for(keys, key, user_id, &extra) {
                    return s.value.clone();
                }
            }
        }
        let token = assertion::issue_at(keys, user_id, key.expose(), extra, now);
        // base64url and dots only: always a valid header value.
        let Ok(value) = HeaderValue::from_str(&token) else {
            return HeaderValue::from_static("");
        };
        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(Slot {
            keys: Arc::clone(keys),
            session_key: key.clone(),
            user_id: user_id.into(),
            account_id: extra.account_id.map(Into::into),
            reauth_by_ms: extra.reauth_by_ms,
            issued_at: now,
            value: value.clone(),
        });
        value
    }
}

/// A session key's slot: the key is a keyed hash in base64, so its first bytes are spread.
fn slot_of(key: &str) -> usize {
    let head = &key.as_bytes()[..key.len().min(8)];
    let mut word = [0u8; 8];
    word[..head.len()].copy_from_slice(head);
    (u64::from_le_bytes(word).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) as usize % SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::tests::ring;

    fn keys() -> Arc<Keyring> {
        Arc::new(ring("assertion-test-secret-0123456789abcdef012"))
    }

    fn text(v: &HeaderValue) -> String {
        v.to_str().expect("ascii").to_string()
    }

    #[test]
    fn a_sessions_assertion_is_given_again_while_young_and_verifies() {
        let (keys, issued) = (keys(), Issued::default());
        let key = SessionKey::new("session-key-a");
        let first = issued.assertion(&keys, &key, "alice", Extra::default());
        let again = issued.assertion(&keys, &key, "alice", Extra::default());
        assert_eq!(first, again, "given again");
        let claims = assertion::verify(&keys, &text(&again)).expect("valid");
        assert_eq!(
            (claims.sub.as_str(), claims.sid.as_str()),
            ("alice", "session-key-a")
        );
        let now = crate::clock::now_ms() / 1000;
        assert!(
            claims.exp >= now + ASSERTION_TTL_SECS - REUSE_SECS,
            "at least four of its five minutes left"
        );
    }

    #[test]
    fn another_session_identity_or_keyring_gets_its_own() {
        let (keys, issued) = (keys(), Issued::default());
        let key = SessionKey::new("session-key-a");
        let first = issued.assertion(&keys, &key, "alice", Extra::default());
        let other_session = issued.assertion(
            &keys,
            &SessionKey::new("session-key-b"),
            "alice",
            Extra::default(),
        );
        assert_ne!(first, other_session);
        let with_account = Extra {
            account_id: Some("acc-1"),
            reauth_by_ms: None,
        };
        let changed = issued.assertion(&keys, &key, "alice", with_account);
        assert_ne!(first, changed, "the identity changed");
        let claims = assertion::verify(&keys, &text(&changed)).expect("valid");
        assert_eq!(claims.account_id.as_deref(), Some("acc-1"));
        // A rotation to other keys: signed with them, and the old keys refuse it.
        let rotated = Arc::new(ring("another-secret-0123456789abcdef0123456789"));
        let after = issued.assertion(&rotated, &key, "alice", with_account);
        assert!(assertion::verify(&rotated, &text(&after)).is_some());
        assert!(assertion::verify(&keys, &text(&after)).is_none());
    }

    #[test]
    fn an_assertion_older_than_the_reuse_window_is_signed_anew() {
        let (keys, issued) = (keys(), Issued::default());
        let key = SessionKey::new("session-key-a");
        let issued_at = |issued: &Issued| {
            let slot = issued.slots[slot_of(key.expose())].lock().expect("slot");
            slot.as_ref().expect("filled").issued_at
        };
        issued.assertion(&keys, &key, "alice", Extra::default());
        let signed = issued_at(&issued);
        // Age the slot as the clock would.
        {
            let mut slot = issued.slots[slot_of(key.expose())].lock().expect("slot");
            slot.as_mut().expect("filled").issued_at = signed - REUSE_SECS;
        }
        let fresh = issued.assertion(&keys, &key, "alice", Extra::default());
        assert!(issued_at(&issued) >= signed, "signed anew past the window");
        let claims = assertion::verify(&keys, &text(&fresh)).expect("valid");
        assert!(claims.iat >= signed, "its iat is now");
    }
}
