//! `X-Gateway-User`: a short-lived signed assertion (JWT, HS256, RFC 7519) that the public
//! listener gives the internal app with every request, and that the egress listener accepts
//! as "this call is for that user". It names the session by its store key, never by the
//! session id itself, so a leaked assertion cannot become a cookie.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::session::crypto::Keyring;

/// How long an assertion is accepted. The app gets a fresh one on every request it serves.
pub const ASSERTION_TTL_SECS: u64 = 300;
const ISSUER: &str = "spotify-gateway";

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    /// Spotify user id.
    pub sub: String,
    /// Store key of the session.
    pub sid: String,
    pub iat: u64,
    pub exp: u64,
}

pub fn issue(keys: &Keyring, user_id: &str, session_key: &str) -> String {
    let now = crate::oauth::now_ms() / 1000;
    let claims = Claims {
        iss: ISSUER.into(),
        sub: user_id.into(),
        sid: session_key.into(),
        iat: now,
        exp: now + ASSERTION_TTL_SECS,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(keys.assertion_key()),
    )
    .unwrap_or_default()
}

/// The claims of a valid, unexpired assertion signed by this deployment (or by the previous
/// secret during a rotation). Only HS256 is accepted.
pub fn verify(keys: &Keyring, token: &str) -> Option<Claims> {
    if token.len() > 2048 {
        return None;
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[ISSUER]);
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    validation.leeway = 0;
    let check = |key: &[u8]| {
        jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(key), &validation)
            .ok()
            .map(|d| d.claims)
    };
    check(keys.assertion_key()).or_else(|| keys.previous_assertion_key().and_then(|k| check(k)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn ring(s: &str) -> Keyring {
        Keyring::new(&Secret::runtime(s), None)
    }

    #[test]
    fn issued_assertions_verify_and_forgeries_do_not() {
        let keys = ring("assertion-test-secret-0123456789abcdef012");
        let token = issue(&keys, "alice", "session-key");
        let claims = verify(&keys, &token).expect("valid");
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.sid, "session-key");

        let other = ring("another-deployment-0123456789abcdef0123456");
        assert!(verify(&other, &token).is_none(), "wrong key");
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged_claims = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            br#"{"iss":"spotify-gateway","sub":"bob","sid":"session-key","iat":0,"exp":99999999999}"#,
        );
        parts[1] = &forged_claims;
        assert!(verify(&keys, &parts.join(".")).is_none(), "tampered claims");
        let none_alg = format!(
            "{}.{}.",
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                br#"{"alg":"none","typ":"JWT"}"#
            ),
            forged_claims
        );
        assert!(verify(&keys, &none_alg).is_none(), "alg none");
        assert!(verify(&keys, "garbage").is_none());
    }

    #[test]
    fn expired_assertions_are_refused() {
        let keys = ring("assertion-test-secret-0123456789abcdef012");
        let claims = Claims {
            iss: ISSUER.into(),
            sub: "alice".into(),
            sid: "k".into(),
            iat: 1,
            exp: 2,
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(keys.assertion_key()),
        )
        .expect("encode");
        assert!(verify(&keys, &token).is_none());
    }
}
