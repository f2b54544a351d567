//! spotify-gateway: a reverse-proxy authentication gateway for the Spotify Web API, on pingora.
//!
//! Where things live: `config` (file format and validation), `oauth` (authorize URL and token
//! endpoint), `session` (sealed cookies, store backends, user tokens and their single-flight refresh),
//! `tokens` (the app token), `assertion` (`X-Gateway-User`), `proxy` (the public and
//! egress listeners), `admin` (metrics and probes), `server` (pingora wiring), `demo`.

pub mod admin;
pub mod assertion;
pub mod config;
pub mod demo;
pub mod logging;
pub mod metrics;
pub mod oauth;
pub mod pages;
pub mod proxy;
pub mod runtime;
pub mod secret;
pub mod server;
pub mod session;
pub mod state;
pub mod tokens;
