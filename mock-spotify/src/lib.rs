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
// `bomb` and the `long_body`), `errors` (Spotify's error bodies) and `http` (small helpers); `tls` serves
// HTTPS when asked. Nothing imports this file.

mod accounts;
mod api;
mod bomb;
mod catalog;
mod config;
mod controls;
mod errors;
mod faults;
mod http;
mod long_body;
mod pages;
mod quota;
mod state;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{any, get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use crate::catalog::{
    generated_track_ids, DEFAULT_REGISTERED, GENERATED_TRACKS, LARGE_PLAYLIST_ID, LISTENERS,
};
pub use crate::config::MockTls;
pub use crate::config::{AppMode, MockClient, MockConfig, REFRESH_TOKEN_LIFETIME};
use crate::state::App;
pub use crate::tls::{TestCa, Validity};

/// The `account_id` `/v1/me` reports for one of the mock's users (`alice`, `bob`, `carol`).
pub fn account_id_of(user: &str) -> Option<&'static str> {
    catalog::user(user).map(|u| u.account_id)
}

/// A running mock server; dropping it stops serving.
pub struct MockSpotify {
    addr: SocketAddr,
    tls: bool,
    shutdown: Option<oneshot::Sender<()>>,
}

impl MockSpotify {
    /// Binds `listen` (e.g. `127.0.0.1:0`) and serves on the current tokio runtime, over
    /// HTTPS when `config.tls` is set; returns once the socket is bound.
    pub async fn start(listen: SocketAddr, config: MockConfig) -> std::io::Result<MockSpotify> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let tls = config.tls.is_some();
        let (tx, rx) = oneshot::channel::<()>();
        // A dropped sender also resolves `rx`, which is what stops the server.
        let stopped = async move {
            let _ = rx.await;
        };
        let served = serve_until(listener, config, stopped)?;
        tokio::spawn(async move {
            if let Err(err) = served.await {
                tracing::warn!(%err, "mock-spotify server stopped with an error");
            }
        });
        Ok(MockSpotify {
            addr,
            tls,
            shutdown: Some(tx),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` (`https://` with TLS) with no trailing slash.
    pub fn base_url(&self) -> String {
        base_url_for(self.addr, self.tls)
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
    serve_until(listener, config, std::future::pending())?.await
}

/// The server on `listener` until `stop` resolves: plain, or TLS when `config.tls` is set.
fn serve_until(
    listener: TcpListener,
    config: MockConfig,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<Served> {
    let addr = listener.local_addr()?;
    let tls = config.tls.clone();
    let http2 = config.http2;
    let app = Arc::new(App::new(config, base_url_for(addr, tls.is_some())));
    let router = router(Arc::clone(&app));
    Ok(match tls {
        None => Box::pin(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(stop)
                .await
        }),
        Some(tls) => {
            let listener = tls::TlsListener::new(listener, &tls, http2, app)?;
            Box::pin(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(stop)
                    .await
            })
        }
    })
}

/// The server's future, whichever listener it serves.
type Served = std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send>>;

fn base_url_for(addr: SocketAddr, tls: bool) -> String {
    // A wildcard bind address is not something a client can follow a link to.
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{addr}")
}

/// Counts each request to Spotify's endpoints by HTTP version (`/__mock/stats`); the test
/// controls themselves are not counted.
async fn count_version(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if !req.uri().path().starts_with("/__mock/") {
        app.wire.request(req.version());
    }
    next.run(req).await
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
        .route("/__mock/age", post(controls::age))
        .route("/__mock/app", get(controls::app).post(controls::set_app))
        .route("/__mock/quota", post(controls::quota))
        .route("/__mock/cache", post(controls::cache))
        .route("/__mock/requests", get(controls::requests))
        // The Web API is dispatched by hand so unknown paths get Spotify's JSON 404.
        .fallback(api::handle)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app),
            count_version,
        ))
        .with_state(app)
}
