//! Keys derived from `session.secret`, and sealing (AES-256-GCM) of cookies and stored records.
//!
//! One secret, several keys: each purpose gets its own key, `HMAC-SHA256(secret, label)`, so a
//! value sealed for one purpose never opens as another. Every sealed value also carries its
//! purpose (and, for stored records, its store key) as associated data.
//!
//! Key rotation: set the new secret as `session.secret` and the old one as
//! `session.previous_secret`. Values sealed with either open; new values use the new one. Once
//! every session has been written again (or `session.lifetime` has passed), drop the old one.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secret::Secret;

pub type HmacSha256 = Hmac<Sha256>;

const NONCE_LEN: usize = 12;

/// What a sealed value is for; part of the associated data.
#[derive(Clone, Copy, Debug)]
pub enum Purpose {
    SessionCookie,
    LoginCookie,
    StoredRecord,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::SessionCookie => b"session-cookie",
            Purpose::LoginCookie => b"login-cookie",
            Purpose::StoredRecord => b"stored-record",
        }
    }
}

struct KeySet {
    cookie: Aes256Gcm,
    store: Aes256Gcm,
    /// Hashes session ids and states into store keys: an HMAC whose key blocks are already
    /// hashed, cloned per key (a session lookup by cookie does one; the key's two blocks
    /// would otherwise be hashed again each time).
    index: HmacSha256,
    /// Signs `X-Gateway-User` assertions.
    assertion: [u8; 32],
    /// HMAC keyed with `assertion`, its key blocks already hashed: cloned per assertion.
    assertion_mac: HmacSha256,
    /// Hashes user ids in audit events and webhooks (`events`).
    audit: [u8; 32],
}

impl KeySet {
    /// The keys of `app` (`None`: the default app, with the keys of the gateway before
    /// `[[apps]]`): each app's differ, so one app's cookie, record or assertion opens nothing
    /// in another.
    fn derive(secret: &str, app: Option<&str>) -> KeySet {
        let derive = |label: &[u8]| -> [u8; 32] {
            let mut mac = <HmacSha256 as Mac>::new_from_slice(secret.as_bytes())
                .expect("HMAC takes any key length");
            mac.update(b"spotify-gateway/v1/");
            if let Some(app) = app {
                mac.update(b"app/");
                mac.update(app.as_bytes());
                mac.update(b"/");
            }
            mac.update(label);
            mac.finalize().into_bytes().into()
        };
        let assertion = derive(b"assertion");
        KeySet {
            cookie: Aes256Gcm::new(&derive(b"cookie").into()),
            store: Aes256Gcm::new(&derive(b"store").into()),
            index: <HmacSha256 as Mac>::new_from_slice(&derive(b"index"))
                .expect("HMAC takes any key length"),
            assertion,
            assertion_mac: <HmacSha256 as Mac>::new_from_slice(&assertion)
                .expect("HMAC takes any key length"),
            audit: derive(b"audit-user-id"),
        }
    }

    fn cipher(&self, purpose: Purpose) -> &Aes256Gcm {
        match purpose {
            Purpose::SessionCookie | Purpose::LoginCookie => &self.cookie,
            Purpose::StoredRecord => &self.store,
        }
    }
}

/// The current keys and, during a rotation, the previous ones.
pub struct Keyring {
    current: KeySet,
    previous: Option<KeySet>,
    /// The app these keys are for; `None`: the default app.
    app: Option<String>,
}

impl Keyring {
    pub fn new(secret: &Secret, previous: Option<&Secret>) -> Keyring {
        Self::for_app(secret, previous, None)
    }

    /// The keyring of one app of several (`None`: the default app, as [`Keyring::new`]).
    pub fn for_app(secret: &Secret, previous: Option<&Secret>, app: Option<&str>) -> Keyring {
        Keyring {
            current: KeySet::derive(secret.expose(), app),
            previous: previous.map(|p| KeySet::derive(p.expose(), app)),
            app: app.map(str::to_string),
        }
    }

    /// The app these keys are for (`None`: the default app); its assertions name it.
    pub fn app(&self) -> Option<&str> {
        self.app.as_deref()
    }

    /// Encrypts `plain` for `purpose`, bound to `context` (e.g. the store key). Output is
    /// URL-safe base64 of nonce ‖ ciphertext ‖ tag, fit for a cookie value.
    pub fn seal(&self, purpose: Purpose, context: &[u8], plain: &[u8]) -> String {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let aad = aad(purpose, context);
        let sealed = self
            .current
            .cipher(purpose)
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption of a bounded message cannot fail");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// Decrypts a value from [`Keyring::seal`]; `None` if it was tampered with, truncated,
    /// sealed for another purpose or context, or with a key this deployment does not have.
    pub fn open(&self, purpose: Purpose, context: &[u8], sealed: &str) -> Option<Vec<u8>> {
        // Cookies are bounded; refuse to decode anything absurd.
        if sealed.len() > 8192 {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if raw.len() < NONCE_LEN + 16 {
            return None;
        }
        let (nonce, body) = raw.split_at(NONCE_LEN);
        let aad = aad(purpose, context);
        let try_open = |keys: &KeySet| {
            keys.cipher(purpose)
                .decrypt(
                    Nonce::from_slice(nonce),
                    Payload {
                        msg: body,
                        aad: &aad,
                    },
                )
                .ok()
        };
        try_open(&self.current).or_else(|| self.previous.as_ref().and_then(try_open))
    }

    /// The store key for a session id or login state: a keyed hash, so the store never holds
    /// a value that would open a session if stolen.
    pub fn index_key(&self, kind: &str, id: &str) -> String {
        index_key(&self.current.index, kind, id)
    }

    /// Store keys under the previous secret, to find records written before a rotation.
    pub fn previous_index_key(&self, kind: &str, id: &str) -> Option<String> {
        self.previous
            .as_ref()
            .map(|p| index_key(&p.index, kind, id))
    }

    pub fn assertion_key(&self) -> &[u8; 32] {
        &self.current.assertion
    }

    /// The key of the user hash in audit events (`events::UserHasher`): its own label, so
    /// the hash says nothing about any other key.
    pub fn audit_key(&self) -> &[u8; 32] {
        &self.current.audit
    }

    pub fn previous_assertion_key(&self) -> Option<&[u8; 32]> {
        self.previous.as_ref().map(|p| &p.assertion)
    }

    /// HMAC-SHA256 keyed with [`Keyring::assertion_key`], ready for `update`.
    pub fn assertion_mac(&self) -> HmacSha256 {
        self.current.assertion_mac.clone()
    }

    pub fn previous_assertion_mac(&self) -> Option<HmacSha256> {
        self.previous.as_ref().map(|p| p.assertion_mac.clone())
    }
}

fn index_key(keyed: &HmacSha256, kind: &str, id: &str) -> String {
    let mut mac = keyed.clone();
    mac.update(kind.as_bytes());
    mac.update(b"\0");
    mac.update(id.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

fn aad(purpose: Purpose, context: &[u8]) -> Vec<u8> {
    let mut aad = purpose.label().to_vec();
    aad.push(0);
    aad.extend_from_slice(context);
    aad
}

/// A new random identifier (256 bits), URL-safe.
pub fn random_id() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// Whether `a` and `b` hold the same bytes, in a time that depends on their lengths only (no
/// early exit at the first difference), a word at a time: `subtle`'s byte-wise `ct_eq` costs
/// about eight instructions a byte, and the tables of verified assertions and opened cookies
/// compare a few hundred bytes on every request (issue 29).
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    if a.len() != b.len() {
        return false;
    }
    let (a_words, b_words) = (a.chunks_exact(8), b.chunks_exact(8));
    let mut diff = 0u64;
    for (x, y) in a_words.remainder().iter().zip(b_words.remainder()) {
        diff |= u64::from(x ^ y);
    }
    let word = |w: &[u8]| u64::from_ne_bytes(w.try_into().unwrap_or_default());
    for (x, y) in a_words.zip(b_words) {
        diff |= word(x) ^ word(y);
    }
    diff.ct_eq(&0).into()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::secret::Secret;

    /// A keyring on `secret` alone.
    pub(crate) fn ring(secret: &str) -> Keyring {
        Keyring::new(&Secret::runtime(secret), None)
    }

    #[test]
    fn index_keys_are_the_hmac_of_the_derived_key_as_stored_before() {
        // The prepared HMAC must give the keys a store already holds.
        let secret = "a-secret-that-is-long-enough-for-tests-000";
        let k = ring(secret);
        let mut derive = <HmacSha256 as Mac>::new_from_slice(secret.as_bytes()).expect("hmac");
        derive.update(b"spotify-gateway/v1/index");
        let index: [u8; 32] = derive.finalize().into_bytes().into();
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&index).expect("hmac");
        mac.update(b"session\0some-id");
        let expected = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        assert_eq!(k.index_key("session", "some-id"), expected);
    }

    #[test]
    fn seal_and_open_round_trip_only_for_the_same_purpose_and_context() {
        let k = ring("a-secret-that-is-long-enough-for-tests-000");
        let sealed = k.seal(Purpose::SessionCookie, b"", b"session-id");
        assert_eq!(
            k.open(Purpose::SessionCookie, b"", &sealed).as_deref(),
            Some(&b"session-id"[..])
        );
        assert!(k.open(Purpose::LoginCookie, b"", &sealed).is_none());
        assert!(k.open(Purpose::SessionCookie, b"other", &sealed).is_none());
        let rec = k.seal(Purpose::StoredRecord, b"key-1", b"{}");
        assert!(k.open(Purpose::StoredRecord, b"key-2", &rec).is_none());
    }

    #[test]
    fn tampered_truncated_or_foreign_values_do_not_open() {
        let k = ring("a-secret-that-is-long-enough-for-tests-000");
        let sealed = k.seal(Purpose::SessionCookie, b"", b"session-id");
        let mut bytes = sealed.clone().into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).expect("ascii");
        assert!(k.open(Purpose::SessionCookie, b"", &tampered).is_none());
        assert!(k
            .open(Purpose::SessionCookie, b"", &sealed[..sealed.len() - 4])
            .is_none());
        assert!(k.open(Purpose::SessionCookie, b"", "").is_none());
        assert!(k
            .open(Purpose::SessionCookie, b"", "!!!not base64!!!")
            .is_none());
        let other = ring("another-deployment-secret-0123456789abcdef");
        assert!(other.open(Purpose::SessionCookie, b"", &sealed).is_none());
    }

    #[test]
    fn previous_secret_still_opens_during_rotation() {
        let old = ring("the-old-secret-0123456789abcdef0123456789");
        let sealed = old.seal(Purpose::SessionCookie, b"", b"sid");
        let rotated = Keyring::new(
            &Secret::runtime("the-new-secret-0123456789abcdef0123456789"),
            Some(&Secret::runtime(
                "the-old-secret-0123456789abcdef0123456789",
            )),
        );
        assert_eq!(
            rotated
                .open(Purpose::SessionCookie, b"", &sealed)
                .as_deref(),
            Some(&b"sid"[..])
        );
        assert_eq!(
            rotated.previous_index_key("session", "x"),
            Some(old.index_key("session", "x"))
        );
    }

    #[test]
    fn same_bytes_is_equality() {
        let long = b"0123456789abcdef0123456789abcdef-tail";
        assert!(same_bytes(long, long));
        assert!(same_bytes(b"", b""));
        let mut other = *long;
        for i in [0, 7, 8, 31, long.len() - 1] {
            other[i] ^= 1;
            assert!(!same_bytes(long, &other), "differs at {i}");
            other[i] ^= 1;
        }
        assert!(!same_bytes(long, &long[..long.len() - 1]), "another length");
    }
}
