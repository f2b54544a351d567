//! A local stand-in for Spotify's accounts service (`accounts.spotify.com`) and a
//! subset of the Web API (`api.spotify.com`), served from one address.
//!
//! It answers like the real services do (status codes, error JSON shapes, token
//! rotation, 204s, 429 with `Retry-After`, gzip when the client accepts it) so the
//! gateway can be tested, benchmarked and demoed without a Spotify account. The only
//! shortcuts are the documented `mock_user`/`mock_decision` consent skip on
//! `/authorize` and the `/__mock/*` test controls.
//!
//! The write endpoints (adding and removing playlist tracks, starting and pausing
//! playback) change state that belongs to one `MockSpotify` instance and lives as
//! long as it does: `/__mock/reset` clears faults, counters and the request log, but
//! leaves tokens, playlist contents and playback alone.

// Helpers return a ready error `Response` as their `Err`; these are cold paths,
// so boxing them would only add noise.
#![allow(clippy::result_large_err)]

// Layout: this file binds, serves and routes; `accounts` (the accounts service, with
// its HTML `pages`), `api` (the Web API) and `controls` (`/__mock/*`) answer the
// requests, over the shared `state`, the `catalog` data, `faults` (with the gzip
// `bomb`), `errors` (Spotify's error bodies) and `http` (small helpers). Nothing imports
// this file.

mod accounts;
mod api;
mod bomb;
mod catalog;
mod config;
mod controls;
mod errors;
mod faults;
mod http;
mod pages;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{any, get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use crate::catalog::LARGE_PLAYLIST_ID;
pub use crate::config::MockConfig;
use crate::state::App;

/// A running mock server; dropping it stops serving.
pub struct MockSpotify {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
}

impl MockSpotify {
    /// Binds `listen` (e.g. `127.0.0.1:0`) and serves on the current tokio runtime;
    /// returns once the socket is bound.
    pub async fn start(listen: SocketAddr, config: MockConfig) -> std::io::Result<MockSpotify> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let router = router(Arc::new(App::new(config, base_url_for(addr))));
        tokio::spawn(async move {
            // A dropped sender also resolves `rx`, which is what stops the server.
            let result = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
            if let Err(err) = result {
                tracing::warn!(%err, "mock-spotify server stopped with an error");
            }
        });
        Ok(MockSpotify {
            addr,
            shutdown: Some(tx),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` with no trailing slash.
    pub fn base_url(&self) -> String {
        base_url_for(self.addr)
    }
}

impl Drop for MockSpotify {
    fn drop(&mut self) {
        // Graceful shutdown closes the listener at once and idle keep-alive
        // connections too, so clients see the mock go away.
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Serves forever on an already-bound listener (used by the CLI).
pub async fn serve(listener: TcpListener, config: MockConfig) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let router = router(Arc::new(App::new(config, base_url_for(addr))));
    axum::serve(listener, router).await
}

fn base_url_for(addr: SocketAddr) -> String {
    // A wildcard bind address is not something a client can follow a link to.
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{addr}")
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/authorize", get(accounts::authorize))
        .route("/authorize/decision", post(accounts::decision))
        .route("/api/token", any(accounts::token))
        .route("/__mock/stats", get(controls::stats))
        .route("/__mock/fault", post(controls::fault))
        .route("/__mock/expire", post(controls::expire))
        .route("/__mock/revoke", post(controls::revoke))
        .route("/__mock/reset", post(controls::reset))
        .route("/__mock/requests", get(controls::requests))
        // The Web API is dispatched by hand so unknown paths get Spotify's JSON 404.
        .fallback(api::handle)
        .with_state(app)
}
