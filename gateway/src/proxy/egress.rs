//! The egress listener: internal apps call it as they would call `https://api.spotify.com`,
//! with no token. It decides whose token the call needs, injects it and forwards the call to
//! `spotify.api_url`; Spotify's answer comes back unchanged.
//!
//! ```text
//! curl 'http://127.0.0.1:8081/v1/search?q=abba&type=track'   # with `spotify-gateway demo`
//! ```

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};

use super::{respond_json, response_status, spotify_error, UpstreamTarget, IDENTITY_HEADERS};
use crate::oauth::{Grant, TokenError};
use crate::state::Gateway;

/// Listener name in metrics and logs.
const LISTENER: &str = "egress";

/// First path segments of the Web API, used as route labels; anything else is `/v1/other`, so
/// metric labels stay bounded whatever callers send.
const KNOWN_ROUTES: &[(&str, &str)] = &[
    ("albums", "/v1/albums"),
    ("artists", "/v1/artists"),
    ("audiobooks", "/v1/audiobooks"),
    ("browse", "/v1/browse"),
    ("chapters", "/v1/chapters"),
    ("episodes", "/v1/episodes"),
    ("markets", "/v1/markets"),
    ("me", "/v1/me"),
    ("playlists", "/v1/playlists"),
    ("recommendations", "/v1/recommendations"),
    ("search", "/v1/search"),
    ("shows", "/v1/shows"),
    ("tracks", "/v1/tracks"),
    ("users", "/v1/users"),
];

pub struct EgressProxy {
    gw: Arc<Gateway>,
    api: UpstreamTarget,
}

#[derive(Default)]
pub struct EgressCtx {
    started: Option<Instant>,
    route: &'static str,
    request_id: String,
    /// The token injected into this call.
    token: Option<Arc<Grant>>,
    upstream_started: Option<Instant>,
}

impl EgressProxy {
    pub fn new(gw: Arc<Gateway>) -> EgressProxy {
        let api = UpstreamTarget::from_url(&gw.config.spotify.api_url);
        EgressProxy { gw, api }
    }
}

/// Why a request target is refused before any token is touched.
#[derive(Debug, PartialEq, Eq)]
enum TargetProblem {
    /// Not under `/v1/`: 404, as api.spotify.com answers.
    NotApi,
    /// Absolute-form, dot segments, encoded separators: 400.
    Unsafe(&'static str),
}

/// Checks a request target and returns its route label. Only origin-form paths under `/v1/`
/// without dot segments pass, so a token can only ever reach the configured API host, under
/// `/v1/`.
fn check_target(uri: &http::Uri) -> Result<&'static str, TargetProblem> {
    if uri.scheme().is_some() || uri.authority().is_some() {
        return Err(TargetProblem::Unsafe(
            "absolute-form request targets are not accepted; send the path only",
        ));
    }
    let path = uri.path();
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || path.contains('\\') {
        return Err(TargetProblem::Unsafe(
            "encoded path separators are not accepted",
        ));
    }
    let has_dot_segment = lower
        .split('/')
        .any(|seg| matches!(seg.replace("%2e", ".").as_str(), "." | ".."));
    if has_dot_segment {
        return Err(TargetProblem::Unsafe(
            "dot segments are not accepted in the path",
        ));
    }
    let Some(rest) = path.strip_prefix("/v1/") else {
        return Err(TargetProblem::NotApi);
    };
    let first = rest.split('/').next().unwrap_or_default();
    Ok(KNOWN_ROUTES
        .iter()
        .find(|(seg, _)| *seg == first)
        .map(|(_, route)| *route)
        .unwrap_or("/v1/other"))
}

#[async_trait]
impl ProxyHttp for EgressProxy {
    type CTX = EgressCtx;

    fn new_ctx(&self) -> EgressCtx {
        EgressCtx {
            started: Some(Instant::now()),
            route: "unmatched",
            ..Default::default()
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut EgressCtx) -> Result<bool> {
        ctx.request_id = super::request_id(session);
        let rid = [("x-request-id", ctx.request_id.clone())];
        if session.req_header().method == http::Method::CONNECT {
            respond_json(
                session,
                405,
                &spotify_error(405, "CONNECT is not supported"),
                &rid,
            )
            .await?;
            return Ok(true);
        }
        ctx.route = match check_target(&session.req_header().uri) {
            Ok(route) => route,
            Err(TargetProblem::NotApi) => {
                respond_json(
                    session,
                    404,
                    &spotify_error(
                        404,
                        "Service not found: the egress listener serves /v1/ only",
                    ),
                    &rid,
                )
                .await?;
                return Ok(true);
            }
            Err(TargetProblem::Unsafe(why)) => {
                respond_json(session, 400, &spotify_error(400, why), &rid).await?;
                return Ok(true);
            }
        };

        if !self.gw.config.egress.app_token {
            respond_json(
                session,
                401,
                &spotify_error(
                    401,
                    "No user identity on this call (X-Gateway-User) and the app token is \
                     disabled (egress.app_token = false)",
                ),
                &rid,
            )
            .await?;
            return Ok(true);
        }
        match self.gw.app_tokens.get().await {
            Ok(token) => {
                ctx.token = Some(token);
                Ok(false)
            }
            Err(e) => {
                let (status, message) = match &e {
                    TokenError::Unavailable(_) => (
                        503,
                        "Spotify's token endpoint is unavailable; the gateway could not get an \
                         app token. Retry shortly.",
                    ),
                    _ => (
                        502,
                        "Spotify refused the gateway's client credentials; the operator must \
                         check spotify.client_id and the client secret.",
                    ),
                };
                let mut headers = rid.to_vec();
                if status == 503 {
                    headers.push(("retry-after", "1".into()));
                }
                respond_json(session, status, &spotify_error(status, message), &headers).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut EgressCtx,
    ) -> Result<Box<HttpPeer>> {
        ctx.upstream_started = Some(Instant::now());
        self.api.peer().await
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut EgressCtx,
    ) -> Result<()> {
        // The client's credentials and identity claims never reach Spotify.
        for name in ["authorization", "cookie", "proxy-authorization"]
            .iter()
            .chain(IDENTITY_HEADERS.iter())
        {
            upstream.remove_header(*name);
        }
        let spotify_headers: Vec<_> = upstream
            .headers
            .keys()
            .filter(|k| k.as_str().starts_with("x-spotify-"))
            .cloned()
            .collect();
        for name in spotify_headers {
            upstream.remove_header(&name);
        }
        if let Some(token) = &ctx.token {
            upstream.insert_header(
                "authorization",
                format!("Bearer {}", token.access_token.expose()),
            )?;
        }
        upstream.insert_header("host", self.api.host_header())?;
        upstream.insert_header("x-request-id", ctx.request_id.as_str())?;
        // Origin-form only: whatever the client sent, the request goes to the API host.
        if let Some(pq) = session.req_header().uri.path_and_query() {
            if let Ok(uri) = pq.as_str().parse::<http::Uri>() {
                upstream.set_uri(uri);
            }
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream: &mut ResponseHeader,
        ctx: &mut EgressCtx,
    ) -> Result<()> {
        if let Some(at) = ctx.upstream_started {
            self.gw
                .metrics
                .upstream_duration
                .with_label_values(&[LISTENER])
                .observe(at.elapsed().as_secs_f64());
        }
        match upstream.status.as_u16() {
            401 => {
                // Spotify no longer takes this token (revoked, clock skew): fetch a new one
                // for the next call.
                if let Some(token) = &ctx.token {
                    self.gw.app_tokens.invalidate(token);
                }
            }
            429 => self.gw.metrics.spotify_rate_limited.inc(),
            _ => {}
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream: &mut ResponseHeader,
        ctx: &mut EgressCtx,
    ) -> Result<()> {
        upstream.insert_header("x-request-id", ctx.request_id.as_str())?;
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut EgressCtx,
    ) -> FailToProxy {
        let code = super::error_status(e);
        if code > 0 {
            let message = if code == 502 {
                "The gateway could not reach Spotify's Web API"
            } else {
                "The gateway could not complete the request"
            };
            let rid = [("x-request-id", ctx.request_id.clone())];
            if let Err(err) = respond_json(session, code, &spotify_error(code, message), &rid).await
            {
                tracing::debug!(error = %err, "could not write the error answer");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut EgressCtx) {
        let status = response_status(session);
        let elapsed = ctx.started.map(|s| s.elapsed()).unwrap_or_default();
        self.gw
            .metrics
            .observe_request(LISTENER, ctx.route, status, elapsed.as_secs_f64());
        let req = session.req_header();
        tracing::info!(
            target: "access",
            listener = LISTENER,
            request_id = %ctx.request_id,
            method = %req.method,
            route = ctx.route,
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            error = e.map(|e| e.etype().as_str()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(target: &str) -> Result<&'static str, TargetProblem> {
        check_target(&target.parse().expect("valid uri"))
    }

    #[test]
    fn only_origin_form_v1_paths_pass() {
        assert_eq!(check("/v1/search?q=abba"), Ok("/v1/search"));
        assert_eq!(check("/v1/me/player"), Ok("/v1/me"));
        assert_eq!(check("/v1/unheard-of"), Ok("/v1/other"));
        assert_eq!(check("/v2/search"), Err(TargetProblem::NotApi));
        assert_eq!(check("/"), Err(TargetProblem::NotApi));
        assert!(matches!(
            check("http://evil.example/v1/me"),
            Err(TargetProblem::Unsafe(_))
        ));
        assert!(matches!(
            check("/v1/../admin"),
            Err(TargetProblem::Unsafe(_))
        ));
        assert!(matches!(
            check("/v1/%2e%2E/x"),
            Err(TargetProblem::Unsafe(_))
        ));
        assert!(matches!(check("/v1/a%2fb"), Err(TargetProblem::Unsafe(_))));
    }
}
