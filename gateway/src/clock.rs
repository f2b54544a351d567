//! The wall clock, in the unit every expiry is stored in.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix milliseconds: token, session and record expiries are stored in this unit, so they
/// mean the same on every replica.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
