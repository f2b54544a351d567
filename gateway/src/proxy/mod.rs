//! The two proxy listeners (pingora `ProxyHttp`): `public` (login, sessions, identity to the
//! internal app) and `egress` (internal apps to Spotify's Web API), and what they share.
//!
//! Phase order is pingora's (docs/user_guide/phase.md): `request_filter` answers locally or
//! picks the token, `upstream_peer` picks the address, `upstream_request_filter` rewrites the
//! headers, `upstream_response_filter` sees the answer, `logging` records metrics.

pub mod egress;
pub mod links;
pub mod public;

use std::net::SocketAddr;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;
use url::Url;

/// Resolved upstream addresses are reused this long before looking the name up again.
const DNS_TTL: Duration = Duration::from_secs(60);

/// Headers that carry identity or credentials between the gateway and its clients. A client
/// never gets to choose them on the way in, and they never travel on to an upstream.
pub const IDENTITY_HEADERS: [&str; 3] = ["x-spotify-user-id", "x-spotify-scopes", "x-gateway-user"];

/// An upstream origin (`https://api.spotify.com`, `http://127.0.0.1:3000`).
pub struct UpstreamTarget {
    host: String,
    port: u16,
    tls: bool,
    /// The `Host` header to send: host, plus the port when it is not the scheme's default.
    host_header: String,
    resolved: RwLock<Option<(SocketAddr, Instant)>>,
}

impl UpstreamTarget {
    pub fn from_url(url: &Url) -> UpstreamTarget {
        let host = url.host_str().unwrap_or_default().to_string();
        let tls = url.scheme() == "https";
        let port = url
            .port_or_known_default()
            .unwrap_or(if tls { 443 } else { 80 });
        let host_header = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        // A bracketed IPv6 literal resolves without brackets.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        UpstreamTarget {
            host,
            port,
            tls,
            host_header,
            resolved: RwLock::new(None),
        }
    }

    pub fn host_header(&self) -> &str {
        &self.host_header
    }

    /// The peer to connect to. Names are resolved asynchronously and cached: pingora's
    /// `HttpPeer::new` would resolve with blocking std DNS and panic on failure.
    pub async fn peer(&self) -> Result<Box<HttpPeer>> {
        let addr = self.resolve().await?;
        let sni = if self.tls {
            self.host.clone()
        } else {
            String::new()
        };
        Ok(Box::new(HttpPeer::new(addr, self.tls, sni)))
    }

    async fn resolve(&self) -> Result<SocketAddr> {
        if let Ok(ip) = self.host.parse::<std::net::IpAddr>() {
            return Ok(SocketAddr::new(ip, self.port));
        }
        if let Some((addr, at)) = *self.resolved.read().unwrap_or_else(|p| p.into_inner()) {
            if at.elapsed() < DNS_TTL {
                return Ok(addr);
            }
        }
        let addr = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| {
                Error::explain(
                    ErrorType::ConnectNoRoute,
                    format!("cannot resolve upstream host {}", self.host),
                )
            })?;
        *self.resolved.write().unwrap_or_else(|p| p.into_inner()) = Some((addr, Instant::now()));
        Ok(addr)
    }
}

/// Writes a complete local JSON answer.
pub async fn respond_json(
    session: &mut Session,
    status: u16,
    body: &serde_json::Value,
    headers: &[(&'static str, String)],
) -> Result<()> {
    let body = Bytes::from(body.to_string());
    let mut resp = ResponseHeader::build(status, Some(4 + headers.len()))?;
    resp.insert_header("content-type", "application/json; charset=utf-8")?;
    resp.insert_header("content-length", body.len().to_string())?;
    resp.insert_header("cache-control", "no-store")?;
    for (name, value) in headers {
        resp.insert_header(*name, value.as_str())?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
}

/// Spotify's Web API error shape, so client libraries parse the gateway's own answers too.
pub fn spotify_error(status: u16, message: &str) -> serde_json::Value {
    serde_json::json!({ "error": { "status": status, "message": message } })
}

/// A request id from the client when it looks like one, else a new one.
pub fn request_id(session: &Session) -> String {
    let given = session
        .req_header()
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        });
    match given {
        Some(id) => id.to_string(),
        None => format!("{:032x}", rand::random::<u128>()),
    }
}

/// The status written to the client, or 0 when none was.
pub fn response_status(session: &Session) -> u16 {
    session
        .response_written()
        .map(|r| r.status.as_u16())
        .unwrap_or(0)
}

/// The status for a request that failed inside pingora, as its default `fail_to_proxy` picks
/// it; 0 when the client connection is already gone.
pub fn error_status(e: &Error) -> u16 {
    match e.etype() {
        ErrorType::HTTPStatus(code) => *code,
        _ => match e.esource() {
            ErrorSource::Upstream => 502,
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    }
}

/// Method and path only: pingora logs this summary with errors, and a query string can carry
/// an authorization code or state.
pub fn request_summary(session: &Session) -> String {
    let req = session.req_header();
    format!("{} {}", req.method, req.uri.path())
}

/// What the `logging` phase records for one request: metrics and one access log line.
pub struct Access<'a> {
    pub listener: &'static str,
    pub route: &'static str,
    pub request_id: &'a str,
    pub started: Option<Instant>,
    /// The session the request acted for; its user id is logged only where configured.
    pub user: Option<&'a crate::session::LiveSession>,
}

impl Access<'_> {
    pub fn record(&self, gw: &crate::state::Gateway, session: &Session, e: Option<&Error>) {
        let status = response_status(session);
        let elapsed = self.started.map(|s| s.elapsed()).unwrap_or_default();
        gw.metrics
            .observe_request(self.listener, self.route, status, elapsed.as_secs_f64());
        let user = self
            .user
            .filter(|_| gw.config.server.log_user_id)
            .map(|s| s.user_id());
        tracing::info!(
            target: "access",
            listener = self.listener,
            request_id = %self.request_id,
            method = %session.req_header().method,
            route = self.route,
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            user = user.as_deref(),
            error = e.map(|e| e.etype().as_str()),
        );
    }
}
