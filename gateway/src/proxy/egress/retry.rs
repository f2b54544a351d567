//! When a call to Spotify is tried again: idempotent calls (or any call that never reached
//! Spotify) after a connection failure or a 502/503/504, with exponential backoff and full
//! jitter, within the call's deadline. (The cool-down after a 429 is `quota::CoolDown`.)

use std::time::{Duration, Instant};

/// First backoff before a retry; doubles per attempt, with full jitter.
const RETRY_BASE: Duration = Duration::from_millis(100);
const RETRY_CAP: Duration = Duration::from_secs(2);

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
}
