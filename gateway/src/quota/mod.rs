//! Spending Spotify's quota well. Since July 2026 Spotify counts calls per developer account
//! over a rolling 30-second window, and once it says 429 (`QUOTA_EXCEEDED` or the rate limit)
//! its `Retry-After` can be hours: the scarce resource is calls, not CPU.
//!
//! - `cool_down`: after a 429 no replica calls Spotify until `Retry-After` has passed; the
//!   hold is published through the store and kept in memory by every replica.
//!
//! This room knows the store and metrics, never the listeners: `proxy::egress` asks it.

pub mod cool_down;

pub use cool_down::{CoolDown, Reason};
