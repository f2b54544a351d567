//! A budget of calls to Spotify per rolling 30 seconds (`egress.budget_per_30s`), so that
//! Spotify never has to say 429: every attempt that goes to Spotify (retries and
//! revalidations included; cache hits and coalesced copies cost nothing) takes one call from
//! it. There is one budget per developer account (`[[apps]] developer_account`), spent by its
//! apps together; two accounts never share one. On the Redis store each account's window is
//! shared by every replica (a sorted set of call times, trimmed and counted in one script, on
//! Redis's clock); otherwise it is this process's.
//!
//! While the shared window cannot be reached, each replica counts its own calls in memory.
//! Spotify counted those calls all the same, so when the store is back they are added to the
//! shared window with their ages (`share_local_calls`, retried every `SHARE_RETRY`): the
//! replicas' shared count then covers the rest of Spotify's 30 s, instead of starting from
//! what was there before the outage. (During the outage each replica only knows its own
//! calls: up to one budget per replica may go out then.)
//!
//! When the budget is tight, calls for a signed-in user go first: app-token calls may only
//! take `APP_SHARE` of it (they are counted apart), so a quarter of the window is always left
//! for users; users' calls do not shrink what app-token calls may take below that. A call over budget waits for room within its deadline (at most
//! `MAX_WAIT`), else the gateway answers 429 itself with the time until room.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::clock::now_ms;
use crate::store::{LocalCalls, Store};
use crate::telemetry::metrics::Metrics;

/// Spotify's window.
pub const WINDOW: Duration = Duration::from_secs(30);
/// The part of the budget app-token (background) calls may take; the rest is kept for users.
const APP_SHARE: f64 = 0.75;
/// The longest a call waits for room in the budget.
const MAX_WAIT: Duration = Duration::from_secs(5);
/// How often calls counted in memory during an outage are offered to the shared window again.
const SHARE_RETRY: Duration = Duration::from_millis(250);

/// Whose call it is, for who goes first when the budget is tight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    User,
    App,
}

pub struct Budget {
    limit: u32,
    /// The developer account whose window this is on a shared store: `None` for the default
    /// one (the window a single-app gateway keeps, under the names earlier releases used).
    account: Option<String>,
    store: Arc<dyn Store>,
    /// Calls in the window when the store shares no budget, or cannot be reached: every
    /// call, and the app-token calls apart. On a shared store, these are the calls the
    /// shared window has not been told about yet.
    local: Mutex<Window>,
    /// A task is adding the local calls to the shared window (`share_local_calls`).
    sharing: AtomicBool,
    metrics: Arc<Metrics>,
}

impl Budget {
    /// The budget of developer account `account` (`None`: the default account), for its
    /// apps `apps` (the `app` label of `budget_total`).
    pub fn new(
        limit: u32,
        account: Option<&str>,
        apps: &[&str],
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
    ) -> Arc<Budget> {
        for app in apps {
            for result in ["taken", "waited", "refused"] {
                metrics.budget.with_label_values(&[app, result]);
            }
        }
        Arc::new(Budget {
            limit,
            account: account.map(str::to_string),
            store,
            local: Mutex::new(Window::default()),
            sharing: AtomicBool::new(false),
            metrics,
        })
    }

    /// How many app-token calls the window may hold (`None` for a user's call).
    fn app_limit(&self, priority: Priority) -> Option<u32> {
        match priority {
            Priority::User => None,
            Priority::App => Some(((f64::from(self.limit) * APP_SHARE) as u32).max(1)),
        }
    }

    /// Takes one call for app `app`, waiting for room until `deadline` and at most `MAX_WAIT` after
    /// `arrived` (when the call came in); `Err` with the time until room when there is none
    /// in time. Counted from the arrival, so a call that has already waited (for an identical
    /// call in flight whose leader got no room, then leading itself) does not wait `MAX_WAIT`
    /// once more: behind a chain of such leaders each caller waited up to `MAX_WAIT` per
    /// leader before it.
    pub async fn take(
        self: &Arc<Self>,
        app: &str,
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
                    self.metrics.budget.with_label_values(&[app, result]).inc();
                    return Ok(());
                }
                Some(wait) => wait,
            };
            let now = Instant::now();
            if now + wait > give_up {
                self.metrics
                    .budget
                    .with_label_values(&[app, "refused"])
                    .inc();
                return Err(wait);
            }
            waited = true;
            // Room may come sooner (another replica's call leaves the window): look again.
            tokio::time::sleep(wait.min(Duration::from_millis(250))).await;
        }
    }

    /// One attempt: `None` when taken, else the time until the oldest call in the way leaves
    /// the window.
    async fn try_take(self: &Arc<Self>, app_limit: Option<u32>) -> Option<Duration> {
        match self
            .store
            .take_budget(self.account.as_deref(), self.limit, app_limit, WINDOW)
            .await
        {
            Ok(Some(taken)) => return taken,
            Ok(None) => return self.take_local(app_limit, now_ms()),
            Err(e) => {
                // A budget that cannot be shared is kept here: never more calls than it allows
                // from this replica, and no call fails because Redis did.
                tracing::warn!(error = %e, "shared budget unavailable; counting locally");
            }
        }
        let taken = self.take_local(app_limit, now_ms());
        if taken.is_none() {
            self.share_later();
        }
        taken
    }

    fn take_local(&self, app_limit: Option<u32>, now: u64) -> Option<Duration> {
        let mut w = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        w.take(self.limit, app_limit, now)
    }

    /// Adds the calls counted here to the shared window once the store takes them, in the
    /// background (one task at a time).
    fn share_later(self: &Arc<Self>) {
        if self.sharing.swap(true, Ordering::SeqCst) {
            return;
        }
        let this = Arc::clone(self);
        match crate::runtime::io_home() {
            Ok(home) => {
                home.spawn(async move { this.share_local_calls().await });
            }
            Err(e) => {
                self.sharing.store(false, Ordering::SeqCst);
                tracing::error!(error = %e, "cannot share the calls counted during the outage");
            }
        }
    }

    async fn share_local_calls(&self) {
        loop {
            let (calls, last) = {
                let w = self.local.lock().unwrap_or_else(PoisonError::into_inner);
                w.unshared(now_ms())
            };
            let Some(last) = last else {
                self.sharing.store(false, Ordering::SeqCst);
                // A call counted here after the look above found this task still running.
                let more = !self
                    .local
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .is_empty();
                if more && !self.sharing.swap(true, Ordering::SeqCst) {
                    continue;
                }
                return;
            };
            if calls.all.is_empty() {
                // All of them out of the window by now: nothing left to tell.
                self.local
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .forget_through(last);
                continue;
            }
            match self
                .store
                .add_budget_calls(self.account.as_deref(), &calls, WINDOW)
                .await
            {
                Ok(()) => {
                    let mut w = self.local.lock().unwrap_or_else(PoisonError::into_inner);
                    w.forget_through(last);
                    tracing::info!(
                        calls = calls.all.len(),
                        "the shared budget is back: the calls counted during the outage are in it"
                    );
                }
                Err(_) => tokio::time::sleep(SHARE_RETRY).await,
            }
        }
    }
}

/// This process's window (as the Redis script keeps the shared one): call times (unix ms),
/// each with a sequence number so the calls the shared window took can be told from later
/// ones.
#[derive(Default)]
struct Window {
    all: VecDeque<(u64, u64)>,
    app: VecDeque<(u64, u64)>,
    next: u64,
}

impl Window {
    fn take(&mut self, limit: u32, app_limit: Option<u32>, now: u64) -> Option<Duration> {
        let window = WINDOW.as_millis() as u64;
        for calls in [&mut self.all, &mut self.app] {
            while calls.front().is_some_and(|(t, _)| t + window <= now) {
                calls.pop_front();
            }
        }
        // Until the oldest call in the way leaves; when both counts are full, the later one.
        let until_room = |calls: &VecDeque<(u64, u64)>| {
            let oldest = calls.front().map_or(now, |(t, _)| *t);
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
        let seq = self.next;
        self.next += 1;
        self.all.push_back((now, seq));
        if app_limit.is_some() {
            self.app.push_back((now, seq));
        }
        None
    }

    fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// The calls still in the window, by age, and the sequence number of the newest.
    fn unshared(&self, now: u64) -> (LocalCalls, Option<u64>) {
        let window = WINDOW.as_millis() as u64;
        let ages = |calls: &VecDeque<(u64, u64)>| {
            calls
                .iter()
                .map(|(t, _)| now.saturating_sub(*t))
                .filter(|age| *age < window)
                .map(Duration::from_millis)
                .collect()
        };
        let calls = LocalCalls {
            all: ages(&self.all),
            app: ages(&self.app),
        };
        (calls, self.all.back().map(|(_, seq)| *seq))
    }

    /// Forgets the calls up to sequence number `last` (the shared window has them).
    fn forget_through(&mut self, last: u64) {
        for calls in [&mut self.all, &mut self.app] {
            while calls.front().is_some_and(|(_, seq)| *seq <= last) {
                calls.pop_front();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn a_call_waits_at_most_max_wait_from_its_arrival() {
        let metrics = Arc::new(Metrics::new());
        let b = Budget::new(
            1,
            None,
            &["default"],
            Arc::new(MemoryStore::default()),
            Arc::clone(&metrics),
        );
        let count = |result: &str| metrics.budget.with_label_values(&["default", result]).get();
        // The window is full and frees in about 1 s.
        b.local
            .lock()
            .expect("lock")
            .all
            .push_back((now_ms() - WINDOW.as_millis() as u64 + 1000, 0));
        let far = Instant::now() + Duration::from_secs(30);
        let late = Instant::now() - (MAX_WAIT - Duration::from_millis(500));
        assert!(
            b.take("default", Priority::User, late, far).await.is_err(),
            "arrived 4.5 s ago: 0.5 s left of its wait, room in 1 s"
        );
        assert_eq!(
            (count("refused"), count("waited")),
            (1, 0),
            "refused, not waited"
        );
        assert!(
            b.take("default", Priority::User, Instant::now(), far)
                .await
                .is_ok(),
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
            None,
            &[],
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
    fn the_calls_counted_here_are_offered_by_age_and_forgotten_once_shared() {
        let mut w = Window::default();
        assert!(w.take(10, None, 1_000).is_none());
        assert!(w.take(10, Some(5), 2_000).is_none());
        let (calls, last) = w.unshared(3_000);
        assert_eq!(
            (calls.all, calls.app),
            (
                vec![Duration::from_millis(2000), Duration::from_millis(1000)],
                vec![Duration::from_millis(1000)]
            )
        );
        // A call counted while the shared window was being told: kept for the next round.
        assert!(w.take(10, Some(5), 3_500).is_none());
        w.forget_through(last.expect("calls"));
        let (calls, _) = w.unshared(4_000);
        assert_eq!(calls.all, vec![Duration::from_millis(500)]);
        assert_eq!(calls.app, vec![Duration::from_millis(500)]);
        assert!(w.unshared(40_000).0.all.is_empty(), "out of the window");
    }

    #[test]
    fn with_app_calls_alone_a_quarter_stays_for_users() {
        let b = Budget::new(
            4,
            None,
            &[],
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
