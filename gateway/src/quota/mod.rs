//! Spending Spotify's quota well. Since July 2026 Spotify counts calls per developer account
//! over a rolling 30-second window, and once it says 429 (`QUOTA_EXCEEDED` or the rate limit)
//! its `Retry-After` can be hours: the scarce resource is calls, not CPU.
//!
//! - `cool_down`: after a 429 no replica calls Spotify until `Retry-After` has passed; the
//!   hold is published through the store and kept in memory by every replica.
//! - `flight`: identical GETs in flight at once go to Spotify once (coalescing).
//! - `cache`: a small cache of the answers Spotify marks cacheable, revalidated by `ETag`.
//! - `answer`: an answer held whole (and compactly), for both.
//! - `vary`: which later call may take an answer (RFC 9111 §4.1: `Vary`, `Accept-Encoding`).
//! - `owner`: whose a shared answer is (its key's first line), and the purges of late.
//! - `purge`: both together (`SharedAnswers`), and forgetting a user's answers in both.
//! - `budget`: at most `egress.budget_per_30s` calls per rolling 30 s, shared on Redis.
//!
//! This room knows the store and metrics, never the listeners: `proxy::egress` asks it.

pub mod answer;
pub mod budget;
pub mod cache;
pub mod cool_down;
pub mod flight;
pub mod owner;
pub mod purge;
pub mod vary;

pub use answer::Answer;
pub use budget::{Budget, Priority};
pub use cache::{AnswerCache, Lookup};
pub use cool_down::{AccountHold, CoolDown, Reason};
pub use flight::{Flights, Followed, Joined};
pub use purge::SharedAnswers;
