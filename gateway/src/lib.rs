//! spotify-gateway: a reverse-proxy authentication gateway for the Spotify Web API, on pingora.
//!
//! ARCHITECTURE.md at the repository root is the map; in short: `app` wires the parts that
//! `server` runs as pingora services; `config` loads and validates; `oauth` talks to Spotify's
//! token endpoint; `session` keeps logins and sessions, `store` persists them, `tokens`
//! refreshes them; `trust` is the one set of roots both clients to Spotify use; `host` the one `host[:port]` grammar; `proxy` holds the public and egress listeners; `admin` serves metrics and
//! probes; `events` writes audit events to the log and to webhooks; `demo` (cargo feature `demo`) embeds
//! the mock Spotify.

pub mod admin;
pub mod admin_api;
pub mod admin_client;
pub mod app;
pub mod assertion;
pub mod backoff;
pub mod clock;
pub mod config;
pub mod crypto;
#[cfg(feature = "demo")]
pub mod demo;
pub mod events;
pub mod host;
pub mod listeners;
pub mod logging;
pub mod metrics;
pub mod oauth;
pub mod outbound;
pub mod pages;
pub mod proxy;
pub mod quota;
pub mod reload;
pub mod request_id;
pub mod runtime;
pub mod secret;
pub mod server;
pub mod session;
pub mod store;
pub mod tokens;
pub mod trust;
