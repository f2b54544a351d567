//! Who owns a shared answer, and the purges of late: every share key starts with its owner's
//! line, exactly `app` or `user:{spotify_user_id}`, then `\n` (`proxy::egress::shared::key`),
//! and a purge names owners by a predicate on that line (`purge`). A leaf: `cache` and
//! `flight` use it, `purge` uses them.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The owner line of app-token answers.
pub const APP_OWNER: &str = "app";

/// Which owners a purge is for (given an owner line).
pub type OwnerMatch = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// How long a purge is remembered: an answer to a call that arrived before a purge of its
/// owner is not stored. A call lasting longer than this (far beyond any `egress.total_timeout`
/// in use) is not stored at all, as its arrival is older than what is remembered.
const MEMORY: Duration = Duration::from_secs(3600);

/// The owner line of a user's answers.
pub fn user_owner(user_id: &str) -> String {
    format!("user:{user_id}")
}

/// The owner line of a share key (the whole key if it has no line break).
pub fn owner_of(key: &str) -> &str {
    key.split_once('\n').map_or(key, |(owner, _)| owner)
}

/// Every user's answers, not the app token's.
pub fn every_user() -> OwnerMatch {
    Arc::new(|owner: &str| owner != APP_OWNER)
}

/// One owner's answers.
pub fn only(owner: String) -> OwnerMatch {
    Arc::new(move |o: &str| o == owner)
}

/// A purge's predicate, asked once per owner during the purge (a hashed one costs an HMAC
/// per owner, and a cache holds many answers per owner).
pub(super) struct Memo {
    matches: OwnerMatch,
    seen: RefCell<HashMap<String, bool>>,
}

impl Memo {
    pub(super) fn new(matches: OwnerMatch) -> Memo {
        Memo {
            matches,
            seen: RefCell::new(HashMap::new()),
        }
    }

    pub(super) fn test(&self, owner: &str) -> bool {
        let mut seen = self.seen.borrow_mut();
        if let Some(&known) = seen.get(owner) {
            return known;
        }
        let answer = (self.matches)(owner);
        seen.insert(owner.to_string(), answer);
        answer
    }

    pub(super) fn predicate(&self) -> OwnerMatch {
        Arc::clone(&self.matches)
    }
}

/// The purges of the last `MEMORY`, oldest first.
#[derive(Default)]
pub(super) struct Recent(VecDeque<(Instant, OwnerMatch)>);

impl Recent {
    pub(super) fn record(&mut self, matches: OwnerMatch, now: Instant) {
        while self
            .0
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > MEMORY)
        {
            self.0.pop_front();
        }
        self.0.push_back((now, matches));
    }

    /// Whether an answer to a call for `owner` that arrived at `arrived` may be stored: no
    /// purge of that owner came after it (nor is the call older than what is remembered).
    pub(super) fn allows(&self, owner: &str, arrived: Instant, now: Instant) -> bool {
        if now.saturating_duration_since(arrived) > MEMORY {
            return false;
        }
        !self
            .0
            .iter()
            .rev()
            .take_while(|(at, _)| *at >= arrived)
            .any(|(_, matches)| matches(owner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_the_keys_first_line() {
        assert_eq!(owner_of("user:alice\n/v1/me\ntrue\n"), "user:alice");
        assert_eq!(owner_of("app\n/v1/search"), "app");
        assert_eq!(owner_of("odd"), "odd");
        assert_eq!(user_owner("alice"), "user:alice");
        assert!(every_user()("user:bob") && !every_user()(APP_OWNER));
        assert!(only("user:a".into())("user:a") && !only("user:a".into())("user:ab"));
    }

    #[test]
    fn an_answer_to_a_call_older_than_a_purge_of_its_owner_is_not_stored() {
        let mut recent = Recent::default();
        let t0 = Instant::now();
        let before = t0;
        let purge_at = t0 + Duration::from_millis(10);
        recent.record(only("user:alice".into()), purge_at);
        let after = purge_at + Duration::from_millis(1);
        let now = after + Duration::from_millis(5);
        assert!(!recent.allows("user:alice", before, now));
        assert!(recent.allows("user:bob", before, now), "another owner");
        assert!(recent.allows("user:alice", after, now), "arrived after it");
        assert!(
            !recent.allows("user:bob", before, before + MEMORY + Duration::from_secs(1)),
            "older than the memory: not known, not stored"
        );
        // Old purges are forgotten as new ones come.
        recent.record(only("user:carol".into()), purge_at + MEMORY * 2);
        assert_eq!(recent.0.len(), 1);
    }
}
