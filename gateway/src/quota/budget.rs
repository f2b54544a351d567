//! A budget of calls to Spotify per rolling 30 seconds (`egress.budget_per_30s`), so that
//! Spotify never has to say 429: every attempt that goes to Spotify (retries and
//! revalidations included; cache hits and coalesced copies cost nothing) takes one call from
//! it. On the Redis store the window is shared by every replica (a sorted set of call times,
//! trimmed and counted in one script, on Redis's clock); otherwise it is this process's.
//!
//! When the budget is tight, calls for a signed-in user go first: app-token calls may only
//! use `APP_SHARE` of it. A call over budget waits for room within its deadline (at most
//! `MAX_WAIT`), else the gateway answers 429 itself with the time until room.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::clock::now_ms;
use crate::metrics::Metrics;
use crate::store::Store;

/// Spotify's window.
pub const WINDOW: Duration = Duration::from_secs(30);
/// The part of the budget app-token (background) calls may use; the rest is kept for users.
const APP_SHARE: f64 = 0.75;
/// The longest a call waits for room in the budget.
const MAX_WAIT: Duration = Duration::from_secs(5);

/// Whose call it is, for who goes first when the budget is tight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    User,
    App,
}

pub struct Budget {
    limit: u32,
    store: Arc<dyn Store>,
    /// Call times (unix ms) in the window, when the store shares no budget.
    local: Mutex<VecDeque<u64>>,
    metrics: Arc<Metrics>,
}

impl Budget {
    pub fn new(limit: u32, store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Budget {
        for result in ["taken", "waited", "refused"] {
            metrics.budget.with_label_values(&[result]);
        }
        Budget {
            limit,
            store,
            local: Mutex::new(VecDeque::new()),
            metrics,
        }
    }

    fn limit_for(&self, priority: Priority) -> u32 {
        match priority {
            Priority::User => self.limit,
            Priority::App => ((f64::from(self.limit) * APP_SHARE) as u32).max(1),
        }
    }

    /// Takes one call, waiting for room until `deadline` and at most `MAX_WAIT` after
    /// `arrived` (when the call came in); `Err` with the time until room when there is none
    /// in time. Counted from the arrival, so a call that has already waited (for an identical
    /// call in flight whose leader got no room, then leading itself) does not wait `MAX_WAIT`
    /// once more: behind a chain of such leaders each caller waited up to `MAX_WAIT` per
    /// leader before it.
    pub async fn take(
        &self,
        priority: Priority,
        arrived: Instant,
        deadline: Instant,
    ) -> Result<(), Duration> {
        let limit = self.limit_for(priority);
        let give_up = deadline.min(arrived + MAX_WAIT);
        let mut waited = false;
        loop {
            let wait = match self.try_take(limit).await {
                None => {
                    let result = if waited { "waited" } else { "taken" };
                    self.metrics.budget.with_label_values(&[result]).inc();
                    return Ok(());
                }
                Some(wait) => wait,
            };
            let now = Instant::now();
            if now + wait > give_up {
                self.metrics.budget.with_label_values(&["refused"]).inc();
                return Err(wait);
            }
            waited = true;
            // Room may come sooner (another replica's call leaves the window): look again.
            tokio::time::sleep(wait.min(Duration::from_millis(250))).await;
        }
    }

    /// One attempt: `None` when taken, else the time until the oldest call leaves the window.
    async fn try_take(&self, limit: u32) -> Option<Duration> {
        match self.store.take_budget(limit, WINDOW).await {
            Ok(Some(taken)) => return taken,
            Ok(None) => {}
            Err(e) => {
                // A budget that cannot be shared is kept here: never more calls than it allows
                // from this replica, and no call fails because Redis did.
                tracing::warn!(error = %e, "shared budget unavailable; counting locally");
            }
        }
        self.take_local(limit, now_ms())
    }

    fn take_local(&self, limit: u32, now: u64) -> Option<Duration> {
        let window = WINDOW.as_millis() as u64;
        let mut calls = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        while calls.front().is_some_and(|t| t + window <= now) {
            calls.pop_front();
        }
        if calls.len() < limit as usize {
            calls.push_back(now);
            return None;
        }
        let oldest = calls.front().copied().unwrap_or(now);
        Some(Duration::from_millis(
            (oldest + window).saturating_sub(now).max(1),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn a_call_waits_at_most_max_wait_from_its_arrival() {
        let b = Budget::new(
            1,
            Arc::new(MemoryStore::default()),
            Arc::new(Metrics::new()),
        );
        // The window is full and frees in about 1 s.
        b.local
            .lock()
            .expect("lock")
            .push_back(now_ms() - WINDOW.as_millis() as u64 + 1000);
        let far = Instant::now() + Duration::from_secs(30);
        let started = Instant::now();
        let late = started - (MAX_WAIT - Duration::from_millis(500));
        assert!(
            b.take(Priority::User, late, far).await.is_err(),
            "arrived 4.5 s ago: 0.5 s left of its wait, room in 1 s"
        );
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "refused at once"
        );
        assert!(
            b.take(Priority::User, Instant::now(), far).await.is_ok(),
            "just arrived: waits the second"
        );
        assert!(started.elapsed() >= Duration::from_millis(900));
    }

    #[test]
    fn the_window_allows_the_limit_and_users_go_before_app_calls() {
        let b = Budget::new(
            4,
            Arc::new(MemoryStore::default()),
            Arc::new(Metrics::new()),
        );
        assert_eq!(b.limit_for(Priority::App), 3);
        for _ in 0..3 {
            assert!(b.take_local(b.limit_for(Priority::App), 1000).is_none());
        }
        let wait = b.take_local(b.limit_for(Priority::App), 2000);
        assert_eq!(
            wait,
            Some(Duration::from_millis(29_000)),
            "app calls are held"
        );
        assert!(
            b.take_local(b.limit_for(Priority::User), 2000).is_none(),
            "a user goes"
        );
        assert!(b.take_local(4, 2000).is_some(), "full");
        assert!(
            b.take_local(4, 31_000).is_none(),
            "the first calls left the window"
        );
    }
}
