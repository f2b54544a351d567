//! `X-Gateway-User`: a short-lived signed assertion (JWT, HS256, RFC 7519) that the public
//! listener gives the internal app with every request, and that the egress listener accepts
//! as "this call is for that user". It names the session by its store key, never by the
//! session id itself, so a leaked assertion cannot become a cookie.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::Mac;
use serde::{Deserialize, Serialize};

use crate::crypto::{HmacSha256, Keyring};

/// How long an assertion is accepted. The app gets a fresh one on every request it serves.
pub const ASSERTION_TTL_SECS: u64 = 300;
const ISSUER: &str = "spotify-gateway";
/// Longer tokens are refused before any work.
const MAX_TOKEN_LEN: usize = 2048;

/// The one JOSE header this gateway signs and accepts, `{"typ":"JWT","alg":"HS256"}`,
/// base64url-encoded. Comparing it byte for byte is the algorithm check: no `alg: none`, no
/// other algorithm, no key id to look up.
const HEADER_B64: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9";

/// An assertion's claims. `Debug` leaves out `sid` (a session's store key, a secret like the
/// session id: `secret::SessionKey`).
#[derive(Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    /// Spotify user id.
    pub sub: String,
    /// Store key of the session.
    pub sid: String,
    /// Spotify's `account_id` (2026), when the session has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// Unix seconds when the session's refresh token ends and the user must sign in (consent)
    /// again; the egress answers `REAUTH_REQUIRED` for it from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reauth_by: Option<u64>,
    /// The app of the session, when the gateway serves several (`[[apps]]`); absent for the
    /// default app, as before `[[apps]]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    pub iat: u64,
    pub exp: u64,
}

impl std::fmt::Debug for Claims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claims")
            .field("iss", &self.iss)
            .field("sub", &self.sub)
            .field("sid", &"[redacted]")
            .field("account_id", &self.account_id)
            .field("reauth_by", &self.reauth_by)
            .field("app", &self.app)
            .field("iat", &self.iat)
            .field("exp", &self.exp)
            .finish()
    }
}

/// Whom an assertion names, beyond the user id and the session.
#[derive(Debug, Default, Clone, Copy)]
pub struct Extra<'a> {
    pub account_id: Option<&'a str>,
    /// Unix milliseconds.
    pub reauth_by_ms: Option<u64>,
}

/// A compact JWS (RFC 7515) over `claims`: `header.claims.signature`, all base64url.
pub fn issue(keys: &Keyring, user_id: &str, session_key: &str) -> String {
    issue_with(keys, user_id, session_key, Extra::default())
}

/// [`issue`], with the optional claims in `extra`.
pub fn issue_with(keys: &Keyring, user_id: &str, session_key: &str, extra: Extra<'_>) -> String {
    issue_at(
        keys,
        user_id,
        session_key,
        extra,
        crate::clock::now_ms() / 1000,
    )
}

/// [`issue_with`], signed as at `now` (unix seconds).
pub fn issue_at(
    keys: &Keyring,
    user_id: &str,
    session_key: &str,
    extra: Extra<'_>,
    now: u64,
) -> String {
    let claims = Claims {
        iss: ISSUER.into(),
        sub: user_id.into(),
        sid: session_key.into(),
        account_id: extra.account_id.map(str::to_string),
        reauth_by: extra.reauth_by_ms.map(|ms| ms / 1000),
        app: keys.app().map(str::to_string),
        iat: now,
        exp: now + ASSERTION_TTL_SECS,
    };
    let json = serde_json::to_vec(&claims).unwrap_or_default();
    let mut token = String::with_capacity(HEADER_B64.len() + 2 + json.len() * 4 / 3 + 48);
    token.push_str(HEADER_B64);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&json, &mut token);
    let mut mac = keys.assertion_mac();
    mac.update(token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(mac.finalize().into_bytes(), &mut token);
    token
}

/// The claims of a valid, unexpired assertion signed by this deployment (or by the previous
/// secret during a rotation). Only the header [`issue`] writes is accepted (HS256).
///
/// One HMAC and one claims parse: the header is compared, not parsed, and the signature is
/// checked (in constant time) before the claims are read.
pub fn verify(keys: &Keyring, token: &str) -> Option<Claims> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let (signed, signature) = token.rsplit_once('.')?;
    let claims_b64 = signed.strip_prefix(HEADER_B64)?.strip_prefix('.')?;
    let mut sig = [0u8; 32];
    match URL_SAFE_NO_PAD.decode_slice(signature, &mut sig) {
        Ok(32) => {}
        _ => return None,
    }
    let signed_by = |mut mac: HmacSha256| {
        mac.update(signed.as_bytes());
        mac.verify_slice(&sig).is_ok()
    };
    if !signed_by(keys.assertion_mac()) && !keys.previous_assertion_mac().is_some_and(signed_by) {
        return None;
    }
    let json = URL_SAFE_NO_PAD.decode(claims_b64).ok()?;
    let claims: Claims = serde_json::from_slice(&json).ok()?;
    let now = crate::clock::now_ms() / 1000;
    (claims.iss == ISSUER && claims.exp > now && claims.app.as_deref() == keys.app())
        .then_some(claims)
}

/// The app an assertion names, read before it is verified, only to pick the keys it is then
/// verified with: `Some(None)` when it names none (the default app's), `None` when `token`
/// is not shaped as an assertion.
pub fn app_named(token: &str) -> Option<Option<String>> {
    #[derive(Deserialize)]
    struct AppClaim {
        app: Option<String>,
    }
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let claims_b64 = token.strip_prefix(HEADER_B64)?.strip_prefix('.')?;
    let (claims_b64, _) = claims_b64.split_once('.')?;
    let json = URL_SAFE_NO_PAD.decode(claims_b64).ok()?;
    Some(serde_json::from_slice::<AppClaim>(&json).ok()?.app)
}

/// Slots of [`Verified`]: a direct-mapped table, so its memory is bounded (a token and its
/// claims per slot, at most about 0.6 MiB) and a lookup is one short lock.
const VERIFIED_SLOTS: usize = 1024;

/// Assertions already verified, with their claims, for as long as they are valid: an app
/// sends the assertion of the request it serves with each of its calls to the egress, and
/// each verification costs an HMAC and a JSON parse (about a sixth of an egress call's
/// instructions, issue 29). A slot holds one token (compared whole) and the keyring that
/// verified it: after a secret rotation every slot misses and verifies again.
pub struct Verified {
    slots: Box<[std::sync::Mutex<Option<Slot>>]>,
}

struct Slot {
    token: Box<str>,
    keys: std::sync::Arc<Keyring>,
    claims: std::sync::Arc<Claims>,
}

impl Default for Verified {
    fn default() -> Self {
        Verified {
            slots: (0..VERIFIED_SLOTS)
                .map(|_| std::sync::Mutex::new(None))
                .collect(),
        }
    }
}

impl Verified {
    /// [`verify`], answered from the table when this very token was verified with these
    /// keys and has not expired since.
    pub fn verify(
        &self,
        keys: &std::sync::Arc<Keyring>,
        token: &str,
    ) -> Option<std::sync::Arc<Claims>> {
        let slot = &self.slots[slot_of(token)];
        let now = crate::clock::now_ms() / 1000;
        {
            let held = slot.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(s) = held.as_ref() {
                // In constant time: how long a comparison takes says nothing of a held token.
                let same = crate::crypto::same_bytes(s.token.as_bytes(), token.as_bytes());
                if same && std::sync::Arc::ptr_eq(&s.keys, keys) {
                    return (s.claims.exp > now).then(|| std::sync::Arc::clone(&s.claims));
                }
            }
        }
        let claims = std::sync::Arc::new(verify(keys, token)?);
        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(Slot {
            token: token.into(),
            keys: std::sync::Arc::clone(keys),
            claims: std::sync::Arc::clone(&claims),
        });
        Some(claims)
    }
}

/// A token's slot, from the end of its signature: base64 of an HMAC, so already spread.
fn slot_of(token: &str) -> usize {
    let tail = token.as_bytes();
    let tail = &tail[tail.len().saturating_sub(8)..];
    let mut word = [0u8; 8];
    word[..tail.len()].copy_from_slice(tail);
    (u64::from_le_bytes(word).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) as usize % VERIFIED_SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::tests::ring;
    use crate::secret::Secret;

    #[test]
    fn verified_assertions_are_remembered_per_token_and_keyring() {
        let keys = std::sync::Arc::new(ring("assertion-test-secret-0123456789abcdef012"));
        let verified = Verified::default();
        let token = issue(&keys, "alice", "session-key");
        let first = verified.verify(&keys, &token).expect("valid");
        let again = verified.verify(&keys, &token).expect("still valid");
        assert!(
            std::sync::Arc::ptr_eq(&first, &again),
            "answered from the table"
        );
        assert_eq!(again.sub, "alice");
        // A token that differs anywhere is verified itself, and a forgery fails.
        let mut forged = token.clone();
        forged.insert(HEADER_B64.len() + 3, 'x');
        assert!(verified.verify(&keys, &forged).is_none());
        // Other keys (a rotation to an unrelated secret): verified again, and refused.
        let other = std::sync::Arc::new(ring("another-secret-0123456789abcdef0123456789"));
        assert!(verified.verify(&other, &token).is_none());
        assert!(verified.verify(&keys, &token).is_some());
    }

    #[test]
    fn issued_assertions_verify_and_forgeries_do_not() {
        let keys = ring("assertion-test-secret-0123456789abcdef012");
        let token = issue(&keys, "alice", "session-key");
        let claims = verify(&keys, &token).expect("valid");
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.sid, "session-key");
        assert!(
            !format!("{claims:?}").contains("session-key"),
            "the session key never prints"
        );

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

    /// An HS256 JWT made by another implementation (jsonwebtoken), signed with our key.
    fn minted(keys: &Keyring, claims: &Claims) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            claims,
            &jsonwebtoken::EncodingKey::from_secret(keys.assertion_key()),
        )
        .expect("encode")
    }

    fn claims(sub: &str, exp: u64) -> Claims {
        Claims {
            iss: ISSUER.into(),
            sub: sub.into(),
            sid: "k".into(),
            account_id: None,
            reauth_by: None,
            app: None,
            iat: 1,
            exp,
        }
    }

    #[test]
    fn an_apps_assertion_names_it_and_opens_only_with_its_keys() {
        let secret = Secret::new(
            "assertion-test-secret-0123456789abcdef012",
            crate::secret::SecretSource::Inline,
        );
        let radio = Keyring::for_app(&secret, None, Some("radio"));
        let default = Keyring::new(&secret, None);
        let token = issue(&radio, "alice", "session-key");
        assert_eq!(app_named(&token), Some(Some("radio".into())));
        assert_eq!(
            verify(&radio, &token).and_then(|c| c.app).as_deref(),
            Some("radio")
        );
        assert!(verify(&default, &token).is_none(), "another app's keys");
        let plain = issue(&default, "alice", "session-key");
        assert_eq!(
            app_named(&plain),
            Some(None),
            "the default app's names none"
        );
        assert_eq!(app_named("BQ-a-spotify-token"), None, "not an assertion");
        assert!(verify(&radio, &plain).is_none());
        // The table of verified assertions keeps it so: each app's egress proxy has its own,
        // and even one table shared by two apps answers only for the keys that verified.
        let (radio, default) = (std::sync::Arc::new(radio), std::sync::Arc::new(default));
        let verified = Verified::default();
        assert!(verified.verify(&radio, &token).is_some());
        assert!(
            verified.verify(&default, &token).is_none(),
            "not for the default app"
        );
        assert!(verified.verify(&radio, &plain).is_none());
    }

    #[test]
    fn expired_assertions_are_refused() {
        let keys = ring("assertion-test-secret-0123456789abcdef012");
        assert!(verify(&keys, &minted(&keys, &claims("alice", 2))).is_none());
        let now = crate::clock::now_ms() / 1000;
        assert!(verify(&keys, &minted(&keys, &claims("alice", now))).is_none());
        assert!(verify(&keys, &minted(&keys, &claims("alice", now + 60))).is_some());
    }

    #[test]
    fn assertions_are_standard_jwts_both_ways() {
        let keys = ring("assertion-test-secret-0123456789abcdef012");
        // What we issue, a JWT library verifies ...
        let token = issue(&keys, "alice", "session-key");
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        let decoded = jsonwebtoken::decode::<Claims>(
            &token,
            &jsonwebtoken::DecodingKey::from_secret(keys.assertion_key()),
            &validation,
        )
        .expect("a standard HS256 JWT");
        assert_eq!(decoded.claims.sub, "alice");
        // ... and what a JWT library signs with our key and header, we accept.
        let now = crate::clock::now_ms() / 1000;
        let theirs = minted(&keys, &claims("bob", now + 60));
        assert_eq!(verify(&keys, &theirs).map(|c| c.sub), Some("bob".into()));
    }

    #[test]
    fn only_our_header_and_issuer_and_a_whole_signature_pass() {
        let keys = ring("assertion-test-secret-0123456789abcdef012");
        let token = issue(&keys, "alice", "session-key");
        let (signed, sig) = token.rsplit_once('.').expect("three parts");
        let claims_b64 = signed.split_once('.').expect("header").1;
        let b64 = |s: &str| base64::Engine::encode(&URL_SAFE_NO_PAD, s);
        let sign = |header: &str| {
            let signed = format!("{header}.{claims_b64}");
            let mut mac = keys.assertion_mac();
            mac.update(signed.as_bytes());
            format!(
                "{signed}.{}",
                base64::Engine::encode(&URL_SAFE_NO_PAD, mac.finalize().into_bytes())
            )
        };
        // Correctly signed, but under a header we never write.
        for header in [
            r#"{"alg":"HS256","typ":"JWT"}"#,
            r#"{"typ":"JWT","alg":"HS256","kid":"x"}"#,
            r#"{"typ":"JWT","alg":"HS384"}"#,
        ] {
            assert!(verify(&keys, &sign(&b64(header))).is_none(), "{header}");
        }
        assert!(verify(&keys, &sign(HEADER_B64)).is_some(), "control");
        // Truncated, extended, padded or empty signatures.
        for bad_sig in [
            &sig[..sig.len() - 1],
            &format!("{sig}A"),
            &format!("{sig}="),
            "",
        ] {
            assert!(
                verify(&keys, &format!("{signed}.{bad_sig}")).is_none(),
                "{bad_sig}"
            );
        }
        // Another issuer, correctly signed.
        let mut other = claims("alice", crate::clock::now_ms() / 1000 + 60);
        other.iss = "someone-else".into();
        assert!(verify(&keys, &minted(&keys, &other)).is_none());
        // Too long to look at.
        assert!(verify(&keys, &"a".repeat(MAX_TOKEN_LEN + 1)).is_none());
    }

    #[test]
    fn the_previous_secret_verifies_during_a_rotation() {
        let old = ring("previous-secret-0123456789abcdef0123456789");
        let token = issue(&old, "alice", "k");
        let rotated = Keyring::new(
            &Secret::runtime("assertion-test-secret-0123456789abcdef012"),
            Some(&Secret::runtime(
                "previous-secret-0123456789abcdef0123456789",
            )),
        );
        assert_eq!(
            verify(&rotated, &token).map(|c| c.sub),
            Some("alice".into())
        );
        let fresh = issue(&rotated, "alice", "k");
        assert!(
            verify(&old, &fresh).is_none(),
            "new tokens use the new secret"
        );
    }
}
