//! An upstream origin and its address: `https://api.spotify.com` for the egress listener, the
//! internal app for the public one.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use pingora::prelude::*;
use url::Url;

use crate::net::outbound::{Outbound, Tunnel};

/// Resolved upstream addresses are reused this long before looking the name up again.
const DNS_TTL: Duration = Duration::from_secs(60);

/// Concurrent calls one HTTP/2 connection carries before pingora opens another (its default
/// is 1, which would open a connection, and pay a handshake, per concurrent call). The
/// server's own `SETTINGS_MAX_CONCURRENT_STREAMS` still applies.
const H2_STREAMS_PER_CONNECTION: usize = 100;

/// An upstream origin (`https://api.spotify.com`, `http://127.0.0.1:3000`).
pub struct UpstreamTarget {
    host: String,
    port: u16,
    tls: bool,
    /// The `Host` header to send: host, plus the port when it is not the scheme's default.
    host_header: String,
    /// Offer HTTP/2 in ALPN (then HTTP/1.1): only over TLS, where ALPN can negotiate it.
    http2: bool,
    /// Connections go through this CONNECT proxy (`outbound`); the name resolved is then
    /// the proxy's, and the origin's name is sent to it unresolved.
    tunnel: Option<Arc<Tunnel>>,
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
            http2: false,
            tunnel: None,
            resolved: RwLock::new(None),
        }
    }

    /// Offers `h2` first in ALPN when the origin is `https://`; a server that answers with
    /// HTTP/1.1 only gets HTTP/1.1 (pingora remembers and pools either kind).
    pub fn with_http2(mut self) -> UpstreamTarget {
        self.http2 = self.tls;
        self
    }

    /// Connects through `outbound`'s proxy, unless this host goes direct (`no_proxy`).
    pub fn via(mut self, outbound: &Outbound) -> UpstreamTarget {
        self.tunnel = outbound.tunnel_to(&self.host, self.port).map(Arc::new);
        self
    }

    /// Calls to this origin are streams on shared HTTP/2 connections (`with_http2`, TLS).
    pub fn is_http2(&self) -> bool {
        self.http2
    }

    pub fn host_header(&self) -> &str {
        &self.host_header
    }

    /// The peer to connect to. Names are resolved asynchronously and cached: pingora's
    /// `HttpPeer::new` would resolve with blocking std DNS and panic on failure. With
    /// `connect_timeout`, opening a connection takes at most that for each step: the TCP
    /// connect, or through the proxy the tunnel (`Tunnel::within`), and the TLS handshake.
    pub async fn peer(&self, connect_timeout: Option<Duration>) -> Result<Box<HttpPeer>> {
        let addr = self.resolve().await?;
        let sni = if self.tls {
            self.host.clone()
        } else {
            String::new()
        };
        let mut peer = HttpPeer::new(addr, self.tls, sni);
        // Verification stays on (pingora's default, and the SNI is never empty with TLS),
        // against the roots the proxy's connector was given (`server::build`): no per-peer
        // list, which would cost every connection a TLS config of its own and its resumption.
        peer.options.connection_timeout = connect_timeout;
        if self.http2 {
            peer.options.set_http_version(2, 1);
            peer.options.max_h2_streams = H2_STREAMS_PER_CONNECTION;
        }
        if let Some(tunnel) = &self.tunnel {
            // `addr` is the proxy's; the tunnel asks it for this origin by name. (pingora
            // pools connections by address, not by connector: a bounded copy per call costs
            // no reuse.)
            let tunnel = match connect_timeout {
                Some(limit) => Arc::new(tunnel.within(limit)),
                None => Arc::clone(tunnel),
            };
            peer.options.custom_l4 = Some(tunnel as _);
        }
        Ok(Box::new(peer))
    }

    /// The address to connect to: the origin's, or the proxy's when tunnelled.
    async fn resolve(&self) -> Result<SocketAddr> {
        let (host, port) = match &self.tunnel {
            Some(t) => t.proxy_host(),
            None => (self.host.as_str(), self.port),
        };
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        if let Some((addr, at)) = *self.resolved.read().unwrap_or_else(|p| p.into_inner()) {
            if at.elapsed() < DNS_TTL {
                return Ok(addr);
            }
        }
        let addr = tokio::net::lookup_host((host, port))
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| {
                Error::explain(
                    ErrorType::ConnectNoRoute,
                    format!("cannot resolve host {host}"),
                )
            })?;
        *self.resolved.write().unwrap_or_else(|p| p.into_inner()) = Some((addr, Instant::now()));
        Ok(addr)
    }
}
