//! Secret values whose `Debug` and `Display` never show the value.
//!
//! Follows oauth2-rs's `new_secret_type!`: a token, a code or the client secret cannot reach a
//! log line by accident, because formatting it prints only where it came from.

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
}
