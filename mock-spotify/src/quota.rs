//! Spotify's limits as they are counted since 2026-07-23: each client id's rate limit over a
//! rolling 30-second window (one `Quota` per client the mock knows), and the developer
//! account's quota, whose `QUOTA_EXCEEDED` the control switches on for every client of the
//! account at once (`"account"`). Once the window's budget is spent, a call gets 429 with `Retry-After` (the seconds until the oldest
//! call in the window leaves it); `QUOTA_EXCEEDED` is the longer refusal, switched on by the
//! control, with its own `Retry-After` (3,600 and 86,400 s have been seen by client
//! libraries).
//!
//! `POST /__mock/quota` with JSON, every field optional:
//! `{"budget_per_30s":300}` (`null` turns the window off),
//! `{"quota_exceeded":true,"retry_after":3600}` (`false` lifts it), for every client, or
//! only `"client_id":"…"`, or every client of `"account":"…"` (`controls::quota`). Refused calls do not
//! spend the budget. `/__mock/stats` reports `quota` (what the limiter saw and refused);
//! `/__mock/reset` empties the window, lifts `QUOTA_EXCEEDED`, zeroes the counters and puts
//! the budget back to `MockConfig::quota_per_30s`.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use crate::errors::{api_error, player_error};

/// Spotify's rolling window.
pub(crate) const WINDOW: Duration = Duration::from_secs(30);
/// `Retry-After` of `QUOTA_EXCEEDED` when the control names none (an hour, as reported).
const DEFAULT_EXCEEDED_RETRY_AFTER: u64 = 3600;

/// The developer account's limiter.
pub(crate) struct Quota {
    /// The budget `reset` returns to (`MockConfig::quota_per_30s`).
    configured: Option<u32>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    budget: Option<u32>,
    /// When each call the window still holds was accepted, oldest first.
    window: VecDeque<Instant>,
    /// `QUOTA_EXCEEDED` until then.
    exceeded_until: Option<Instant>,
    counts: Counts,
}

#[derive(Default, Clone, Copy)]
struct Counts {
    seen: u64,
    allowed: u64,
    rate_limited: u64,
    quota_exceeded: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Control {
    #[serde(default, deserialize_with = "some")]
    budget_per_30s: Option<Option<u32>>,
    quota_exceeded: Option<bool>,
    retry_after: Option<u64>,
}

/// Keeps an explicit `null` apart from a missing field.
fn some<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
    Option::<u32>::deserialize(d).map(Some)
}

impl Quota {
    pub(crate) fn new(budget_per_30s: Option<u32>) -> Quota {
        Quota {
            configured: budget_per_30s,
            state: Mutex::new(State {
                budget: budget_per_30s,
                ..State::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Books one Web API call: `None` when it may be served, or Spotify's 429.
    pub(crate) fn admit(&self) -> Option<Response> {
        let now = Instant::now();
        let mut s = self.lock();
        s.counts.seen += 1;
        if let Some(until) = s.exceeded_until {
            if until > now {
                s.counts.quota_exceeded += 1;
                return Some(quota_exceeded(secs_until(now, until)));
            }
            s.exceeded_until = None;
        }
        while s.window.front().is_some_and(|t| now - *t >= WINDOW) {
            s.window.pop_front();
        }
        if let Some(budget) = s.budget {
            if s.window.len() >= budget as usize {
                s.counts.rate_limited += 1;
                // The first call may go again once the oldest call in the window leaves it.
                let frees = s.window.front().map_or(now, |t| *t + WINDOW);
                return Some(rate_limited(secs_until(now, frees)));
            }
        }
        s.window.push_back(now);
        s.counts.allowed += 1;
        None
    }

    /// Applies the control's JSON; the message of the 400 on a bad one.
    pub(crate) fn control(&self, body: &[u8]) -> Result<(), String> {
        let c: Control = serde_json::from_slice(body).map_err(|e| {
            format!(
                "invalid quota JSON ({e}); expected {{\"budget_per_30s\":300|null,\
                 \"quota_exceeded\":true|false,\"retry_after\":3600}}"
            )
        })?;
        if c.retry_after.is_some() && c.quota_exceeded != Some(true) {
            return Err("retry_after goes with \"quota_exceeded\":true".into());
        }
        let mut s = self.lock();
        if let Some(budget) = c.budget_per_30s {
            s.budget = budget;
        }
        match c.quota_exceeded {
            Some(true) => {
                let secs = c.retry_after.unwrap_or(DEFAULT_EXCEEDED_RETRY_AFTER);
                s.exceeded_until = Some(Instant::now() + Duration::from_secs(secs));
            }
            Some(false) => s.exceeded_until = None,
            None => {}
        }
        Ok(())
    }

    /// The `quota` object of `/__mock/stats`.
    pub(crate) fn json(&self) -> serde_json::Value {
        let s = self.lock();
        let c = s.counts;
        json!({
            "budget_per_30s": s.budget,
            "in_window": s.window.len(),
            "quota_exceeded_on": s.exceeded_until.is_some_and(|u| u > Instant::now()),
            "seen": c.seen,
            "allowed": c.allowed,
            "refused": { "rate_limited": c.rate_limited, "quota_exceeded": c.quota_exceeded },
        })
    }

    /// Back to the configured budget, an empty window, no `QUOTA_EXCEEDED`, zero counts.
    pub(crate) fn reset(&self) {
        *self.lock() = State {
            budget: self.configured,
            ..State::default()
        };
    }
}

/// Whole seconds from `now` to `then`, rounded up, at least 1 (as Spotify announces them).
fn secs_until(now: Instant, then: Instant) -> u64 {
    then.saturating_duration_since(now)
        .as_millis()
        .div_ceil(1000)
        .max(1) as u64
}

fn with_retry_after(mut resp: Response, secs: u64) -> Response {
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}

/// The rolling window's refusal.
fn rate_limited(secs: u64) -> Response {
    with_retry_after(
        api_error(StatusCode::TOO_MANY_REQUESTS, "API rate limit exceeded"),
        secs,
    )
}

/// The developer account's quota is spent.
fn quota_exceeded(secs: u64) -> Response {
    with_retry_after(
        player_error(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests",
            "QUOTA_EXCEEDED",
        ),
        secs,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_refuses_past_its_budget_and_refusals_do_not_spend_it() {
        let q = Quota::new(Some(2));
        assert!(q.admit().is_none());
        assert!(q.admit().is_none());
        let refused = q.admit().expect("over budget");
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        let secs: u64 = refused.headers()[header::RETRY_AFTER]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("seconds");
        assert!((29..=30).contains(&secs), "{secs}");
        assert!(q.admit().is_some());
        let stats = q.json();
        assert_eq!(stats["seen"], 4);
        assert_eq!(stats["allowed"], 2);
        assert_eq!(stats["refused"]["rate_limited"], 2);
        assert_eq!(stats["in_window"], 2);
    }

    #[test]
    fn quota_exceeded_wins_until_lifted_and_reset_restores_the_config() {
        let q = Quota::new(None);
        q.control(br#"{"quota_exceeded":true,"retry_after":86400}"#)
            .expect("control");
        let refused = q.admit().expect("refused");
        assert_eq!(refused.headers()[header::RETRY_AFTER], "86400");
        q.control(br#"{"quota_exceeded":false,"budget_per_30s":0}"#)
            .expect("control");
        assert_eq!(q.json()["budget_per_30s"], 0);
        assert!(q.admit().is_some(), "a budget of 0 refuses everything");
        q.control(br#"{"budget_per_30s":null}"#).expect("control");
        assert!(q.admit().is_none());
        assert!(q.control(br#"{"retry_after":5}"#).is_err());
        assert!(q.control(br#"{"budget":5}"#).is_err());
        q.reset();
        assert_eq!(q.json()["seen"], 0);
    }
}
