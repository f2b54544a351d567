//! The egress listener: internal apps call it as they would call `https://api.spotify.com`,
//! with no token. It decides whose token the call needs, injects it and forwards the call to
//! `spotify.api_url`; Spotify's answer comes back unchanged.
//!
//! ```text
//! curl 'http://127.0.0.1:8081/v1/search?q=abba&type=track'   # with `spotify-gateway demo`
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};

use super::links::{LinkMap, LinkRewriter};
use super::{respond_json, spotify_error, UpstreamTarget, IDENTITY_HEADERS};
use crate::oauth::{Grant, TokenError};
use crate::secret::Secret;
use crate::session::{LiveSession, SessionError};
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

/// First backoff before a retry; doubles per attempt, with full jitter.
const RETRY_BASE: Duration = Duration::from_millis(100);
const RETRY_CAP: Duration = Duration::from_secs(2);
/// Cool-down after a 429 that carried no usable `Retry-After`.
const DEFAULT_RETRY_AFTER_SECS: u64 = 1;

/// Hop-by-hop headers (RFC 9110 §7.6.1): they describe the client's connection to the
/// gateway, not a message for Spotify.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

pub struct EgressProxy {
    gw: Arc<Gateway>,
    api: UpstreamTarget,
    /// Spotify's rate limit is per app: after a 429 no call leaves before this instant
    /// (unix ms).
    blocked_until_ms: AtomicU64,
    /// `{api_url}/v1/` in Spotify's links, and what it becomes.
    links: Arc<LinkMap>,
}

/// Whose token a call carries.
enum Credential {
    App(Arc<Grant>),
    User {
        session: Arc<LiveSession>,
        token: Secret,
    },
}

impl Credential {
    fn bearer(&self) -> &str {
        match self {
            Credential::App(grant) => grant.access_token.expose(),
            Credential::User { token, .. } => token.expose(),
        }
    }
}

/// A local answer decided inside a phase that can only fail (`upstream_peer`); written by
/// `fail_to_proxy`.
struct LocalAnswer {
    status: u16,
    body: serde_json::Value,
    retry_after: Option<u64>,
}

#[derive(Default)]
pub struct EgressCtx {
    started: Option<Instant>,
    route: &'static str,
    request_id: String,
    credential: Option<Credential>,
    upstream_started: Option<Instant>,
    /// Spotify refused the user's token once; the retry must carry a refreshed one.
    retry_with_new_token: bool,
    /// The one retry after a 401 has been used.
    retried_401: bool,
    local_answer: Option<LocalAnswer>,
    /// The call, retries included, must end by then.
    deadline: Option<Instant>,
    /// Attempts sent (or tried) to Spotify so far.
    attempts: u32,
    /// Set when a retry is scheduled: wait this long before it.
    retry_backoff: Option<Duration>,
    /// Rewrites paging links in a JSON answer.
    rewrite: Option<LinkRewriter>,
}

impl EgressProxy {
    pub fn new(gw: Arc<Gateway>) -> EgressProxy {
        let api = UpstreamTarget::from_url(&gw.config.spotify.api_url);
        let origin = |u: &url::Url| u.as_str().trim_end_matches('/').to_string();
        let links = LinkMap::new(
            &format!("{}/v1/", origin(&gw.config.spotify.api_url)),
            &format!("{}/v1/", origin(&gw.config.egress.public_base_url)),
        );
        EgressProxy {
            gw,
            api,
            blocked_until_ms: AtomicU64::new(0),
            links,
        }
    }
}

impl EgressProxy {
    /// The session a call is for, from `X-Gateway-User` (or, where trusted, a plain
    /// `X-Spotify-User-Id`); `None` when the call names no user.
    async fn identify(&self, session: &Session) -> Result<Option<Arc<LiveSession>>, LocalAnswer> {
        let headers = &session.req_header().headers;
        let sessions = &self.gw.sessions;
        let claims = match headers.get("x-gateway-user") {
            Some(value) => Some(
                crate::assertion::verify(
                    sessions.keys(),
                    value.to_str().unwrap_or_default().trim(),
                )
                .ok_or_else(|| {
                    refusal(
                        401,
                        "X-Gateway-User is invalid or expired; use the one the gateway sent \
                             with the request you are serving",
                        None,
                    )
                })?,
            ),
            // Client libraries that can only set a bearer token (spotipy, rspotify) may pass
            // the assertion as their token; any other bearer token is the client's own and
            // ignored.
            None => headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .and_then(|t| crate::assertion::verify(sessions.keys(), t.trim())),
        };
        if let Some(claims) = claims {
            let found = sessions
                .by_key(&claims.sid)
                .await
                .map_err(|_| store_unavailable())?;
            return match found {
                Some(s) if s.is_user(&claims.sub) => Ok(Some(s)),
                _ => Err(self.session_ended()),
            };
        }
        if let Some(value) = headers.get("x-spotify-user-id") {
            if !self.gw.config.egress.trust_user_header {
                return Err(refusal(
                    401,
                    "X-Spotify-User-Id is not trusted on this gateway \
                     (egress.trust_user_header = false); send X-Gateway-User",
                    None,
                ));
            }
            if !may_trust_user_header(
                session.client_addr().and_then(|a| a.as_inet()),
                self.gw.config.egress.allow_trusted_header_on_network,
            ) {
                return Err(refusal(
                    401,
                    "X-Spotify-User-Id is trusted only from the gateway's own pod (loopback); \
                     send X-Gateway-User",
                    None,
                ));
            }
            let user = value.to_str().unwrap_or_default().trim();
            let found = sessions
                .by_user_id(user)
                .await
                .map_err(|_| store_unavailable())?;
            return found.map(Some).ok_or_else(|| self.session_ended());
        }
        Ok(None)
    }

    /// A usable token for the user, refreshed when needed, or the answer explaining why not.
    async fn user_token(&self, user: &LiveSession) -> Result<Secret, LocalAnswer> {
        match self.gw.sessions.access_token(user).await {
            Ok(token) => Ok(token),
            Err(SessionError::Ended) => Err(self.session_ended()),
            Err(SessionError::Store(_)) => Err(store_unavailable()),
            Err(SessionError::Token(TokenError::Unavailable(_))) => Err(LocalAnswer {
                status: 503,
                body: spotify_error(
                    503,
                    "Spotify's token endpoint is unavailable; the user's token could not be \
                     refreshed. The session is kept: retry shortly.",
                ),
                retry_after: Some(5),
            }),
            Err(SessionError::Token(_)) => Err(refusal(
                502,
                "Spotify refused the gateway's refresh request; the operator must check \
                 spotify.client_id and the client secret",
                None,
            )),
        }
    }

    async fn app_credential(&self, session: &mut Session, ctx: &mut EgressCtx) -> Result<bool> {
        if !self.gw.config.egress.app_token {
            let answer = refusal(
                401,
                "No user identity on this call (X-Gateway-User) and the app token is disabled \
                 (egress.app_token = false)",
                None,
            );
            write_local(session, ctx, answer).await?;
            return Ok(true);
        }
        match self.gw.app_tokens.get().await {
            Ok(token) => {
                ctx.credential = Some(Credential::App(token));
                Ok(false)
            }
            Err(e) => {
                let answer = match &e {
                    TokenError::Unavailable(_) => LocalAnswer {
                        status: 503,
                        body: spotify_error(
                            503,
                            "Spotify's token endpoint is unavailable; the gateway could not get \
                             an app token. Retry shortly.",
                        ),
                        retry_after: Some(1),
                    },
                    _ => refusal(
                        502,
                        "Spotify refused the gateway's client credentials; the operator must \
                         check spotify.client_id and the client secret.",
                        None,
                    ),
                };
                write_local(session, ctx, answer).await?;
                Ok(true)
            }
        }
    }

    /// Time left in the cool-down after a 429, if any.
    fn cool_down_remaining(&self) -> Option<Duration> {
        let until = self.blocked_until_ms.load(Ordering::SeqCst);
        let now = crate::oauth::now_ms();
        (until > now).then(|| Duration::from_millis(until - now))
    }

    /// The backoff before another attempt, or `None` when the call may not be retried: not
    /// idempotent (when the request may have reached Spotify), out of attempts, or the
    /// backoff would not fit in the call's deadline.
    fn retry_plan(
        &self,
        session: &Session,
        ctx: &EgressCtx,
        reached_spotify: bool,
    ) -> Option<Duration> {
        let method = &session.req_header().method;
        let idempotent = matches!(
            *method,
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
        );
        if reached_spotify && (!idempotent || session.as_ref().retry_buffer_truncated()) {
            return None;
        }
        if ctx.attempts > self.gw.config.egress.max_retries {
            return None;
        }
        let ceiling = RETRY_BASE
            .saturating_mul(1 << ctx.attempts.saturating_sub(1).min(10))
            .min(RETRY_CAP);
        let backoff = ceiling.mul_f64(rand::random::<f64>());
        let fits = ctx.deadline.is_some_and(|d| Instant::now() + backoff < d);
        fits.then_some(backoff)
    }

    /// Sets up link rewriting for JSON answers. Other answers stream untouched.
    fn prepare_rewrite(
        &self,
        session: &Session,
        upstream: &mut ResponseHeader,
        ctx: &mut EgressCtx,
    ) -> Result<()> {
        let status = upstream.status.as_u16();
        let is_json = upstream
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let has_body = session.req_header().method != http::Method::HEAD
            && !matches!(status, 204 | 304)
            && status >= 200;
        if !is_json || !has_body || self.links.is_identity() {
            return Ok(());
        }
        let encoding = upstream
            .headers
            .get("content-encoding")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase());
        let gzip = match encoding.as_deref() {
            None | Some("identity") => false,
            Some("gzip") => true,
            // An encoding we cannot read: pass it through as it is.
            Some(_) => return Ok(()),
        };
        let rewriter = LinkRewriter::new(Arc::clone(&self.links), gzip);
        if !rewriter.keeps_length() {
            // The body changes size (and loses its gzip): length is unknown until the end.
            upstream.remove_header("content-length");
            upstream.remove_header("content-encoding");
            upstream.insert_header("transfer-encoding", "chunked")?;
        }
        ctx.rewrite = Some(rewriter);
        Ok(())
    }

    fn session_ended(&self) -> LocalAnswer {
        let login_url = self.gw.login_url(None);
        let mut body = spotify_error(
            401,
            "The user's session has ended (signed out, expired or access revoked); the user \
             must sign in again",
        );
        body["error"]["reason"] = "SESSION_ENDED".into();
        body["error"]["login_url"] = login_url.into();
        LocalAnswer {
            status: 401,
            body,
            retry_after: None,
        }
    }
}

/// Whether a plain `X-Spotify-User-Id` from `peer` may be believed: only from the pod itself
/// (loopback), unless the operator explicitly allowed the network
/// (`egress.allow_trusted_header_on_network`). An unknown peer is not trusted.
fn may_trust_user_header(peer: Option<&std::net::SocketAddr>, allow_network: bool) -> bool {
    allow_network || peer.is_some_and(|p| p.ip().to_canonical().is_loopback())
}

fn refusal(status: u16, message: &str, retry_after: Option<u64>) -> LocalAnswer {
    LocalAnswer {
        status,
        body: spotify_error(status, message),
        retry_after,
    }
}

/// Spotify's 429 shape, answered locally while the cool-down lasts.
fn rate_limited(wait: Duration) -> LocalAnswer {
    let secs = wait.as_millis().div_ceil(1000).max(1) as u64;
    refusal(429, "API rate limit exceeded", Some(secs))
}

fn store_unavailable() -> LocalAnswer {
    refusal(
        503,
        "The session store is unavailable; retry shortly",
        Some(5),
    )
}

async fn write_local(session: &mut Session, ctx: &EgressCtx, answer: LocalAnswer) -> Result<()> {
    let mut headers = vec![("x-request-id", ctx.request_id.clone())];
    if let Some(secs) = answer.retry_after {
        headers.push(("retry-after", secs.to_string()));
    }
    respond_json(session, answer.status, &answer.body, &headers).await
}

/// The methods the egress forwards, for the `Allow` header.
const API_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// Whether a method may carry a token to Spotify. TRACE would echo the injected token back
/// to the caller, CONNECT would open a tunnel, and an extension method (`PROPFIND`, a
/// lowercase `get`) is nothing the Web API answers.
fn is_api_method(method: &http::Method) -> bool {
    use http::Method;
    [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ]
    .contains(method)
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
///
/// `raw` is the target as the client sent it: pingora 0.9 puts only the path of an
/// absolute-form target (`GET http://host/v1/me`) into the `Uri`, and lets it through when
/// `Host` names the same authority, so the form can only be seen in the raw bytes.
fn check_target(raw: &[u8], uri: &http::Uri) -> Result<&'static str, TargetProblem> {
    if !raw.starts_with(b"/") || uri.scheme().is_some() || uri.authority().is_some() {
        return Err(TargetProblem::Unsafe(
            "absolute-form request targets are not accepted; send the path only",
        ));
    }
    let path = uri.path();
    if path.contains('\\') || has_encoded_separator(path.as_bytes()) {
        return Err(TargetProblem::Unsafe(
            "encoded path separators are not accepted",
        ));
    }
    if path.split('/').any(is_dot_segment) {
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

/// Whether a client header never travels on to Spotify: the client's own credentials,
/// identity claims, hop-by-hop headers.
fn is_dropped_header(name: &str) -> bool {
    matches!(name, "authorization" | "cookie" | "proxy-authorization")
        || name.starts_with("x-spotify-")
        || IDENTITY_HEADERS.contains(&name)
        || HOP_BY_HOP.contains(&name)
}

/// Turns the copy of the client's request header into the one sent to Spotify: drops what
/// [`is_dropped_header`] names and what the client's `Connection` header names, injects the
/// token (`bearer`), the API host and the request id. The target was checked to be
/// origin-form (`check_target`) and is sent as it is.
pub fn upstream_headers(
    upstream: &mut RequestHeader,
    bearer: Option<&str>,
    api_host: &str,
    request_id: &str,
) -> Result<()> {
    let drop: Vec<http::HeaderName> = {
        // Headers the client's Connection header names are hop-by-hop too (usually none: no
        // allocation then).
        let named: Vec<&str> = upstream
            .headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|n| !n.is_empty() && !n.eq_ignore_ascii_case("close"))
            .collect();
        upstream
            .headers
            .keys()
            .filter(|k| {
                is_dropped_header(k.as_str())
                    || named.iter().any(|n| n.eq_ignore_ascii_case(k.as_str()))
            })
            .cloned()
            .collect()
    };
    for name in &drop {
        upstream.remove_header(name);
    }
    if let Some(bearer) = bearer {
        let mut value = String::with_capacity(7 + bearer.len());
        value.push_str("Bearer ");
        value.push_str(bearer);
        upstream.insert_header(http::header::AUTHORIZATION, value)?;
    }
    upstream.insert_header(http::header::HOST, api_host)?;
    upstream.insert_header("x-request-id", request_id)?;
    Ok(())
}

/// `%2F` or `%5C` in any case: a `/` or `\\` the upstream may decode into a separator.
fn has_encoded_separator(path: &[u8]) -> bool {
    memchr::memchr_iter(b'%', path).any(|at| {
        matches!(
            path.get(at + 1..at + 3),
            Some([b'2', b'f' | b'F'] | [b'5', b'c' | b'C'])
        )
    })
}

/// `.` or `..`, each dot possibly written `%2e` / `%2E`.
fn is_dot_segment(segment: &str) -> bool {
    let mut rest = segment.as_bytes();
    let mut dots = 0;
    while !rest.is_empty() {
        rest = match rest {
            [b'.', tail @ ..] => tail,
            [b'%', b'2', b'e' | b'E', tail @ ..] => tail,
            _ => return false,
        };
        dots += 1;
    }
    matches!(dots, 1 | 2)
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
        if !is_api_method(&session.req_header().method) {
            let message = format!(
                "{} is not supported; the Web API takes {API_METHODS}",
                session.req_header().method
            );
            let mut headers = rid.to_vec();
            headers.push(("allow", API_METHODS.into()));
            respond_json(session, 405, &spotify_error(405, &message), &headers).await?;
            return Ok(true);
        }
        let req = session.req_header();
        ctx.route = match check_target(req.raw_path(), &req.uri) {
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

        ctx.deadline = Some(Instant::now() + self.gw.config.egress.total_timeout);
        if let Some(wait) = self.cool_down_remaining() {
            self.gw.metrics.rate_limited_local.inc();
            write_local(session, ctx, rate_limited(wait)).await?;
            return Ok(true);
        }

        match self.identify(session).await {
            Ok(Some(user)) => match self.user_token(&user).await {
                Ok(token) => {
                    ctx.credential = Some(Credential::User {
                        session: user,
                        token,
                    });
                    Ok(false)
                }
                Err(answer) => {
                    write_local(session, ctx, answer).await?;
                    Ok(true)
                }
            },
            Ok(None) => self.app_credential(session, ctx).await,
            Err(answer) => {
                write_local(session, ctx, answer).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut EgressCtx,
    ) -> Result<Box<HttpPeer>> {
        if std::mem::take(&mut ctx.retry_with_new_token) {
            if let Some(Credential::User { session, token }) = &mut ctx.credential {
                match self.user_token(session).await {
                    Ok(fresh) => *token = fresh,
                    Err(answer) => {
                        let status = answer.status;
                        ctx.local_answer = Some(answer);
                        return Err(Error::explain(
                            ErrorType::HTTPStatus(status),
                            "no usable token after Spotify refused the user's token",
                        ));
                    }
                }
            }
        }
        if let Some(backoff) = ctx.retry_backoff.take() {
            self.gw.metrics.retries.inc();
            tokio::time::sleep(backoff).await;
        }
        let remaining = ctx
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(self.gw.config.egress.total_timeout);
        if remaining.is_zero() {
            return Err(Error::explain(
                ErrorType::ReadTimedout,
                "the call's total deadline passed",
            ));
        }
        ctx.attempts += 1;
        ctx.upstream_started = Some(Instant::now());
        let mut peer = self.api.peer().await?;
        let cfg = &self.gw.config.egress;
        peer.options.connection_timeout = Some(cfg.connect_timeout.min(remaining));
        peer.options.read_timeout = Some(cfg.read_timeout.min(remaining));
        peer.options.write_timeout = Some(cfg.read_timeout.min(remaining));
        Ok(peer)
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut EgressCtx,
    ) -> Result<()> {
        let bearer = ctx.credential.as_ref().map(Credential::bearer);
        upstream_headers(upstream, bearer, self.api.host_header(), &ctx.request_id)
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
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
            // Spotify no longer takes this token (revoked, expired early, clock skew).
            401 => match &ctx.credential {
                Some(Credential::App(grant)) => self.gw.app_tokens.invalidate(grant),
                Some(Credential::User {
                    session: user,
                    token,
                }) => {
                    user.token_rejected(token);
                    // Refresh and send the call once more, unless its body can no longer be
                    // replayed; then the 401 goes to the caller and the next call refreshes.
                    if !ctx.retried_401 && !session.as_ref().retry_buffer_truncated() {
                        ctx.retried_401 = true;
                        ctx.retry_with_new_token = true;
                        let mut e = Error::explain(
                            ErrorType::HTTPStatus(401),
                            "Spotify refused the user's token; refreshing and retrying once",
                        );
                        e.set_retry(true);
                        return Err(e);
                    }
                }
                None => {}
            },
            429 => {
                self.gw.metrics.spotify_rate_limited.inc();
                let secs = upstream
                    .headers
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(DEFAULT_RETRY_AFTER_SECS);
                let until = crate::oauth::now_ms() + secs * 1000;
                self.blocked_until_ms.fetch_max(until, Ordering::SeqCst);
                tracing::warn!(retry_after_s = secs, "Spotify rate limit: holding calls");
            }
            502..=504 => {
                if let Some(backoff) = self.retry_plan(session, ctx, true) {
                    ctx.retry_backoff = Some(backoff);
                    let mut e = Error::explain(
                        ErrorType::HTTPStatus(upstream.status.as_u16()),
                        "Spotify answered 502/503/504; retrying",
                    );
                    e.set_retry(true);
                    return Err(e);
                }
            }
            _ => {}
        }
        self.prepare_rewrite(session, upstream, ctx)?;
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut EgressCtx,
    ) -> Result<Option<Duration>> {
        if let Some(rewriter) = &mut ctx.rewrite {
            let chunk = body.take().unwrap_or_default();
            let out = rewriter.feed(chunk, end_of_stream).map_err(|e| {
                Error::because(
                    ErrorType::InvalidHTTPHeader,
                    "cannot decode Spotify's compressed answer",
                    e,
                )
            })?;
            *body = Some(out);
        }
        Ok(None)
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut EgressCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // Nothing reached Spotify: any method may be retried.
        match self.retry_plan(session, ctx, false) {
            Some(backoff) => {
                ctx.retry_backoff = Some(backoff);
                e.set_retry(true);
            }
            None => e.set_retry(false),
        }
        e
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

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut EgressCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        if ctx.retry_with_new_token || ctx.retry_backoff.is_some() {
            // Our own retries: decided in upstream_response_filter / fail_to_connect.
            e.set_retry(true);
        } else if !session.req_header().method.is_idempotent()
            || session.as_ref().retry_buffer_truncated()
        {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut EgressCtx,
    ) -> FailToProxy {
        if let Some(answer) = ctx.local_answer.take() {
            let status = answer.status;
            if let Err(err) = write_local(session, ctx, answer).await {
                tracing::debug!(error = %err, "could not write the error answer");
            }
            return FailToProxy {
                error_code: status,
                can_reuse_downstream: false,
            };
        }
        let timed_out = matches!(
            e.etype(),
            ErrorType::ConnectTimedout
                | ErrorType::ReadTimedout
                | ErrorType::WriteTimedout
                | ErrorType::TLSHandshakeTimedout
        );
        let code = match super::error_status(e) {
            0 => 0,
            _ if timed_out => 504,
            code => code,
        };
        if code > 0 {
            let message = match code {
                504 => "Spotify's Web API did not answer in time",
                502 => "The gateway could not reach Spotify's Web API",
                _ => "The gateway could not complete the request",
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

    fn request_summary(&self, session: &Session, _ctx: &Self::CTX) -> String {
        super::request_summary(session)
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut EgressCtx) {
        let user = match &ctx.credential {
            Some(Credential::User { session: s, .. }) => Some(s.as_ref()),
            _ => None,
        };
        let access = super::Access {
            listener: LISTENER,
            route: ctx.route,
            request_id: &ctx.request_id,
            started: ctx.started,
            user,
        };
        access.record(&self.gw, session, e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(target: &str) -> Result<&'static str, TargetProblem> {
        check_target(target.as_bytes(), &target.parse().expect("valid uri"))
    }

    #[test]
    fn trusted_user_header_only_from_loopback_unless_allowed() {
        let peer = |s: &str| s.parse::<std::net::SocketAddr>().expect("addr");
        for local in [
            "127.0.0.1:5000",
            "127.3.2.1:5000",
            "[::1]:5000",
            "[::ffff:127.0.0.1]:5000",
        ] {
            assert!(may_trust_user_header(Some(&peer(local)), false), "{local}");
        }
        for remote in [
            "192.0.2.2:5000",
            "10.0.0.7:5000",
            "[fd00::2]:5000",
            "[::ffff:10.0.0.7]:5000",
        ] {
            assert!(
                !may_trust_user_header(Some(&peer(remote)), false),
                "{remote}"
            );
            assert!(may_trust_user_header(Some(&peer(remote)), true), "{remote}");
        }
        assert!(!may_trust_user_header(None, false), "unknown peer");
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
        for unsafe_path in [
            "/v1/a%2Fb",
            "/v1/a%5cb",
            "/v1/a%5Cb",
            "/v1/%2E%2e/x",
            "/v1/%2e/x",
            "/v1/me/.",
            "/v1/me/..",
            "/v1/.%2E",
        ] {
            assert!(
                matches!(check(unsafe_path), Err(TargetProblem::Unsafe(_))),
                "{unsafe_path}"
            );
        }
        for fine in [
            "/v1/...",
            "/v1/.x",
            "/v1/a%2",
            "/v1/a%",
            "/v1/%2ex",
            "/v1/a%25/b",
        ] {
            assert!(check(fine).is_ok(), "{fine}");
        }
        // pingora hands over an absolute-form target as its path alone; the raw bytes tell.
        let path_only: http::Uri = "/v1/me".parse().expect("uri");
        for raw in ["http://evil.example/v1/me", "*", "api.spotify.com:443"] {
            assert!(
                matches!(
                    check_target(raw.as_bytes(), &path_only),
                    Err(TargetProblem::Unsafe(_))
                ),
                "{raw}"
            );
        }
    }
}
