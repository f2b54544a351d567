//! Session cookies opened lately, with the store keys they name: opening one is an AES-GCM
//! decryption and a keyed hash of the session id (twice during a secret rotation), about
//! 10,000 instructions of a public request (issue 29), and a browser sends the same cookie
//! with every request.
//!
//! This is a memo of a pure function: what a cookie opens to is fixed by its exact text and
//! the keyring (`Purpose::SessionCookie`, no context), so a slot answers only for that very
//! text (compared in constant time, so the time a comparison takes says nothing about a
//! cookie held) and the very keyring that opened it (`Arc::ptr_eq`: after a rotation every
//! slot misses). Whether the session is still alive is not remembered here: the lookup by
//! key that follows checks the cache, the ended sessions and the store as before. A cookie
//! that does not open is not kept. Bounded: a direct-mapped table of [`SLOTS`] slots (about
//! 0.3 MiB when all are used); two cookies in one slot only cost an opening.

use std::sync::{Arc, Mutex};

use crate::crypto::Keyring;
use crate::secret::SessionKey;

const SLOTS: usize = 1024;

/// The store keys a cookie names: under the current secret, and under the previous one
/// while a rotation keeps it.
#[derive(Clone)]
pub struct Named {
    pub current: SessionKey,
    pub previous: Option<SessionKey>,
}

struct Slot {
    cookie: Box<str>,
    keys: Arc<Keyring>,
    named: Named,
}

pub struct Opened {
    slots: Box<[Mutex<Option<Slot>>]>,
}

impl Default for Opened {
    fn default() -> Self {
        Opened {
            slots: (0..SLOTS).map(|_| Mutex::new(None)).collect(),
        }
    }
}

impl Opened {
    /// What `cookie` named when `keys` opened it, if that is remembered.
    pub fn get(&self, keys: &Arc<Keyring>, cookie: &str) -> Option<Named> {
        let held = self.slots[slot_of(cookie)]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let s = held.as_ref()?;
        let same = crate::crypto::same_bytes(s.cookie.as_bytes(), cookie.as_bytes())
            && Arc::ptr_eq(&s.keys, keys);
        same.then(|| s.named.clone())
    }

    /// Remembers what `cookie` opened to with `keys`.
    pub fn put(&self, keys: &Arc<Keyring>, cookie: &str, named: &Named) {
        *self.slots[slot_of(cookie)]
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Slot {
            cookie: cookie.into(),
            keys: Arc::clone(keys),
            named: named.clone(),
        });
    }
}

/// A cookie's slot, from its end: base64 of an AES-GCM tag, so already spread.
fn slot_of(cookie: &str) -> usize {
    let tail = cookie.as_bytes();
    let tail = &tail[tail.len().saturating_sub(8)..];
    let mut word = [0u8; 8];
    word[..tail.len()].copy_from_slice(tail);
    (u64::from_le_bytes(word).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) as usize % SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::tests::ring;

    #[test]
    fn a_cookie_is_remembered_for_its_text_and_keyring_only() {
        let keys = Arc::new(ring("opened-test-secret-0123456789abcdef0123456"));
        let opened = Opened::default();
        let named = Named {
            current: SessionKey::new("store-key"),
            previous: None,
        };
        opened.put(&keys, "sealed-cookie-value", &named);
        let got = opened
            .get(&keys, "sealed-cookie-value")
            .expect("remembered");
        assert!(got.current.is(b"store-key"));
        assert!(
            opened.get(&keys, "sealed-cookie-valuf").is_none(),
            "another text"
        );
        assert!(opened.get(&keys, "sealed-cookie-value ").is_none());
        let rotated = Arc::new(ring("another-secret-0123456789abcdef0123456789"));
        assert!(
            opened.get(&rotated, "sealed-cookie-value").is_none(),
            "other keys"
        );
    }
}
