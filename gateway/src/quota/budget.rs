//! A budget of calls to Spotify per rolling 30 seconds (`egress.budget_per_30s`), so that
//! Spotify never has to say 429: every attempt that goes to Spotify (retries and
//! revalidations included; cache hits and coalesced copies cost nothing) takes one call from
//! it. On the Redis store the window is shared by every replica (a sorted set of call times,
//! trimmed and counted in one script, on Redis's clock); otherwise it is this process's.
//!
//! When the budget is tight, calls for a signed-in user go first: app-token calls may only
//! take `APP_SHARE` of it (they are counted apart), so a quarter of the window is always left
//! for users; users' calls do not shrink what app-token calls may take below that. A call over budget waits for room within its deadline (at most
//! `MAX_WAIT`), else the gateway answers 429 itself with the time until room.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::clock::now_ms;
use crate::metrics::Metrics;
use crate::store::Store;

/// Spotify's window.
pub const WINDOW: Duration = Duration::from_secs(30);
/// The part of the budget app-token (background) calls may take; the rest is kept for users.
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
    /// Call times (unix ms) in the window, when the store shares no budget: every call, and
    /// the app-token calls apart.
    local: Mutex<Window>,
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
            local: Mutex::new(Window::default()),
            metrics,
        }
    }

    /// How many app-token calls the window may hold (`None` for a user's call).
    fn app_limit(&self, priority: Priority) -> Option<u32> {
        match priority {
            Priority::User => None,
            Priority::App => Some(((f64::from(self.limit) * APP_SHARE) as u32).max(1)),
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
        let app_limit = self.app_limit(priority);
        let give_up = deadline.min(arrived + MAX_WAIT);
        let mut waited = false;
        loop {
            let wait = match self.try_take(app_limit).await {
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

    /// One attempt: `None` when taken, else the time until the oldest call in the way leaves
    /// the window.
    async fn try_take(&self, app_limit: Option<u32>) -> Option<Duration> {
        match self.store.take_budget(self.limit, app_limit, WINDOW).await {
            Ok(Some(taken)) => return taken,
            Ok(None) => {}
            Err(e) => {
                // A budget that cannot be shared is kept here: never more calls than it allows
                // from this replica, and no call fails because Redis did.
                tracing::warn!(error = %e, "shared budget unavailable; counting locally");
            }
        }
        self.take_local(app_limit, now_ms())
    }

    fn take_local(&self, app_limit: Option<u32>, now: u64) -> Option<Duration> {
        let mut w = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        w.take(self.limit, app_limit, now)
    }
}

/// This process's window (as the Redis script keeps the shared one).
#[derive(Default)]
struct Window {
    all: VecDeque<u64>,
    app: VecDeque<u64>,
}

impl Window {
    fn take(&mut self, limit: u32, app_limit: Option<u32>, now: u64) -> Option<Duration> {
        let window = WINDOW.as_millis() as u64;
        for calls in [&mut self.all, &mut self.app] {
            while calls.front().is_some_and(|t| t + window <= now) {
                calls.pop_front();
            }
        }
        // Until the oldest call in the way leaves; when both counts are full, the later one.
        let until_room = |calls: &VecDeque<u64>| {
            let oldest = calls.front().copied().unwrap_or(now);
            (oldest + window).saturating_sub(now).max(1)
        };
        let mut wait = 0;
        if self.all.len() >= limit as usize {
            wait = until_room(&self.all);
        }
        if app_limit.is_some_and(|a| self.app.len() >= a as usize) {
            wait = wait.max(until_room(&self.app));
        }
        if wait > 0 {
            return Some(Duration::from_millis(wait));
        }
        self.all.push_back(now);
        if app_limit.is_some() {
            self.app.push_back(now);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn a_call_waits_at_most_max_wait_from_its_arrival() {
        let metrics = Arc::new(Metrics::new());
        let b = Budget::new(1, Arc::new(MemoryStore::default()), Arc::clone(&metrics));
        let count = |result: &str| metrics.budget.with_label_values(&[result]).get();
        // The window is full and frees in about 1 s.
        b.local
            .lock()
            .expect("lock")
            .all
            .push_back(now_ms() - WINDOW.as_millis() as u64 + 1000);
        let far = Instant::now() + Duration::from_secs(30);
        let late = Instant::now() - (MAX_WAIT - Duration::from_millis(500));
        assert!(
            b.take(Priority::User, late, far).await.is_err(),
            "arrived 4.5 s ago: 0.5 s left of its wait, room in 1 s"
        );
        assert_eq!(
            (count("refused"), count("waited")),
            (1, 0),
            "refused, not waited"
        );
        assert!(
            b.take(Priority::User, Instant::now(), far).await.is_ok(),
            "just arrived: waits for the room"
        );
        assert_eq!(
            (count("waited"), count("taken")),
            (1, 0),
            "taken after a wait"
        );
    }

    #[test]
    fn app_calls_take_their_share_and_users_keep_the_rest() {
        let b = Budget::new(
            8,
            Arc::new(MemoryStore::default()),
            Arc::new(Metrics::new()),
        );
        let app = b.app_limit(Priority::App);
        assert_eq!(app, Some(6));
        // Users' calls first: they do not shrink the app-token share.
        for _ in 0..2 {
            assert!(b.take_local(None, 1000).is_none());
        }
        for _ in 0..6 {
            assert!(b.take_local(app, 1500).is_none(), "within the app share");
        }
        assert_eq!(
            b.take_local(app, 2000),
            Some(Duration::from_millis(29_500)),
            "the app share is spent: room when the first app call leaves"
        );
        assert!(
            b.take_local(None, 2000).is_some(),
            "the whole budget is spent"
        );
        // The users' calls leave the window: room for users, not for more app calls.
        assert!(b.take_local(None, 31_100).is_none(), "a user goes");
        assert!(b.take_local(app, 31_100).is_some(), "app calls still held");
        assert!(
            b.take_local(app, 31_600).is_none(),
            "the app calls left too"
        );
    }

    #[test]
    fn with_app_calls_alone_a_quarter_stays_for_users() {
        let b = Budget::new(
            4,
            Arc::new(MemoryStore::default()),
            Arc::new(Metrics::new()),
        );
        let app = b.app_limit(Priority::App);
        for _ in 0..3 {
            assert!(b.take_local(app, 1000).is_none());
        }
        assert_eq!(b.take_local(app, 2000), Some(Duration::from_millis(29_000)));
        assert!(b.take_local(None, 2000).is_none(), "a user goes");
        assert!(b.take_local(None, 2000).is_some(), "full");
        assert!(
            b.take_local(None, 31_000).is_none(),
            "the first calls left the window"
        );
    }
}
