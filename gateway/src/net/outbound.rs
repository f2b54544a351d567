//! The way out to Spotify: directly, or through an HTTP CONNECT proxy (`spotify.proxy_url`)
//! as clusters without direct egress need. Both clients take it from here, so they cannot
//! disagree: the token client (reqwest's `Proxy`, and none of reqwest's own `HTTPS_PROXY`
//! reading) and the egress proxy (a pingora custom connector, [`Tunnel`], that opens the
//! CONNECT tunnel; TLS to Spotify then runs inside it, verified end to end).
//!
//! Hosts in `spotify.no_proxy` go direct, with the semantics reqwest and curl give
//! `NO_PROXY`: `*`, an IP address, a CIDR block, or a domain that also covers its subdomains
//! (a leading dot is ignored). The default is loopback: `localhost`, `127.0.0.0/8`, `::1`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use pingora::connectors::L4Connect;
use pingora::prelude::*;
use pingora::protocols::l4::socket::SocketAddr;
use pingora::protocols::l4::stream::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{NoProxyEntry, ProxyConfig};
use crate::secret::Secret;

/// The proxy's answer to CONNECT must fit in this (a status line and a few headers).
const MAX_CONNECT_ANSWER: usize = 8 * 1024;

/// pingora error types for a tunnel that could not be opened; `fail_to_proxy` answers them.
pub const PROXY_UNREACHABLE: ErrorType = ErrorType::ConnectProxyFailure;
pub const PROXY_AUTH_REFUSED: ErrorType = ErrorType::Custom("ProxyAuthRefused");

/// Why a tunnel through the outbound proxy was not opened, for the caller's 502 and the
/// operator's log line. Retrying helps with neither until the operator acts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyProblem {
    /// The proxy could not be reached, or refused the tunnel. (The token client cannot tell
    /// a refusal of its credentials from other refusals unless the proxy answers 407.)
    Unreachable,
    /// The proxy answered 407 (or 401, as tinyproxy does): the credentials are missing or
    /// wrong.
    CredentialsRefused,
}

impl ProxyProblem {
    /// The caller's message.
    pub fn message(self) -> &'static str {
        match self {
            ProxyProblem::Unreachable => {
                "The gateway could not open a tunnel to Spotify through its outbound proxy \
                 (spotify.proxy_url): the proxy is down, or refused the tunnel or the \
                 credentials (spotify.proxy_credentials)"
            }
            ProxyProblem::CredentialsRefused => {
                "The gateway's outbound proxy refused its credentials \
                 (spotify.proxy_credentials)"
            }
        }
    }

    /// A failed connection of the egress proxy (pingora), from [`Tunnel`].
    pub fn of_pingora(e: &Error) -> Option<ProxyProblem> {
        match e.etype() {
            t if *t == PROXY_AUTH_REFUSED => Some(ProxyProblem::CredentialsRefused),
            t if *t == PROXY_UNREACHABLE => Some(ProxyProblem::Unreachable),
            _ => None,
        }
    }

    /// A failed request of the token client through the proxy, from the error and its chain
    /// (hyper-util's tunnel errors; reqwest names the proxy connection when the proxy cannot
    /// be reached). Through the proxy, any failure to connect is the tunnel's: the connection
    /// is to the proxy, and it ends with the proxy's answer to CONNECT (a TLS failure inside
    /// the tunnel is told apart before this). That includes a proxy that accepts and never
    /// answers, which reqwest reports as a connect timeout.
    pub fn of_reqwest(e: &reqwest::Error, chain: &str) -> Option<ProxyProblem> {
        if chain.contains("proxy authorization required") {
            Some(ProxyProblem::CredentialsRefused)
        } else if e.is_connect() || chain.contains("tunnel") || chain.contains("proxy") {
            Some(ProxyProblem::Unreachable)
        } else {
            None
        }
    }

    /// The operator's log line: what failed and what to check.
    pub fn report(self, client: &'static str, detail: &dyn std::fmt::Display) {
        let remedy = match self {
            ProxyProblem::Unreachable => {
                "check that spotify.proxy_url is up, allows CONNECT to Spotify's port 443, and \
                 takes the credentials in spotify.proxy_credentials_env/_file"
            }
            ProxyProblem::CredentialsRefused => {
                "check the user:password in spotify.proxy_credentials_env/_file"
            }
        };
        tracing::error!(client, error = %detail, "no tunnel to Spotify through the outbound proxy: {remedy}");
    }
}

/// Where the clients to Spotify connect: `None` is direct.
#[derive(Clone, Debug, Default)]
pub struct Outbound {
    proxy: Option<Arc<Proxy>>,
}

#[derive(Debug)]
struct Proxy {
    /// `http://host:port`, for reqwest and for logs (never carries credentials).
    url: url::Url,
    host: String,
    port: u16,
    /// `Basic …` for `Proxy-Authorization`.
    authorization: Option<Secret>,
    no_proxy: Vec<NoProxyEntry>,
}

impl Outbound {
    pub fn new(config: Option<&ProxyConfig>) -> Outbound {
        let proxy = config.map(|c| {
            let authorization = c.credentials.as_ref().map(|cred| {
                let encoded = base64::engine::general_purpose::STANDARD.encode(cred.expose());
                Secret::runtime(format!("Basic {encoded}"))
            });
            Arc::new(Proxy {
                url: c.url.clone(),
                host: c.url.host_str().unwrap_or_default().to_string(),
                port: c.url.port_or_known_default().unwrap_or(80),
                authorization,
                no_proxy: c.no_proxy.clone(),
            })
        });
        Outbound { proxy }
    }

    /// The proxy's `http://host:port`, when there is one (for logs and error messages).
    pub fn proxy_url(&self) -> Option<&url::Url> {
        self.proxy.as_ref().map(|p| &p.url)
    }

    /// The token client's way out: this proxy (with `no_proxy`), and never the one reqwest
    /// would read from `HTTPS_PROXY` on its own, which the egress proxy would not follow.
    pub fn reqwest(
        &self,
        builder: reqwest::ClientBuilder,
    ) -> reqwest::Result<reqwest::ClientBuilder> {
        let builder = builder.no_proxy();
        let Some(p) = &self.proxy else {
            return Ok(builder);
        };
        let mut proxy = reqwest::Proxy::all(p.url.as_str())?;
        if let Some(auth) = &p.authorization {
            let value =
                http::HeaderValue::from_str(auth.expose()).expect("base64 is a valid header value");
            proxy = proxy.custom_http_auth(value);
        }
        let list: Vec<String> = p.no_proxy.iter().map(NoProxyEntry::to_string).collect();
        // An empty list is `None`: every host through the proxy.
        proxy = proxy.no_proxy(reqwest::NoProxy::from_string(&list.join(",")));
        Ok(builder.proxy(proxy))
    }

    /// The tunnel a connection to `host:port` goes through, or `None` to go direct.
    pub fn tunnel_to(&self, host: &str, port: u16) -> Option<Tunnel> {
        let p = self.proxy.as_ref()?;
        if bypasses(&p.no_proxy, host) {
            return None;
        }
        Some(Tunnel {
            proxy: Arc::clone(p),
            target: format!("{}:{port}", bracket(host)).into(),
            connect_timeout: None,
        })
    }
}

/// Whether `host` (a name, or an IP literal without brackets) goes direct.
pub fn bypasses(no_proxy: &[NoProxyEntry], host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let ip = host.parse::<IpAddr>().ok();
    no_proxy.iter().any(|entry| match (entry, ip) {
        (NoProxyEntry::All, _) => true,
        (NoProxyEntry::Net(net), Some(ip)) => net.contains(&ip),
        (NoProxyEntry::Domain(d), None) => {
            host == *d
                || host
                    .strip_suffix(d.as_str())
                    .is_some_and(|h| h.ends_with('.'))
        }
        _ => false,
    })
}

fn bracket(host: &str) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => format!("[{host}]"),
        _ => host.to_string(),
    }
}

/// A pingora connector that reaches its peer through the proxy: TCP to the proxy (the
/// address pingora hands over is the proxy's), `CONNECT target`, and the stream once the
/// proxy answers 2xx. The target is sent by name, so the proxy resolves it: a cluster
/// without direct egress often cannot resolve Spotify's names either.
///
/// pingora bounds only its own TCP connect by the peer's `connection_timeout`, not a custom
/// connector's, so the tunnel bounds itself: [`Tunnel::within`] gives each attempt the time
/// its call has (a proxy that accepts and never answers would otherwise hold the call until
/// it thaws).
#[derive(Clone, Debug)]
pub struct Tunnel {
    proxy: Arc<Proxy>,
    /// `host:port` for the CONNECT line.
    target: Arc<str>,
    /// The connection to the proxy and its answer to CONNECT, together, take at most this.
    connect_timeout: Option<Duration>,
}

impl Tunnel {
    /// The proxy's host and port, which the peer's address must resolve.
    pub fn proxy_host(&self) -> (&str, u16) {
        (&self.proxy.host, self.proxy.port)
    }

    /// This tunnel, opened within `timeout` (the call's `egress.connect_timeout`, cut to what
    /// is left of its deadline) or failed as [`PROXY_UNREACHABLE`].
    pub fn within(&self, timeout: Duration) -> Tunnel {
        Tunnel {
            connect_timeout: Some(timeout),
            ..self.clone()
        }
    }

    async fn open_within(&self, addr: &SocketAddr) -> Result<TcpStream> {
        let Some(limit) = self.connect_timeout else {
            return self.open(addr).await;
        };
        match tokio::time::timeout(limit, self.open(addr)).await {
            Ok(opened) => opened,
            Err(_) => Error::e_explain(
                PROXY_UNREACHABLE,
                format!(
                    "the outbound proxy {} opened no tunnel to {} within {limit:?} \
                     (egress.connect_timeout, or what was left of the call's deadline)",
                    self.proxy.url, self.target
                ),
            ),
        }
    }

    async fn open(&self, addr: &SocketAddr) -> Result<TcpStream> {
        let SocketAddr::Inet(addr) = addr else {
            return Error::e_explain(PROXY_UNREACHABLE, "the outbound proxy has no TCP address");
        };
        let mut tcp = TcpStream::connect(addr).await.map_err(|e| {
            Error::because(
                PROXY_UNREACHABLE,
                format!("cannot connect to the outbound proxy {}", self.proxy.url),
                e,
            )
        })?;
        tcp.set_nodelay(true).ok();
        let mut request = format!(
            "CONNECT {t} HTTP/1.1\r\nHost: {t}\r\nUser-Agent: spotify-gateway\r\n",
            t = self.target
        );
        if let Some(auth) = &self.proxy.authorization {
            request.push_str("Proxy-Authorization: ");
            request.push_str(auth.expose());
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        let io = |e: std::io::Error| {
            Error::because(
                PROXY_UNREACHABLE,
                format!("the outbound proxy {} dropped the CONNECT", self.proxy.url),
                e,
            )
        };
        tcp.write_all(request.as_bytes()).await.map_err(io)?;
        let status = read_connect_answer(&mut tcp).await.map_err(io)?;
        match status {
            Some(200..=299) => Ok(tcp),
            Some(code @ (401 | 407)) => Error::e_explain(
                PROXY_AUTH_REFUSED,
                format!(
                    "the outbound proxy {} refused the credentials ({code}); check \
                     spotify.proxy_credentials",
                    self.proxy.url
                ),
            ),
            Some(code) => Error::e_explain(
                PROXY_UNREACHABLE,
                format!(
                    "the outbound proxy {} answered {code} to CONNECT {}",
                    self.proxy.url, self.target
                ),
            ),
            None => Error::e_explain(
                PROXY_UNREACHABLE,
                format!(
                    "the outbound proxy {} sent no HTTP answer to CONNECT",
                    self.proxy.url
                ),
            ),
        }
    }
}

/// Reads the proxy's answer up to the blank line, byte by byte so that nothing of the
/// tunnelled stream (Spotify's TLS) is consumed; returns its status code.
async fn read_connect_answer(tcp: &mut TcpStream) -> std::io::Result<Option<u16>> {
    let mut buf = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if buf.len() >= MAX_CONNECT_ANSWER {
            return Ok(None);
        }
        if tcp.read(&mut byte).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.push(byte[0]);
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut answer = httparse::Response::new(&mut headers);
    Ok(match answer.parse(&buf) {
        Ok(httparse::Status::Complete(_)) => answer.code,
        _ => None,
    })
}

#[async_trait]
impl L4Connect for Tunnel {
    async fn connect(&self, addr: &SocketAddr) -> Result<Stream> {
        Ok(Stream::from(self.open_within(addr).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Vec<NoProxyEntry> {
        entries
            .iter()
            .map(|e| NoProxyEntry::parse(e).expect("entry"))
            .collect()
    }

    #[test]
    fn no_proxy_follows_curl_and_reqwest() {
        let l = list(&[
            "localhost",
            "127.0.0.0/8",
            "::1",
            ".internal.example",
            "10.1.2.3",
        ]);
        for direct in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "internal.example",
            "a.internal.example",
            "10.1.2.3",
        ] {
            assert!(bypasses(&l, direct), "{direct}");
        }
        for proxied in [
            "api.spotify.com",
            "notlocalhost",
            "xinternal.example",
            "10.1.2.4",
            "::2",
            "128.0.0.1",
        ] {
            assert!(!bypasses(&l, proxied), "{proxied}");
        }
        assert!(bypasses(&list(&["*"]), "api.spotify.com"));
        assert!(!bypasses(&[], "127.0.0.1"));
    }
}
