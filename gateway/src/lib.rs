//! spotify-gateway: a reverse-proxy authentication gateway for the Spotify Web API, on pingora.
//!
//! ARCHITECTURE.md at the repository root is the map; in short: `server` builds the pingora
//! services and runs them (`server::state` wires the parts, `server::guards` wraps the
//! listeners, `server::reload` applies SIGHUP); `config` loads and validates; `oauth` talks to
//! Spotify's token endpoint; `session` keeps logins and sessions, `store` persists them,
//! `tokens` refreshes them; `net` is the way out (the one set of TLS roots, the outbound
//! proxy, the `host[:port]` grammar); `proxy` holds the public and egress listeners; `quota`
//! spends Spotify's quota; `admin` serves metrics, probes and the admin API; `telemetry` holds
//! metrics, logging and request ids; `events` writes audit events to the log and to webhooks;
//! `demo` (cargo feature `demo`) embeds the mock Spotify.

pub mod admin;
pub mod clock;
pub mod config;
pub mod crypto;
#[cfg(feature = "demo")]
pub mod demo;
pub mod events;
pub mod net;
pub mod oauth;
pub mod proxy;
pub mod quota;
pub mod runtime;
pub mod secret;
pub mod server;
pub mod session;
pub mod store;
pub mod telemetry;
pub mod tokens;
