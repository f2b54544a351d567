//! spotify-gateway: a reverse-proxy authentication gateway for the Spotify Web API, on pingora.
//!
//! Where things live: `config` (file format and validation), `oauth` (authorize URL and token
//! endpoint), `tokens` (app and user tokens, single-flight refresh), `proxy` (the public and
//! egress listeners), `admin` (metrics and probes), `server` (pingora wiring), `demo`.

pub mod admin;
pub mod config;
pub mod demo;
pub mod logging;
pub mod metrics;
pub mod oauth;
pub mod proxy;
pub mod secret;
pub mod server;
pub mod state;
pub mod tokens;
