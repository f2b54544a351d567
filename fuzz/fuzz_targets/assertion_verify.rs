//! `assertion::verify`: the egress listener's check of `X-Gateway-User` (and of a bearer token
//! that may be one). Arbitrary input must never panic and never verify; what the gateway
//! issues verifies with its own keys only, with the same claims.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use spotify_gateway::proxy::assertion::{issue, verify};
use spotify_gateway::secret::Secret;
use spotify_gateway::crypto::Keyring;

fn keys() -> &'static Keyring {
    static KEYS: OnceLock<Keyring> = OnceLock::new();
    KEYS.get_or_init(|| {
        Keyring::new(
            &Secret::runtime("fuzz-session-secret-0123456789abcdef-0123"),
            Some(&Secret::runtime(
                "fuzz-previous-secret-0123456789abcdef-012",
            )),
        )
    })
}

/// Another deployment.
fn other_keys() -> &'static Keyring {
    static KEYS: OnceLock<Keyring> = OnceLock::new();
    KEYS.get_or_init(|| {
        Keyring::new(
            &Secret::runtime("another-deployment-secret-0123456789abcdef"),
            None,
        )
    })
}

/// `verify` refuses longer tokens outright.
const MAX_TOKEN: usize = 2048;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // A forgery that verifies would let any caller act as any user.
    assert!(verify(keys(), &text).is_none(), "arbitrary input verified");

    let (user, sid) = text.split_once('\n').unwrap_or((&text, "session-key"));
    let token = issue(keys(), user, sid);
    match verify(keys(), &token) {
        Some(claims) => {
            assert_eq!(claims.sub, user);
            assert_eq!(claims.sid, sid);
        }
        None => assert!(token.len() > MAX_TOKEN, "a fresh assertion was refused"),
    }
    assert!(verify(other_keys(), &token).is_none(), "another deployment");
});
