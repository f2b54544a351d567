//! When a call to Spotify is tried again, and the cool-down after Spotify's 429.
//!
//! Retries: idempotent calls (or any call that never reached Spotify) after a connection
//! failure or a 502/503/504, with exponential backoff and full jitter, within the call's
//! deadline. Cool-down: Spotify's rate limit is per app, so after a 429 no call leaves before
//! its `Retry-After` has passed; callers get a local 429 meanwhile.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::clock::now_ms;

/// First backoff before a retry; doubles per attempt, with full jitter.
const RETRY_BASE: Duration = Duration::from_millis(100);
const RETRY_CAP: Duration = Duration::from_secs(2);
/// Cool-down after a 429 that carried no usable `Retry-After`.
const DEFAULT_RETRY_AFTER_SECS: u64 = 1;

/// What decides whether one more attempt is made.
pub struct Attempt<'a> {
    pub method: &'a http::Method,
    /// pingora still holds the request body, so it can be sent again.
    pub body_replayable: bool,
    /// Attempts made so far.
    pub attempts: u32,
    pub max_retries: u32,
    pub deadline: Option<Instant>,
}

/// The backoff before another attempt, or `None` when the call may not be retried: not
/// idempotent (when the request may have reached Spotify), out of attempts, or the backoff
/// would not fit in the call's deadline.
pub fn backoff(a: &Attempt<'_>, reached_spotify: bool) -> Option<Duration> {
    let idempotent = matches!(
        *a.method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    );
    if reached_spotify && (!idempotent || !a.body_replayable) {
        return None;
    }
    if a.attempts > a.max_retries {
        return None;
    }
    let ceiling = RETRY_BASE
        .saturating_mul(1 << a.attempts.saturating_sub(1).min(10))
        .min(RETRY_CAP);
    let backoff = ceiling.mul_f64(rand::random::<f64>());
    let fits = a.deadline.is_some_and(|d| Instant::now() + backoff < d);
    fits.then_some(backoff)
}

/// After a 429, no call leaves before this instant.
#[derive(Default)]
pub struct CoolDown {
    /// Unix milliseconds.
    blocked_until_ms: AtomicU64,
}

impl CoolDown {
    /// Time left in the cool-down, if any.
    pub fn remaining(&self) -> Option<Duration> {
        let until = self.blocked_until_ms.load(Ordering::SeqCst);
        let now = now_ms();
        (until > now).then(|| Duration::from_millis(until - now))
    }

    /// Spotify answered 429 with this `Retry-After` header (seconds); returns the hold.
    pub fn hold(&self, retry_after: Option<&str>) -> u64 {
        let secs = retry_after
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(DEFAULT_RETRY_AFTER_SECS);
        let until = now_ms() + secs * 1000;
        self.blocked_until_ms.fetch_max(until, Ordering::SeqCst);
        secs
    }
}

/// Whole seconds to announce in a local 429's `Retry-After` (at least 1).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_millis().div_ceil(1000).max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(method: &http::Method, attempts: u32) -> Attempt<'_> {
        Attempt {
            method,
            body_replayable: true,
            attempts,
            max_retries: 2,
            deadline: Some(Instant::now() + Duration::from_secs(30)),
        }
    }

    #[test]
    fn only_idempotent_calls_are_retried_once_spotify_saw_them() {
        let get = http::Method::GET;
        let post = http::Method::POST;
        assert!(backoff(&attempt(&get, 1), true).is_some());
        assert!(backoff(&attempt(&post, 1), true).is_none());
        assert!(backoff(&attempt(&post, 1), false).is_some(), "never sent");
        assert!(
            backoff(&attempt(&get, 3), false).is_none(),
            "out of attempts"
        );
        let mut late = attempt(&get, 1);
        late.deadline = Some(Instant::now());
        assert!(backoff(&late, false).is_none(), "past the deadline");
    }

    #[test]
    fn the_cool_down_keeps_the_longest_hold() {
        let c = CoolDown::default();
        assert!(c.remaining().is_none());
        assert_eq!(c.hold(Some(" 5 ")), 5);
        assert_eq!(c.hold(Some("soon")), DEFAULT_RETRY_AFTER_SECS);
        let left = c.remaining().expect("blocked");
        assert!(left > Duration::from_secs(4) && left <= Duration::from_secs(5));
        assert_eq!(retry_after_secs(left), 5);
    }
}
