//! What the store's recent operations say of it, for a call whose deadline passed while it
//! waited: was the store the cause (503, the store named) or something else, Spotify's token
//! endpoint (504)? A leaf the instrumented wrapper (`store/mod.rs`) feeds.
//!
//! The store is taken to be in trouble since an instant when an operation has failed
//! (unavailable) since then, or when operations are under way and none has succeeded since
//! then (a store that hangs: nothing fails before the call's deadline, nothing succeeds
//! either). A store that answers, even slowly, is not in trouble: a call that waited past
//! its deadline then waited for something else.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use super::api::{StoreErrorKind, StoreResult};

/// The instant times are counted from (milliseconds, plus one so 0 means "never").
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn ms(at: Instant) -> u64 {
    at.saturating_duration_since(base()).as_millis() as u64 + 1
}

#[derive(Default)]
pub(super) struct Health {
    in_flight: AtomicUsize,
    last_ok: AtomicU64,
    last_unavailable: AtomicU64,
}

/// An operation under way; `done` records how it ended (dropped unfinished: neither).
pub(super) struct Underway<'a> {
    health: &'a Health,
}

impl Health {
    pub(super) fn begin(&self) -> Underway<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Underway { health: self }
    }

    /// Whether the store has been in trouble since `since` (the module says when).
    pub(super) fn troubled_since(&self, since: Instant) -> bool {
        let since = ms(since);
        self.last_unavailable.load(Ordering::Relaxed) >= since
            || (self.in_flight.load(Ordering::Relaxed) > 0
                && self.last_ok.load(Ordering::Relaxed) < since)
    }
}

impl Underway<'_> {
    /// The operation asked the store and got `result`: a failure counts when the store did
    /// not answer (`Unavailable`), not for a corrupt value or a conflict, which say nothing of
    /// the store's health.
    pub(super) fn done<T>(self, result: &StoreResult<T>) {
        let now = ms(Instant::now());
        let when = match result {
            Ok(_) => &self.health.last_ok,
            Err(e) if e.kind == StoreErrorKind::Unavailable => &self.health.last_unavailable,
            Err(_) => return,
        };
        when.fetch_max(now, Ordering::Relaxed);
    }
}

impl Drop for Underway<'_> {
    fn drop(&mut self) {
        self.health.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::api::StoreError;
    use std::time::Duration;

    fn corrupt() -> StoreError {
        StoreError::new(StoreErrorKind::Corrupt, "redis", "read", "bad")
    }

    fn unavailable() -> StoreError {
        StoreError::unavailable("redis", "read", "down")
    }

    #[test]
    fn a_failure_or_a_hang_since_the_call_is_trouble_a_success_is_not() {
        // Times are kept in milliseconds: the short sleeps make the next instant a later one.
        let h = Health::default();
        let before = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        let call = Instant::now();
        assert!(!h.troubled_since(call), "nothing under way, nothing failed");

        // An operation hangs: nothing has succeeded since the call arrived.
        let hanging = h.begin();
        assert!(h.troubled_since(call));
        h.begin().done(&Ok(()));
        assert!(
            !h.troubled_since(call),
            "the store answers another operation"
        );
        assert!(!h.troubled_since(before));
        drop(hanging);

        let later = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        h.begin().done::<()>(&Err(corrupt()));
        assert!(
            !h.troubled_since(later),
            "a corrupt value says nothing of the store"
        );
        h.begin().done::<()>(&Err(unavailable()));
        assert!(
            h.troubled_since(later),
            "an unavailable store since the call"
        );
        std::thread::sleep(Duration::from_millis(2));
        assert!(!h.troubled_since(Instant::now()), "not since a later call");
    }
}
