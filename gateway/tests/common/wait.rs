//! Waiting for something that takes a moment: one helper instead of hand-written poll loops.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

/// How often [`wait_until`] checks its condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// When a wait gives up: at an [`Instant`] (one deadline shared by several waits), or a
/// [`Duration`] from now.
pub trait Deadline {
    fn deadline(self) -> Instant;
}

impl Deadline for Instant {
    fn deadline(self) -> Instant {
        self
    }
}

impl Deadline for Duration {
    fn deadline(self) -> Instant {
        Instant::now() + self
    }
}

/// Checks `condition` every [`POLL_INTERVAL`] until it holds. Panics, naming `what` was
/// awaited, when it still does not hold at the deadline.
///
/// The condition is always checked at least once, and once more at the deadline. It may
/// assert on what it sees on the way (a panic in it fails the test at once).
///
/// ```ignore
/// wait_until(Duration::from_secs(5), "redis-server to answer PING", || server.answers_ping()).await;
/// ```
pub async fn wait_until<F, Fut>(within: impl Deadline, what: impl Display, condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_until_explained(within, what, condition, String::new).await;
}

/// [`wait_until`], with `explain()` (a log, say) added to the panic message.
pub async fn wait_until_explained<F, Fut>(
    within: impl Deadline,
    what: impl Display,
    mut condition: F,
    explain: impl FnOnce() -> String,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    let deadline = within.deadline();
    loop {
        if condition().await {
            return;
        }
        let now = Instant::now();
        if now >= deadline {
            let explanation = explain();
            let sep = if explanation.is_empty() { "" } else { ":\n" };
            panic!(
                "gave up after {:?} waiting for {what}{sep}{explanation}",
                now - started
            );
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
    }
}

/// The wall clock as Unix seconds (expiry claims, `reauth_by`).
pub fn now_secs() -> u64 {
    now_millis() / 1000
}

/// The wall clock as Unix milliseconds (the store's record times).
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}
