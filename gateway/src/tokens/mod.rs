//! Tokens the gateway injects: the app's client-credentials token (`app`) and, per user, the
//! tokens of their session (`user`: [`UserTokens`], over the session's record API). Both
//! refresh before expiry, one refresh at a time; the freshness rule is here.

pub mod app;
pub mod failure_hold;
pub mod user;

pub use user::UserTokens;

use std::time::Duration;

/// How long before expiry a token counts as stale: a minute for Spotify's one-hour tokens, a
/// fifth of the lifetime for short ones, so a request never leaves with a token that dies on
/// the way.
pub fn refresh_margin(lifetime: Duration) -> Duration {
    (lifetime / 5).min(Duration::from_secs(60))
}

/// True while a token expiring at `expires_at_ms` may still be sent.
pub fn is_fresh(expires_at_ms: u64, lifetime: Duration) -> bool {
    let margin = refresh_margin(lifetime).as_millis() as u64;
    crate::clock::now_ms() + margin < expires_at_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margin_is_a_minute_for_long_tokens_and_a_fifth_for_short_ones() {
        assert_eq!(
            refresh_margin(Duration::from_secs(3600)),
            Duration::from_secs(60)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(5)),
            Duration::from_secs(1)
        );
    }
}
