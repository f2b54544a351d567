//! The cool-down after Spotify's 429, shared by every replica.
//!
//! A replica that receives a 429 holds all calls until `Retry-After` has passed, and
//! publishes the hold through the store (`Store::publish_cool_down`: Redis pub/sub, plus a key
//! a replica reads when it subscribes). A hold the store does not take (Redis is down) is
//! announced again every `ANNOUNCE_RETRY` while it runs, what is left of it each time, so the
//! other replicas hold too as soon as the store is back. Every replica follows the published
//! holds in the background and keeps the longest in memory, so checking it on the hot path is
//! one atomic load: no Redis round trip. With the memory or file store there is one process, and the
//! hold stays local. The hold covers every call of the app, the app token's and every user's
//! alike. With several apps (`[[apps]]`) each has its cool-down: a plain 429 (the app's rate
//! limit) holds that app only, while `QUOTA_EXCEEDED` (the developer account's quota, shared
//! by its apps) also holds the [`AccountHold`] every app of that `developer_account` checks.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus::IntGauge;

use crate::clock::now_ms;
use crate::store::{CoolDownNotice, Store};
use crate::telemetry::metrics::Metrics;

/// Cool-down after a 429 that carried no usable `Retry-After`.
pub const DEFAULT_RETRY_AFTER_SECS: u64 = 1;
/// How often a hold the store did not take is announced again. Other replicas learn a hold
/// within a second of the store's return: this, a round trip, and their own resubscription.
const ANNOUNCE_RETRY: Duration = Duration::from_millis(100);

/// Why Spotify refused: a bounded label on the rate-limit counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// `"reason":"QUOTA_EXCEEDED"`: the developer account's quota is spent.
    QuotaExceeded,
    /// The rolling 30-second rate limit (no reason given).
    RateLimited,
}

impl Reason {
    pub const ALL: [Reason; 2] = [Reason::QuotaExceeded, Reason::RateLimited];

    pub fn label(self) -> &'static str {
        match self {
            Reason::QuotaExceeded => "quota_exceeded",
            Reason::RateLimited => "rate_limited",
        }
    }

    fn of(notice: &CoolDownNotice) -> Reason {
        if notice.quota_exceeded {
            Reason::QuotaExceeded
        } else {
            Reason::RateLimited
        }
    }
}

/// `QUOTA_EXCEEDED` for one developer account: no call of any of its apps leaves before
/// `blocked_until_ms` (unix milliseconds).
#[derive(Default)]
pub struct AccountHold {
    blocked_until_ms: AtomicU64,
    /// `rate_limit_blocked_until_timestamp_seconds{app}` of each of its apps, resolved once:
    /// the account's hold is every one's.
    gauges: Vec<IntGauge>,
}

impl AccountHold {
    /// The hold of the developer account whose apps are `apps`.
    pub fn of_apps(apps: &[&str], metrics: &Metrics) -> AccountHold {
        AccountHold {
            blocked_until_ms: AtomicU64::new(0),
            gauges: apps
                .iter()
                .map(|app| metrics.rate_limit_blocked_until.with_label_values(&[app]))
                .collect(),
        }
    }

    /// Holds every app of the account until `until_ms` (or the longer hold it has).
    fn extend(&self, until_ms: u64) {
        self.blocked_until_ms.fetch_max(until_ms, Ordering::SeqCst);
        for gauge in &self.gauges {
            raise(gauge, until_ms);
        }
    }
}

/// Raises a held-until gauge (unix seconds) to `until_ms`, never lowers it: a gauge in the
/// past says calls flow.
fn raise(gauge: &IntGauge, until_ms: u64) {
    let until_s = until_ms.div_ceil(1000) as i64;
    if until_s > gauge.get() {
        gauge.set(until_s);
    }
}

/// No call leaves before `blocked_until_ms`, nor before the account's hold.
pub struct CoolDown {
    /// The app whose calls it holds (the `app` label of its counters).
    app: String,
    /// `rate_limit_blocked_until_timestamp_seconds{app}`, resolved once.
    blocked_until_gauge: IntGauge,
    /// The developer account's `QUOTA_EXCEEDED`, shared with its other apps.
    account: Arc<AccountHold>,
    /// Unix milliseconds.
    blocked_until_ms: AtomicU64,
    /// The reason of the hold that set `blocked_until_ms`.
    quota_exceeded: AtomicBool,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    /// A hold here that the other replicas have not been told about yet.
    unannounced: AtomicBool,
    /// A task is announcing (`announce`): at most one at a time.
    announcing: AtomicBool,
}

impl CoolDown {
    /// A cool-down that follows the holds other replicas publish through `store` (when it is
    /// shared), on the I/O runtime.
    pub fn new(store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Arc<CoolDown> {
        Self::of_account(store, metrics, crate::config::DEFAULT_APP, Arc::default())
    }

    /// [`CoolDown::new`] for the app `app` of the developer account `account` holds.
    pub fn of_account(
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        app: &str,
        account: Arc<AccountHold>,
    ) -> Arc<CoolDown> {
        for reason in Reason::ALL {
            metrics
                .spotify_rate_limited
                .with_label_values(&[app, reason.label()]);
            metrics
                .rate_limited_local
                .with_label_values(&[app, reason.label()]);
        }
        let cool_down = Arc::new(CoolDown {
            app: app.to_string(),
            blocked_until_gauge: metrics.rate_limit_blocked_until.with_label_values(&[app]),
            account,
            blocked_until_ms: AtomicU64::new(0),
            quota_exceeded: AtomicBool::new(false),
            store: Arc::clone(&store),
            metrics,
            unannounced: AtomicBool::new(false),
            announcing: AtomicBool::new(false),
        });
        if let Some(mut notices) = store.cool_downs() {
            let follower = Arc::downgrade(&cool_down);
            let follow = async move {
                while let Some(notice) = notices.recv().await {
                    let Some(cool_down) = follower.upgrade() else {
                        return;
                    };
                    cool_down.extend(notice.hold_ms, Reason::of(&notice));
                }
            };
            match crate::runtime::io_home() {
                Ok(home) => {
                    home.spawn(follow);
                }
                Err(e) => tracing::error!(error = %e, "cannot follow other replicas' cool-downs"),
            }
        }
        cool_down
    }

    /// Time left in the cool-down and why, if any: one atomic load when there is none.
    pub fn remaining(&self) -> Option<(Duration, Reason)> {
        let until = self.blocked_until_ms.load(Ordering::SeqCst);
        let account_until = self.account.blocked_until_ms.load(Ordering::SeqCst);
        let now = now_ms();
        if until.max(account_until) <= now {
            return None;
        }
        if account_until > until {
            return Some((
                Duration::from_millis(account_until - now),
                Reason::QuotaExceeded,
            ));
        }
        let reason = if self.quota_exceeded.load(Ordering::SeqCst) {
            Reason::QuotaExceeded
        } else {
            Reason::RateLimited
        };
        Some((Duration::from_millis(until - now), reason))
    }

    /// Holds this replica's calls for `hold_ms` at once (while Spotify's answer is still
    /// being read); `report` then tells everyone.
    pub fn hold_here(&self, hold_ms: u64) {
        self.extend(hold_ms, Reason::RateLimited);
    }

    /// Spotify answered 429 for `reason` with a hold of `hold_ms`: counted, held here, and
    /// published to every replica (in the background: the answer does not wait for Redis).
    pub fn report(self: &Arc<Self>, hold_ms: u64, reason: Reason) {
        self.metrics
            .spotify_rate_limited
            .with_label_values(&[&self.app, reason.label()])
            .inc();
        self.extend(hold_ms, reason);
        tracing::warn!(
            retry_after_s = hold_ms / 1000,
            reason = reason.label(),
            "Spotify rate limit: holding calls on every replica"
        );
        self.announce();
    }

    /// Tells every replica about the running hold, in the background, until the store takes
    /// it or the hold is over (one task at a time; a later hold rides on the running task).
    fn announce(self: &Arc<Self>) {
        self.unannounced.store(true, Ordering::SeqCst);
        if self.announcing.swap(true, Ordering::SeqCst) {
            return;
        }
        let this = Arc::clone(self);
        match crate::runtime::io_home() {
            Ok(home) => {
                home.spawn(async move { this.announce_until_taken().await });
            }
            Err(e) => {
                self.announcing.store(false, Ordering::SeqCst);
                tracing::error!(error = %e, "cannot publish the cool-down");
            }
        }
    }

    async fn announce_until_taken(&self) {
        let mut refused = false;
        loop {
            if !self.unannounced.swap(false, Ordering::SeqCst) {
                self.announcing.store(false, Ordering::SeqCst);
                // A hold reported between the swap and the store above found this task
                // still announcing and left it to us.
                if self.unannounced.load(Ordering::SeqCst)
                    && !self.announcing.swap(true, Ordering::SeqCst)
                {
                    continue;
                }
                return;
            }
            // What is left of the longest hold now (it may have grown meanwhile); none: over.
            let Some((left, reason)) = self.remaining() else {
                continue;
            };
            let notice = CoolDownNotice {
                hold_ms: (left.as_millis() as u64).max(1),
                quota_exceeded: reason == Reason::QuotaExceeded,
                // The app's view of the store names it.
                app: None,
            };
            match self.store.publish_cool_down(notice).await {
                Ok(()) if refused => {
                    refused = false;
                    tracing::info!("the store is back: the running cool-down is announced");
                }
                Ok(()) => {}
                Err(e) => {
                    if !refused {
                        tracing::warn!(
                            error = %e,
                            "could not tell other replicas about Spotify's 429; announcing it \
                             again until the store takes it"
                        );
                    }
                    refused = true;
                    self.unannounced.store(true, Ordering::SeqCst);
                    tokio::time::sleep(ANNOUNCE_RETRY).await;
                }
            }
        }
    }

    /// A call answered 429 here during the cool-down.
    pub fn refused_locally(&self, reason: Reason) {
        self.metrics
            .rate_limited_local
            .with_label_values(&[&self.app, reason.label()])
            .inc();
    }

    /// Keeps the longer of the running hold and `hold_ms` from now.
    fn extend(&self, hold_ms: u64, reason: Reason) {
        let until = now_ms().saturating_add(hold_ms);
        if reason == Reason::QuotaExceeded {
            self.account.extend(until);
        }
        let before = self.blocked_until_ms.fetch_max(until, Ordering::SeqCst);
        if until > before {
            self.quota_exceeded
                .store(reason == Reason::QuotaExceeded, Ordering::SeqCst);
            raise(&self.blocked_until_gauge, until);
        } else if until + 1000 > before && reason == Reason::QuotaExceeded {
            // The same hold, now known to be the quota's (`hold_here`, then `report`).
            self.quota_exceeded.store(true, Ordering::SeqCst);
        }
    }
}

/// Spotify's `Retry-After` (seconds) as a hold in milliseconds; a missing or unreadable one
/// holds `DEFAULT_RETRY_AFTER_SECS`.
pub fn hold_ms(retry_after: Option<&str>) -> u64 {
    retry_after
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_RETRY_AFTER_SECS)
        .saturating_mul(1000)
}

/// Whole seconds to announce in a local 429's `Retry-After` (at least 1).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_millis().div_ceil(1000).max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn cool_down() -> Arc<CoolDown> {
        CoolDown::new(Arc::new(MemoryStore::default()), Arc::new(Metrics::new()))
    }

    #[test]
    fn the_cool_down_keeps_the_longest_hold_and_its_reason() {
        let c = cool_down();
        assert!(c.remaining().is_none());
        assert_eq!(hold_ms(Some(" 5 ")), 5000);
        assert_eq!(hold_ms(Some("soon")), DEFAULT_RETRY_AFTER_SECS * 1000);
        c.hold_here(5000);
        let (left, reason) = c.remaining().expect("blocked");
        assert_eq!(reason, Reason::RateLimited);
        assert!(left > Duration::from_secs(4) && left <= Duration::from_secs(5));
        assert_eq!(retry_after_secs(left), 5);
        c.extend(5000, Reason::QuotaExceeded);
        assert_eq!(c.remaining().expect("blocked").1, Reason::QuotaExceeded);
        c.extend(1000, Reason::RateLimited);
        let (left, reason) = c.remaining().expect("blocked");
        assert!(
            left > Duration::from_secs(4),
            "a shorter hold changes nothing"
        );
        assert_eq!(reason, Reason::QuotaExceeded);
        let gauge = c
            .metrics
            .rate_limit_blocked_until
            .with_label_values(&[crate::config::DEFAULT_APP]);
        assert!(gauge.get() as u64 >= now_ms() / 1000 + 4);
    }

    #[test]
    fn quota_exceeded_holds_every_app_of_the_account_and_a_plain_429_one() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let metrics = Arc::new(Metrics::new());
        let acme = Arc::new(AccountHold::of_apps(&["radio", "charts"], &metrics));
        let radio = CoolDown::of_account(store.clone(), metrics.clone(), "radio", acme.clone());
        let charts = CoolDown::of_account(store.clone(), metrics.clone(), "charts", acme);
        let solo = CoolDown::of_account(store, metrics.clone(), "solo", Arc::default());
        let held_until = |app: &str| {
            let gauge = metrics.rate_limit_blocked_until.with_label_values(&[app]);
            gauge.get() as u64
        };
        radio.extend(5000, Reason::RateLimited);
        assert!(radio.remaining().is_some());
        assert!(
            charts.remaining().is_none(),
            "a plain 429 holds its app only"
        );
        assert!(held_until("radio") >= now_ms() / 1000 + 4);
        assert_eq!(held_until("charts"), 0, "the gauge says which app is held");
        charts.extend(9000, Reason::QuotaExceeded);
        let (left, reason) = radio.remaining().expect("the account's hold");
        assert_eq!(reason, Reason::QuotaExceeded);
        assert!(left > Duration::from_secs(8));
        assert!(solo.remaining().is_none(), "another account");
        for app in ["radio", "charts"] {
            assert!(held_until(app) >= now_ms() / 1000 + 8, "{app}");
        }
        assert_eq!(held_until("solo"), 0);
    }
}
