//! Coalescing: identical GETs in flight at the same time go to Spotify once. The first caller
//! leads (its call goes out as usual); the others wait for the leader's answer and each gets
//! a copy. A leader that gives up, or whose answer cannot be shared (too large, failed), lets
//! its followers go: one of them leads next, so no caller is left without an answer because
//! another went away. A purge of the caller's user (`purge`) lets the followers go too: they
//! never get an answer the leader receives after it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use super::answer::Answer;

#[derive(Clone)]
enum State {
    Pending,
    Landed(Arc<Answer>),
    /// The leader gave up or its answer cannot be shared.
    Gone,
    /// The leader got no room in the budget (`budget`) within its wait.
    Refused,
}

type Table = Arc<Mutex<HashMap<String, (u64, watch::Sender<State>)>>>;

/// The calls in flight, by key (the token and the request; `proxy::egress::shared`). A
/// follower takes the leader's answer only where its `Vary` admits it (`Answer::selecting`).
#[derive(Default)]
pub struct Flights {
    table: Table,
    next_id: AtomicU64,
}

/// How a caller joins the flight for its key.
pub enum Joined {
    /// No identical call is in flight: this one goes to Spotify and shares its answer.
    Lead(Lead),
    /// An identical call is in flight: wait for its answer (`follow`).
    Follow(Follower),
}

/// The caller whose call goes to Spotify; dropping it unlanded lets the followers go.
pub struct Lead {
    key: String,
    id: u64,
    tx: watch::Sender<State>,
    table: Table,
}

pub struct Follower(watch::Receiver<State>);

impl Flights {
    pub fn join(&self, key: &str) -> Joined {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, tx)) = table.get(key) {
            if matches!(*tx.borrow(), State::Pending) {
                return Joined::Follow(Follower(tx.subscribe()));
            }
        }
        let (tx, _) = watch::channel(State::Pending);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        table.insert(key.to_string(), (id, tx.clone()));
        Joined::Lead(Lead {
            key: key.to_string(),
            id,
            tx,
            table: Arc::clone(&self.table),
        })
    }

    /// Ends the flights of every owner `matches` names (the owner line of the key,
    /// `owner::owner_of`): their followers go (each makes its own call), and what their
    /// leaders land afterwards reaches no one. Returns how many flights it ended.
    pub(super) fn purge(&self, matches: &dyn Fn(&str) -> bool) -> usize {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let before = table.len();
        table.retain(|key, (_, tx)| {
            if !matches(super::owner::owner_of(key)) {
                return true;
            }
            tx.send_if_modified(|state| settle(state, State::Gone));
            false
        });
        before - table.len()
    }

    /// Calls in flight now (for tests and metrics).
    pub fn len(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a follower gets.
pub enum Followed {
    /// A copy of the leader's answer.
    Answer(Arc<Answer>),
    /// The leader went away without one: join again (one of the followers leads next).
    Gone,
    /// The budget had no room for the leader: make this call alone, within this caller's own
    /// wait for room, instead of following the next leader (with identical calls arriving
    /// all the time, a caller following one new leader after another could wait until its
    /// deadline).
    Refused,
}

/// Moves a pending flight to `to`; a settled one (landed, or let go by a purge) stays as it
/// is. True when it moved.
fn settle(state: &mut State, to: State) -> bool {
    if !matches!(state, State::Pending) {
        return false;
    }
    *state = to;
    true
}

impl Lead {
    /// Tells the followers the budget had no room for this call.
    pub fn refuse(self) {
        self.tx.send_if_modified(|s| settle(s, State::Refused));
    }

    /// Hands the answer to every follower, unless a purge let them go already.
    pub fn land(self, answer: Arc<Answer>) {
        self.tx
            .send_if_modified(|s| settle(s, State::Landed(answer)));
        // Drop removes the entry; the followers already hold the answer.
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        {
            let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
            if table.get(&self.key).is_some_and(|(id, _)| *id == self.id) {
                table.remove(&self.key);
            }
        }
        self.tx.send_if_modified(|s| settle(s, State::Gone));
    }
}

impl Follower {
    /// The leader's answer, or why there is none.
    pub async fn answer(mut self) -> Followed {
        loop {
            match &*self.0.borrow_and_update() {
                State::Landed(answer) => return Followed::Answer(Arc::clone(answer)),
                State::Gone => return Followed::Gone,
                State::Refused => return Followed::Refused,
                State::Pending => {}
            }
            if self.0.changed().await.is_err() {
                // The sender is gone: its last word decides.
                return match &*self.0.borrow() {
                    State::Landed(answer) => Followed::Answer(Arc::clone(answer)),
                    State::Refused => Followed::Refused,
                    _ => Followed::Gone,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::vary::Selecting;
    use super::*;

    fn answer() -> Arc<Answer> {
        let body = [bytes::Bytes::from_static(b"{}")];
        let answer = Answer::new(200, &http::HeaderMap::new(), &body, Selecting::Keyed);
        Arc::new(answer.expect("small"))
    }

    #[tokio::test]
    async fn followers_get_the_leaders_answer_and_the_flight_ends() {
        let f = Flights::default();
        let Joined::Lead(lead) = f.join("k") else {
            panic!("first caller leads")
        };
        let Joined::Follow(follower) = f.join("k") else {
            panic!("second caller follows")
        };
        assert!(matches!(f.join("other"), Joined::Lead(_)));
        let waiting = tokio::spawn(follower.answer());
        lead.land(answer());
        let Followed::Answer(got) = waiting.await.expect("task") else {
            panic!("the answer")
        };
        assert_eq!(got.status, 200);
        assert!(f.is_empty());
        assert!(matches!(f.join("k"), Joined::Lead(_)), "a new flight");
    }

    #[tokio::test]
    async fn a_leader_that_gives_up_lets_its_followers_go() {
        let f = Flights::default();
        let lead = f.join("k");
        let Joined::Follow(follower) = f.join("k") else {
            panic!("follows")
        };
        drop(lead);
        assert!(matches!(follower.answer().await, Followed::Gone));
        assert!(
            matches!(f.join("k"), Joined::Lead(_)),
            "a follower leads next"
        );
    }

    #[tokio::test]
    async fn a_purge_lets_the_followers_go_and_the_leaders_answer_reaches_no_one() {
        let f = Flights::default();
        let Joined::Lead(alice) = f.join("user:alice\n/v1/me") else {
            panic!("leads")
        };
        let Joined::Follow(follower) = f.join("user:alice\n/v1/me") else {
            panic!("follows")
        };
        let Joined::Lead(bob) = f.join("user:bob\n/v1/me") else {
            panic!("leads")
        };
        let waiting = tokio::spawn(follower.answer());
        assert_eq!(f.purge(&|owner| owner == "user:alice"), 1);
        assert!(matches!(waiting.await.expect("task"), Followed::Gone));
        let Joined::Lead(next) = f.join("user:alice\n/v1/me") else {
            panic!("after the purge, a new call leads")
        };
        // The purged leader's answer lands too late, and does not end the new flight.
        alice.land(answer());
        assert!(matches!(f.join("user:alice\n/v1/me"), Joined::Follow(_)));
        drop(next);
        drop(bob);
        assert!(f.is_empty());
    }

    #[tokio::test]
    async fn a_leader_the_budget_refused_says_so() {
        let f = Flights::default();
        let Joined::Lead(lead) = f.join("k") else {
            panic!("leads")
        };
        let Joined::Follow(follower) = f.join("k") else {
            panic!("follows")
        };
        let waiting = tokio::spawn(follower.answer());
        lead.refuse();
        assert!(matches!(waiting.await.expect("task"), Followed::Refused));
        assert!(f.is_empty());
    }
}
