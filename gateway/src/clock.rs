//! The wall clock, in the unit every expiry is stored in.
//!
//! With the cargo feature `test-clock` (the integration tests turn it on; a production build
//! never has it) the clock can be moved forward, so a test sees a token or a cool-down run out
//! without waiting for it: `POST /test/clock?advance_ms=N` on the admin listener (`admin`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix milliseconds: token, session and record expiries are stored in this unit, so they
/// mean the same on every replica.
pub fn now_ms() -> u64 {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    #[cfg(feature = "test-clock")]
    let wall = wall.saturating_add(test_clock::offset_ms());
    wall
}

/// How far a test has moved the clock forward (feature `test-clock` only).
#[cfg(feature = "test-clock")]
pub mod test_clock {
    use std::sync::atomic::{AtomicU64, Ordering};

    static OFFSET_MS: AtomicU64 = AtomicU64::new(0);

    /// The offset [`super::now_ms`] adds to the wall clock.
    pub fn offset_ms() -> u64 {
        OFFSET_MS.load(Ordering::SeqCst)
    }

    /// Moves the clock forward by `ms` (never back: an expiry once passed stays passed);
    /// returns the new offset.
    pub fn advance(ms: u64) -> u64 {
        OFFSET_MS.fetch_add(ms, Ordering::SeqCst).saturating_add(ms)
    }
}
