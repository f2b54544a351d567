//! How often one session may be given a playback token (`[playback] max_per_minute`): a fixed
//! one-minute window per session, in this replica's memory. A leaf: it imports nothing of the
//! gateway.
//!
//! Per replica on purpose: the limit bounds what a page's scripts can pull out of a session
//! (the SDK asks once when it connects and again before each hour's token expires), not a
//! shared budget; behind N replicas a session gets at most N times the limit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Past this many sessions in memory, windows that have ended are dropped at the next issue.
const PRUNE_ABOVE: usize = 1024;

/// The windows of the sessions that asked lately, by a keyed hash of the session (never the
/// session key itself).
#[derive(Default)]
pub struct PlaybackLimit {
    windows: Mutex<HashMap<String, Window>>,
}

struct Window {
    started: Instant,
    issued: u32,
}

impl PlaybackLimit {
    /// Whether the session named by `id` may have one more token now (counted when it may);
    /// else how long until its window ends.
    pub fn admit(&self, id: &str, max_per_minute: u32, now: Instant) -> Result<(), Duration> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() > PRUNE_ABOVE {
            windows.retain(|_, w| now.duration_since(w.started) < WINDOW);
        }
        let window = windows.entry(id.to_string()).or_insert(Window {
            started: now,
            issued: 0,
        });
        if now.duration_since(window.started) >= WINDOW {
            *window = Window {
                started: now,
                issued: 0,
            };
        }
        if window.issued >= max_per_minute {
            return Err(WINDOW.saturating_sub(now.duration_since(window.started)));
        }
        window.issued += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_session_has_its_own_minute() {
        let limit = PlaybackLimit::default();
        let t0 = Instant::now();
        assert!(limit.admit("a", 2, t0).is_ok());
        assert!(limit.admit("a", 2, t0).is_ok());
        let wait = limit
            .admit("a", 2, t0 + Duration::from_secs(20))
            .expect_err("third");
        assert_eq!(wait, Duration::from_secs(40));
        assert!(limit.admit("b", 2, t0).is_ok(), "another session");
        assert!(limit.admit("a", 2, t0 + WINDOW).is_ok(), "a new minute");
    }

    #[test]
    fn ended_windows_are_dropped_when_many_sessions_asked() {
        let limit = PlaybackLimit::default();
        let t0 = Instant::now();
        for i in 0..=PRUNE_ABOVE {
            assert!(limit.admit(&i.to_string(), 1, t0).is_ok());
        }
        assert!(limit.admit("late", 1, t0 + WINDOW).is_ok());
        let held = limit.windows.lock().map(|w| w.len()).unwrap_or_default();
        assert_eq!(held, 1, "only the live window is kept");
    }
}
