//! Holding a failure's answer for a while, longer for each failure in a row: after a failed
//! token request, callers get the same error at once until the hold passes, instead of each
//! sending another request to an endpoint that just failed. A burst of N calls then costs one
//! request, whether the endpoint works or not.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The hold after a first failure; it doubles with each failure in a row.
const FIRST_HOLD: Duration = Duration::from_secs(1);
/// The longest hold: a recovered endpoint is tried again within this.
const MAX_HOLD: Duration = Duration::from_secs(30);

/// The last failure and until when its answer stands.
pub struct FailureHold<E> {
    state: Mutex<Option<Held<E>>>,
}

struct Held<E> {
    error: E,
    until: Instant,
    in_a_row: u32,
}

impl<E: Clone> Default for FailureHold<E> {
    fn default() -> Self {
        FailureHold {
            state: Mutex::new(None),
        }
    }
}

impl<E: Clone> FailureHold<E> {
    /// The held error while its hold lasts.
    pub fn held(&self) -> Option<E> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .as_ref()
            .filter(|h| Instant::now() < h.until)
            .map(|h| h.error.clone())
    }

    /// A failure: hold its answer, twice as long as the last one if it failed too.
    pub fn fail(&self, error: E) -> Duration {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let in_a_row = state.as_ref().map_or(1, |h| h.in_a_row.saturating_add(1));
        let hold = FIRST_HOLD
            .saturating_mul(1 << (in_a_row - 1).min(5))
            .min(MAX_HOLD);
        *state = Some(Held {
            error,
            until: Instant::now() + hold,
            in_a_row,
        });
        hold
    }

    /// A success: the next failure starts the backoff afresh.
    pub fn clear(&self) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hold_doubles_per_failure_in_a_row_and_a_success_resets_it() {
        let h = FailureHold::<&str>::default();
        assert_eq!(h.held(), None);
        assert_eq!(h.fail("down"), Duration::from_secs(1));
        assert_eq!(h.held(), Some("down"));
        assert_eq!(h.fail("down"), Duration::from_secs(2));
        assert_eq!(h.fail("down"), Duration::from_secs(4));
        for _ in 0..10 {
            h.fail("down");
        }
        assert_eq!(h.fail("down"), MAX_HOLD);
        h.clear();
        assert_eq!(h.held(), None);
        assert_eq!(h.fail("down"), FIRST_HOLD);
    }
}
