//! Forward-auth: `/auth/check`, which an existing ingress calls before it serves a request
//! (nginx `auth_request`, Caddy `forward_auth`, Traefik `forwardAuth`, Envoy `ext_authz`).
//!
//! The ingress says what the original request was: `X-Forwarded-Method`, `-Proto`, `-Host`,
//! `-Uri` (Traefik, Caddy), `X-Original-Method`/`X-Original-URI` (nginx, with the host in
//! `Host`), or, as Envoy sends it, the original path after `/auth/check` with the original
//! `Host`. Those headers are believed only from `forward_auth.trusted_proxies`, and the
//! original host only when it is in `forward_auth.allowed_hosts`: the URL the login returns
//! to is built from them, so a host the operator did not list can never be a destination.
//!
//! The answer: a valid session → 200 with the identity headers (`identity`, the same list the
//! app behind the public listener gets) for the ingress to copy to the app; no session → a
//! browser's GET gets 302 to the login with `return_to` = the original URL, anyone else 401
//! JSON with `login_url` (also in `X-Login-Url`, for nginx's `error_page 401`).
//!
//! ```text
//! curl -i http://127.0.0.1:8080/auth/check -H 'X-Forwarded-Host: app.example.com' \
//!      -H 'X-Forwarded-Proto: https' -H 'X-Forwarded-Uri: /reports?q=1'
//! ```

use std::net::IpAddr;

use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::proxy::Session;
use serde_json::json;
use url::Url;

use super::identity;
use super::{PublicCtx, PublicProxy};
use crate::config::ForwardAuthConfig;
use crate::net::host::HostPort;
use crate::proxy::respond::{redirect, respond_json, wants_html, Failure};

/// Longest original request target accepted.
const MAX_ORIGINAL_URI: usize = 8192;
/// The route prefix, after which Envoy's `ext_authz` appends the original path.
const CHECK_PATH: &str = "/auth/check";

/// The request the ingress is about to serve.
#[derive(Debug, PartialEq, Eq)]
pub struct Original {
    pub method: http::Method,
    /// Absolute, on an allowed host.
    pub url: Url,
}

/// Why the original request cannot be known.
#[derive(Debug, PartialEq, Eq)]
pub enum OriginalError {
    /// The peer is not in `forward_auth.trusted_proxies`.
    UntrustedPeer,
    /// The original host is missing, malformed or not in `forward_auth.allowed_hosts`.
    HostNotAllowed,
    /// The named header is repeated or not a valid value.
    Malformed(&'static str),
}

impl OriginalError {
    fn failure(&self) -> Failure {
        match self {
            OriginalError::UntrustedPeer => Failure::Forbidden {
                code: "untrusted_proxy",
                message: "/auth/check answers only the proxies in forward_auth.trusted_proxies.",
            },
            OriginalError::HostNotAllowed => Failure::Forbidden {
                code: "host_not_allowed",
                message: "The request's host is not in forward_auth.allowed_hosts.",
            },
            OriginalError::Malformed(header) => Failure::BadRequest(
                format!("{header} does not describe an original request the gateway accepts.")
                    .into(),
            ),
        }
    }
}

/// The one value of header `name`: `None` when absent; repeated or not visible ASCII is
/// malformed (two values would let one proxy and the gateway read different ones).
fn one<'r>(req: &'r RequestHeader, name: &'static str) -> Result<Option<&'r str>, OriginalError> {
    let mut values = req.headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(OriginalError::Malformed(name));
    }
    first
        .to_str()
        .map(|v| Some(v.trim()))
        .map_err(|_| OriginalError::Malformed(name))
}

/// The original request, from the headers of a check sent by `peer`. `default_scheme` is the
/// gateway's own (from `spotify.redirect_uri`), for an ingress that does not say.
pub fn original(
    req: &RequestHeader,
    peer: Option<IpAddr>,
    fa: &ForwardAuthConfig,
    default_scheme: &str,
) -> Result<Original, OriginalError> {
    if !peer.is_some_and(|p| fa.trusts(p)) {
        return Err(OriginalError::UntrustedPeer);
    }
    let scheme = match one(req, "x-forwarded-proto")?.map(str::to_ascii_lowercase) {
        None => default_scheme.to_string(),
        // Traefik says ws/wss for a WebSocket upgrade.
        Some(p) if p == "https" || p == "wss" => "https".into(),
        Some(p) if p == "http" || p == "ws" => "http".into(),
        Some(_) => return Err(OriginalError::Malformed("x-forwarded-proto")),
    };
    let host = match one(req, "x-forwarded-host")? {
        Some(h) => h,
        None => one(req, "host")?.ok_or(OriginalError::HostNotAllowed)?,
    };
    let host = HostPort::parse(host).map_err(|_| OriginalError::HostNotAllowed)?;
    if !fa.allows_host(&host, &scheme) {
        return Err(OriginalError::HostNotAllowed);
    }
    let (uri, uri_header) = match (one(req, "x-forwarded-uri")?, one(req, "x-original-uri")?) {
        (Some(u), _) => (u.to_string(), "x-forwarded-uri"),
        (None, Some(u)) => (u.to_string(), "x-original-uri"),
        (None, None) => (envoy_target(req), "the request target"),
    };
    let bad_uri = uri.len() > MAX_ORIGINAL_URI
        || !uri.starts_with('/')
        || uri.contains(['\\', '#'])
        || uri.chars().any(|c| c.is_control() || c.is_whitespace());
    if bad_uri {
        return Err(OriginalError::Malformed(uri_header));
    }
    let url = Url::parse(&format!("{scheme}://{host}{uri}"))
        .map_err(|_| OriginalError::Malformed(uri_header))?;
    // What the parser made of it must still be that host (defence in depth: the target
    // starts with `/`, so nothing in it can be read as an authority).
    let parsed = HostPort {
        host: url.host_str().unwrap_or_default().to_string(),
        port: url.port(),
    };
    if !parsed.matches(&host, &scheme) {
        return Err(OriginalError::HostNotAllowed);
    }
    let method = match one(req, "x-forwarded-method")?.or(one(req, "x-original-method")?) {
        Some(m) => http::Method::from_bytes(m.as_bytes())
            .map_err(|_| OriginalError::Malformed("x-forwarded-method"))?,
        None => req.method.clone(),
    };
    Ok(Original { method, url })
}

/// Envoy's `ext_authz` HTTP service sends the original path after the check's own path.
fn envoy_target(req: &RequestHeader) -> String {
    let rest = req.uri.path().strip_prefix(CHECK_PATH).unwrap_or_default();
    let mut target = if rest.is_empty() { "/" } else { rest }.to_string();
    if let Some(q) = req.uri.query() {
        target.push('?');
        target.push_str(q);
    }
    target
}

impl PublicProxy {
    /// `/auth/check`: see the module docs.
    pub(super) async fn check(&self, session: &mut Session, ctx: &mut PublicCtx) -> Result<()> {
        let live = self.gw.live();
        let Some(fa) = live.forward_auth.as_ref() else {
            let failure = Failure::NotFound("Forward-auth is off: configure [forward_auth].");
            return self.problem(session, ctx, failure).await;
        };
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let scheme = self.gw.app.spotify.redirect_uri.scheme();
        let original = match original(session.req_header(), peer, fa, scheme) {
            Ok(o) => o,
            Err(e) => {
                tracing::info!(reason = ?e, "forward-auth check refused");
                return self.problem(session, ctx, e.failure()).await;
            }
        };
        let request_id = ("x-request-id", ctx.req.id.clone());
        match self.current_session(session).await {
            Ok(Some(s)) => {
                let identity =
                    identity::identity_headers(&s, &self.gw.sessions.keys(), &self.issued)?;
                let mut headers: Vec<(&'static str, String)> = identity
                    .into_iter()
                    .map(|(name, v)| (name, String::from_utf8_lossy(v.as_bytes()).into()))
                    .collect();
                headers.push(request_id);
                ctx.session = Some(s);
                respond_json(session, 200, &json!({ "authenticated": true }), &headers).await
            }
            Ok(None) => {
                let login_url = self.gw.login_url(Some(original.url.as_str()));
                let mut cookies = Vec::new();
                if self.has_session_cookie(session) {
                    cookies.push(self.cookies.clear(&self.cookies.session));
                }
                let navigation = matches!(original.method, http::Method::GET | http::Method::HEAD);
                if navigation && wants_html(session.req_header()) {
                    return redirect(session, &login_url, &cookies, &ctx.req.id).await;
                }
                let body = json!({
                    "error": "unauthenticated",
                    "message": "Sign in with Spotify first.",
                    "login_url": login_url,
                });
                let mut headers = vec![request_id, ("x-login-url", login_url)];
                headers.extend(cookies.into_iter().map(|c| ("set-cookie", c)));
                respond_json(session, 401, &body, &headers).await
            }
            Err(_) => self.problem(session, ctx, Failure::StoreUnavailable).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AllowedHost;

    const INGRESS: [u8; 4] = [10, 0, 0, 7];

    fn fa() -> ForwardAuthConfig {
        ForwardAuthConfig {
            allowed_hosts: ["app.example.com", "127.0.0.1:8443"]
                .iter()
                .map(|h| AllowedHost(HostPort::parse(h).expect("host")))
                .collect(),
            trusted_proxies: vec!["10.0.0.0/8".parse().expect("net")],
        }
    }

    fn request(path: &str, headers: &[(&'static str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", path.as_bytes(), None).expect("req");
        for (name, value) in headers {
            req.append_header(*name, *value).expect("header");
        }
        req
    }

    fn check(path: &str, headers: &[(&'static str, &str)]) -> Result<Original, OriginalError> {
        original(
            &request(path, headers),
            Some(IpAddr::from(INGRESS)),
            &fa(),
            "https",
        )
    }

    #[test]
    fn reads_traefik_caddy_nginx_and_envoy_spellings() {
        let traefik = check(
            "/auth/check",
            &[
                ("x-forwarded-method", "POST"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "app.example.com"),
                ("x-forwarded-uri", "/reports?q=1"),
            ],
        )
        .expect("traefik");
        assert_eq!(traefik.method, http::Method::POST);
        assert_eq!(traefik.url.as_str(), "https://app.example.com/reports?q=1");
        let nginx = check(
            "/auth/check",
            &[
                ("host", "127.0.0.1:8443"),
                ("x-original-uri", "/a/../b"),
                ("x-original-method", "GET"),
            ],
        )
        .expect("nginx");
        assert_eq!(nginx.url.as_str(), "https://127.0.0.1:8443/b");
        let envoy = check("/auth/check/app/x?y=2", &[("host", "app.example.com")]).expect("envoy");
        assert_eq!(envoy.url.as_str(), "https://app.example.com/app/x?y=2");
        let ws = check(
            "/auth/check",
            &[
                ("x-forwarded-proto", "WSS"),
                ("x-forwarded-host", "APP.example.com"),
            ],
        )
        .expect("ws");
        assert_eq!(ws.url.as_str(), "https://app.example.com/");
    }

    #[test]
    fn only_trusted_proxies_are_believed() {
        let req = request("/auth/check", &[("x-forwarded-host", "app.example.com")]);
        for peer in [
            None,
            Some(IpAddr::from([127, 0, 0, 1])),
            Some(IpAddr::from([11, 0, 0, 1])),
        ] {
            assert_eq!(
                original(&req, peer, &fa(), "https"),
                Err(OriginalError::UntrustedPeer),
                "{peer:?}"
            );
        }
        // An IPv4 peer seen on an IPv6 socket is still that IPv4 peer.
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().expect("ip");
        assert!(original(&req, Some(mapped), &fa(), "https").is_ok());
    }

    #[test]
    fn no_spelling_of_the_forwarded_host_reaches_an_unlisted_host() {
        for host in [
            "evil.example",
            "app.example.com@evil.example",
            "evil.example@app.example.com",
            "app.example.com\\@evil.example",
            "app.example.com.evil.example",
            "app.example.com.",
            "app.example.com:8443",
            "app.example.com, evil.example",
            "//evil.example",
            "%61pp.example.com",
            "app.example.com/",
            "app.example.com:443@evil.example",
            "127.0.0.1",
            "127.0.0.1:8444",
            "",
        ] {
            let got = check(
                "/auth/check",
                &[("x-forwarded-host", host), ("x-forwarded-uri", "/")],
            );
            assert_eq!(got, Err(OriginalError::HostNotAllowed), "{host:?}");
        }
        // Over http the port-less entry means port 80, not 443.
        let http = check(
            "/auth/check",
            &[
                ("x-forwarded-proto", "http"),
                ("x-forwarded-host", "app.example.com:443"),
            ],
        );
        assert_eq!(http, Err(OriginalError::HostNotAllowed));
        // Two hosts: which one is meant is ambiguous.
        let twice = check(
            "/auth/check",
            &[
                ("x-forwarded-host", "app.example.com"),
                ("x-forwarded-host", "evil.example"),
            ],
        );
        assert_eq!(twice, Err(OriginalError::Malformed("x-forwarded-host")));
    }

    #[test]
    fn the_original_target_cannot_name_another_host() {
        for uri in [
            "//evil.example/",
            "\\\\evil.example",
            "/\\evil.example",
            "https://evil.example/",
            "evil.example",
            "@evil.example",
            "/#@evil.example",
            "/a b",
        ] {
            let got = check(
                "/auth/check",
                &[
                    ("x-forwarded-host", "app.example.com"),
                    ("x-forwarded-uri", uri),
                ],
            );
            match got {
                Ok(o) => {
                    // Only `//evil.example/` parses, as a path on the allowed host.
                    assert_eq!(o.url.host_str(), Some("app.example.com"), "{uri:?}");
                }
                Err(e) => assert_eq!(e, OriginalError::Malformed("x-forwarded-uri"), "{uri:?}"),
            }
        }
        let bad_proto = check(
            "/auth/check",
            &[
                ("x-forwarded-host", "app.example.com"),
                ("x-forwarded-proto", "javascript"),
            ],
        );
        assert_eq!(
            bad_proto,
            Err(OriginalError::Malformed("x-forwarded-proto"))
        );
    }
}
