//! Secret values whose `Debug` and `Display` never show the value.
//!
//! Follows oauth2-rs's `new_secret_type!`: a token, a code or the client secret cannot reach a
//! log line by accident, because formatting it prints only where it came from. [`Secret`] is a
//! configured secret (client secret, session secret, Redis URL); the values the OAuth flows
//! move around each have their own type ([`AccessToken`], [`RefreshToken`], [`PkceVerifier`],
//! [`CsrfState`], [`AuthorizationCode`]), so a refresh cannot be handed an access token. A
//! session's id ([`SessionId`], what its cookie seals) and its store key ([`SessionKey`], the
//! keyed hash of the id that names it everywhere else) are secrets of the same kind.

use std::fmt;
use std::sync::Arc;

/// Where a secret was read from; printed by `check-config` instead of the value.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    Inline,
    Env(String),
    File(String),
    /// Created at run time (tokens, generated keys).
    Runtime,
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Inline => f.write_str("inline in the config file"),
            SecretSource::Env(name) => write!(f, "env {name}"),
            SecretSource::File(path) => write!(f, "file {path}"),
            SecretSource::Runtime => f.write_str("runtime"),
        }
    }
}

/// A secret string. Cloning is cheap (shared).
#[derive(Clone)]
pub struct Secret {
    value: Arc<str>,
    source: SecretSource,
}

impl Secret {
    pub fn new(value: impl Into<Arc<str>>, source: SecretSource) -> Self {
        Secret {
            value: value.into(),
            source,
        }
    }

    /// A secret made at run time, such as a token received from Spotify.
    pub fn runtime(value: impl Into<Arc<str>>) -> Self {
        Self::new(value, SecretSource::Runtime)
    }

    /// The value. Call this only where the secret is used, never to format it.
    pub fn expose(&self) -> &str {
        &self.value
    }

    pub fn source(&self) -> &SecretSource {
        &self.source
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.value.as_bytes().ct_eq(other.value.as_bytes()).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret([redacted], from {})", self.source)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[redacted, from {}]", self.source)
    }
}

/// Declares a typed secret: a shared string whose formatting names only its type, compared
/// in constant time. Unlike [`Secret`] it carries no source: every one is made at run time,
/// and a hot session holds two (its tokens), so the 32 bytes of a source would be paid twice
/// per session for nothing.
macro_rules! secret_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(Arc<str>);

        impl $name {
            pub fn new(value: impl Into<Arc<str>>) -> Self {
                $name(value.into())
            }

            /// The value. Call this only where the secret is used, never to format it.
            pub fn expose(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                use subtle::ConstantTimeEq;
                self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }

        impl Stored for $name {
            fn expose_for_store(&self) -> &str {
                self.expose()
            }
            fn from_store(value: String) -> Self {
                $name::new(value)
            }
        }
    };
}

secret_type!(
    /// A Spotify access token: what the egress sends as `Authorization: Bearer`.
    AccessToken
);
secret_type!(
    /// A Spotify refresh token (RFC 6749 §6); single-use under PKCE.
    RefreshToken
);
secret_type!(
    /// A PKCE code verifier (RFC 7636 §4.1), kept from `/auth/login` until the callback.
    PkceVerifier
);
secret_type!(
    /// The `state` of a login (RFC 6749 §10.12), bound to the browser's login cookie.
    CsrfState
);
secret_type!(
    /// An authorization code from the callback (RFC 6749 §4.1.2), exchanged once.
    AuthorizationCode
);

secret_type!(
    /// A session's id: the random value its cookie seals (`session::login`), and nowhere else
    /// in the clear. Only its keyed hash, the [`SessionKey`], is stored.
    SessionId
);

/// A session's store key: the keyed hash of its [`SessionId`] (`Keyring::index_key`). Its
/// record is stored and cached under it, its streams and its locks are named by it, and an
/// assertion's `sid` carries it. It opens no cookie, but it names a session to whoever can
/// sign an assertion, so it prints no value either, and equality is constant-time. Cloning
/// is cheap (shared).
#[derive(Clone)]
pub struct SessionKey(Arc<str>);

impl SessionKey {
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        SessionKey(value.into())
    }

    /// The value. Call this only where the key is used (a store key, a lock's or a keyed
    /// hash's input, an assertion's claim), never to format it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `bytes` (read from the store or a request) are this key, in constant time.
    pub fn is(&self, bytes: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        self.0.as_bytes().ct_eq(bytes).into()
    }
}

impl PartialEq for SessionKey {
    fn eq(&self, other: &Self) -> bool {
        self.is(other.0.as_bytes())
    }
}

impl Eq for SessionKey {}

/// As the value's own hash, so maps keyed by session key spread as they did by string.
impl std::hash::Hash for SessionKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey([redacted])")
    }
}

/// A typed secret that may be written into a record that is sealed as a whole before it is
/// stored (see `session::record`).
pub trait Stored: Sized {
    fn expose_for_store(&self) -> &str;
    fn from_store(value: String) -> Self;
}

/// Serde `with` module for typed secrets inside sealed records: the real value is written,
/// because the whole record is encrypted before it reaches the store.
pub mod exposed {
    use super::Stored;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<T: Stored, S: Serializer>(s: &T, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(s.expose_for_store())
    }
    pub fn deserialize<'de, T: Stored, D: Deserializer<'de>>(de: D) -> Result<T, D::Error> {
        String::deserialize(de).map(T::from_store)
    }

    /// The same for an optional secret.
    pub mod opt {
        use super::*;
        pub fn serialize<T: Stored, S: Serializer>(
            s: &Option<T>,
            ser: S,
        ) -> Result<S::Ok, S::Error> {
            match s {
                Some(s) => ser.serialize_some(s.expose_for_store()),
                None => ser.serialize_none(),
            }
        }
        pub fn deserialize<'de, T: Stored, D: Deserializer<'de>>(
            de: D,
        ) -> Result<Option<T>, D::Error> {
            Option::<String>::deserialize(de).map(|o| o.map(T::from_store))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_shows_the_value() {
        let s = Secret::new("hunter2-very-secret", SecretSource::Env("X".into()));
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s}").contains("hunter2"));
        assert!(format!("{s}").contains("env X"));
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    #[test]
    fn typed_secrets_name_only_their_type() {
        let t = AccessToken::new("BQD-access-token-value");
        assert_eq!(format!("{t:?}"), "AccessToken([redacted])");
        let r = RefreshToken::new("AQD-refresh-token-value");
        assert_eq!(format!("{r:?}"), "RefreshToken([redacted])");
        assert_eq!(r.expose(), "AQD-refresh-token-value");
        let id = SessionId::new("session-id-value");
        assert_eq!(format!("{id:?}"), "SessionId([redacted])");
    }

    #[test]
    fn a_session_key_prints_nothing_and_compares_whole() {
        let key = SessionKey::new("keyed-hash-of-a-session-id");
        assert_eq!(format!("{key:?}"), "SessionKey([redacted])");
        assert_eq!(format!("{:?}", Some(&key)), "Some(SessionKey([redacted]))");
        assert_eq!(key, SessionKey::new("keyed-hash-of-a-session-id"));
        assert_ne!(key, SessionKey::new("keyed-hash-of-a-session-i"));
        assert!(key.is(b"keyed-hash-of-a-session-id"));
        assert!(!key.is(b"keyed-hash-of-a-session-idX"));
        assert_eq!(key.expose(), "keyed-hash-of-a-session-id");
    }
}
