//! The answers shared between calls (`cache`, `flight`) and forgetting an owner's: a user who
//! disconnects, is revoked or whose session ends by `invalid_grant` leaves no answer behind
//! (Spotify's Developer Policy asks that a disconnected user's data be deleted).
//!
//! Every share key starts with its owner's line: exactly `app` or `user:{spotify_user_id}`,
//! then `\n` (`proxy::egress::shared::key`). A purge names owners by a predicate on that line:
//! one owner (here), the owners whose keyed hash another replica published (`session`), or
//! every user (a replica that may have missed such a notice). It drops the owners' cached
//! answers, lets the followers of their calls in flight go (each makes its own call), and
//! remembers itself for a while, so an answer to a call that arrived before it is not stored
//! afterwards.

use std::sync::Arc;

use super::cache::AnswerCache;
use super::flight::Flights;
use super::owner::Memo;
pub use super::owner::{every_user, only, owner_of, user_owner, OwnerMatch, APP_OWNER};

/// The cache and the calls in flight, which a purge clears together.
pub struct SharedAnswers {
    pub cache: Arc<AnswerCache>,
    pub flights: Arc<Flights>,
}

impl SharedAnswers {
    /// A cache of `cache_bytes` (0: none) and no call in flight.
    pub fn new(cache_bytes: u64) -> SharedAnswers {
        SharedAnswers {
            cache: Arc::new(AnswerCache::new(cache_bytes)),
            flights: Arc::new(Flights::default()),
        }
    }

    /// Drops the cached answers of every owner `matches`, and lets the followers of their
    /// calls in flight go; returns how many cached answers it dropped.
    pub fn purge(&self, matches: OwnerMatch) -> usize {
        let matches = Memo::new(matches);
        // The cache first: a follower let go looks in the cache before it calls again.
        let dropped = self.cache.purge(&matches);
        self.flights.purge(&|owner| matches.test(owner));
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_purge_drops_its_owners_cached_answers_and_refuses_their_late_ones() {
        use crate::quota::vary::{Request, Selecting, Sent};
        use crate::quota::{cache::Policy, Answer, Lookup};
        /// A call that sends no header.
        struct Bare;
        impl Request for Bare {
            fn sent(&self, _: &http::HeaderName) -> Sent {
                Sent::Value(None)
            }
        }
        let answers = SharedAnswers::new(1 << 20);
        let answer = || {
            let body = [bytes::Bytes::from_static(b"{}")];
            let answer = Answer::new(200, &http::HeaderMap::new(), &body, Selecting::Keyed);
            Arc::new(answer.expect("small"))
        };
        let policy = || Policy {
            fresh_for: Duration::from_secs(60),
            tagged: false,
        };
        let arrived = Instant::now();
        let keys = [
            "user:alice\n/v1/me",
            "user:alice\n/v1/x",
            "user:bob\n/v1/me",
        ];
        for key in keys.into_iter().chain(["app\n/v1/x"]) {
            answers.cache.store(key, answer(), policy(), arrived);
        }
        assert_eq!(answers.purge(only(user_owner("alice"))), 2);
        let fresh = |key| matches!(answers.cache.lookup(key, &Bare), Lookup::Fresh(_));
        assert!(!fresh(keys[0]) && !fresh(keys[1]));
        assert!(fresh(keys[2]) && fresh("app\n/v1/x"));
        // A call that arrived before the purge lands after it: not stored. A later one is.
        answers.cache.store(keys[0], answer(), policy(), arrived);
        assert!(!fresh(keys[0]));
        answers
            .cache
            .store(keys[0], answer(), policy(), Instant::now());
        assert!(fresh(keys[0]));
        assert_eq!(answers.purge(every_user()), 2, "alice's new one and bob's");
        assert!(fresh("app\n/v1/x"));
    }
}
