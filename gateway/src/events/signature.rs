//! The webhook signature, in the manner of Stripe's: the header
//! `Spotify-Gateway-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
//!
//! The timestamp is signed with the body, so a receiver that refuses old timestamps (say, more
//! than five minutes from its clock) also refuses a replayed delivery. Each attempt of a
//! delivery is signed afresh with its own time. docs/events-and-webhooks.md has a verification
//! snippet.

use hmac::Mac;
use subtle::ConstantTimeEq;

use crate::crypto::HmacSha256;

/// The header that carries the signature.
pub const HEADER: &str = "Spotify-Gateway-Signature";

/// `v1`: the hex HMAC-SHA256 of `"<t>.<body>"` under `secret`.
pub fn v1(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The header's value for `body` signed at `timestamp`.
pub fn header_value(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", v1(secret, timestamp, body))
}

/// Checks a header value against `body` as a receiver would (constant time); returns the
/// signed timestamp when some `v1` matches. The receiver still decides how old may be.
pub fn verify(secret: &[u8], header: &str, body: &[u8]) -> Option<u64> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<u64>().ok(),
            Some(("v1", sig)) => signatures.push(sig),
            _ => {}
        }
    }
    let timestamp = timestamp?;
    let expected = v1(secret, timestamp, body);
    signatures
        .iter()
        .any(|sig| bool::from(sig.as_bytes().ct_eq(expected.as_bytes())))
        .then_some(timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_secret_body_and_time() {
        let secret = b"whsec-test";
        let body = br#"{"type":"login.succeeded"}"#;
        let header = header_value(secret, 1_700_000_000, body);
        assert!(header.starts_with("t=1700000000,v1="));
        assert_eq!(verify(secret, &header, body), Some(1_700_000_000));
        assert_eq!(verify(b"another", &header, body), None);
        assert_eq!(verify(secret, &header, br#"{"type":"login.denied"}"#), None);
        let moved = header.replace("t=1700000000", "t=1700000001");
        assert_eq!(verify(secret, &moved, body), None);
        assert_eq!(verify(secret, "v1=abc", body), None);
    }

    #[test]
    fn matches_an_independent_hmac() {
        // What the docs' shell snippet computes: printf '0.x' | openssl dgst -sha256 -hmac Jefe
        assert_eq!(
            v1(b"Jefe", 0, b"x"),
            "6d15f8f565f81ca17757f8569ccb192a1f1e1b2695979a6115221439a5eb67cb"
        );
    }
}
