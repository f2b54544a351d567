//! User sessions: what a session is (`record`), the [`Sessions`] registry that holds them
//! (`registry`: store, keys, cache, ending a session), how a login becomes one (`login`), how
//! a request finds one (`lookup`), the cookies that carry it (`cookie`), users as an operator sees them
//! (`users`: summaries without secrets, revocation), forgetting a departed user's shared
//! answers on every replica (`purge`), the streams a session has open, closed when it ends
//! (`streams`), and what a token refresh needs of a record (`records`: adopt the stored one,
//! save a refreshed one or keep it until the store takes it, end the session). The refresh of
//! a session's tokens is `tokens::UserTokens`, over `records`; this room does not know the
//! token endpoint (a login is handed it).
//!
//! The cookie holds only the sealed session id. The store holds records under a keyed hash of
//! that id, each record sealed as a whole (tokens included), so neither a stolen cookie jar
//! entry nor a stolen store file is readable, and a store file alone opens no session.
//! Records are cached in memory (`cache`) in front of the store.

mod cache;
pub mod cookie;
mod login;
mod lookup;
mod opened;
mod purge;
mod record;
mod records;
mod registry;
mod streams;
mod users;

pub use login::{Callback, LoginError, NewSession, LOGIN_TTL};
pub use record::{LiveSession, Scopes, SessionRecord};
pub use registry::{SessionError, Sessions, REAUTH_GAUGE_WINDOW, REAUTH_NOTICE};
pub use streams::{CloseReason, StreamGuard, Streams};
pub use users::{UserSummary, UsersListing};
