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

mod accounts;
mod api;
mod catalog;
mod controls;
mod pages;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{any, get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::state::App;

/// Id of alice's 1,000-track playlist (the catalogue on repeat), for paging tests:
/// `/v1/playlists/{LARGE_PLAYLIST_ID}/tracks?limit=100` is well over 100 KB.
pub const LARGE_PLAYLIST_ID: &str = "CtBPDp84wxaK1K17rQDFw2";

/// How the mock's single registered application looks.
#[derive(Debug, Clone)]
pub struct MockConfig {
    pub client_id: String,
    pub client_secret: String,
    /// Registered redirect URIs; `/authorize` and `/api/token` require an exact match.
    pub redirect_uris: Vec<String>,
    /// Access token lifetime; `expires_in` reports it in whole seconds (at least 1).
    pub token_lifetime: Duration,
    /// Shown on the consent page.
    pub app_name: String,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            client_id: "demo-client-id".to_string(),
            client_secret: "demo-client-secret".to_string(),
            redirect_uris: vec!["http://127.0.0.1:8080/auth/callback".to_string()],
            token_lifetime: Duration::from_secs(3600),
            app_name: "Spotify Gateway Demo".to_string(),
        }
    }
}

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

/// Decoded `application/x-www-form-urlencoded` pairs (query strings or bodies).
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn parse(input: &[u8]) -> Params {
        Params(
            form_urlencoded::parse(input)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// First value for `key`, as most OAuth servers take duplicated parameters.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Percent-encodes a value for a query string (spaces as `+`, like Spotify's links).
pub(crate) fn urlencode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

pub(crate) fn json_response(
    status: StatusCode,
    value: &serde_json::Value,
    content_type: &'static str,
) -> Response {
    let mut resp = Response::new(Body::from(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// Random URL-safe token: `prefix` followed by 64 base64url characters.
pub(crate) fn random_token(prefix: &str) -> String {
    use base64::Engine as _;
    use rand::RngCore as _;
    let mut bytes = [0u8; 48];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}
