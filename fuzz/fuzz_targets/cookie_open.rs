//! `Keyring::open`: decodes every session and login cookie a browser sends and every record
//! read back from the store. Arbitrary input must never panic and never open; what the
//! keyring sealed opens again, and only for the same purpose and context.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use spotify_gateway::secret::Secret;
use spotify_gateway::crypto::{Keyring, Purpose};

const PURPOSES: [Purpose; 3] = [
    Purpose::SessionCookie,
    Purpose::LoginCookie,
    Purpose::StoredRecord,
];

/// A keyring during a rotation, so both the current and the previous keys are tried.
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

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let purpose = PURPOSES[usize::from(selector % 3)];
    // The context (a store key) and the value, split at the first NUL.
    let (context, value) = match rest.iter().position(|b| *b == 0) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (&b""[..], rest),
    };
    let keys = keys();
    if let Ok(text) = std::str::from_utf8(value) {
        // Opening arbitrary input would be a forgery.
        assert!(
            keys.open(purpose, context, text).is_none(),
            "arbitrary input opened"
        );
    }

    let sealed = keys.seal(purpose, context, value);
    assert_eq!(keys.open(purpose, context, &sealed).as_deref(), Some(value));
    let other = PURPOSES[(usize::from(selector % 3) + 1) % 3];
    assert!(
        keys.open(other, context, &sealed).is_none(),
        "other purpose"
    );
    let mut other_context = context.to_vec();
    other_context.push(b'x');
    assert!(
        keys.open(purpose, &other_context, &sealed).is_none(),
        "other context"
    );
    assert!(
        keys.open(purpose, context, &sealed[..sealed.len() - 1])
            .is_none(),
        "truncated"
    );
});
