// Over 600 lines: the egress listener's pingora phases are one `ProxyHttp` impl, kept whole so
// that their order reads top to bottom; its parts (identity, target, hygiene, retry, links) are
// already rooms of their own.
//! The egress listener: internal apps call it as they would call `https://api.spotify.com`,
//! with no token. It decides whose token the call needs (`identity`), checks that the call
//! can only reach the API (`target`), injects the token and cleans the headers (`hygiene`),
//! retries (`retry`), holds every call after Spotify's 429 on every replica (`rate_limit`, on
//! `quota::CoolDown`), and points Spotify's paging links back at
//! itself (`links`). Spotify's answer comes back otherwise unchanged. Failures are answered in
//! the Web API's error shape (`respond`); a failed TLS handshake is classified by `trust`,
//! never retried when the certificate is at fault, and answered 502 naming the cause.
//!
//! GETs that may share one answer (coalescing, the cache: `quota::flight`, `quota::cache`)
//! go through `shared`, which adds the share bookkeeping to `EgressProxy`.
//!
//! Why this file is long (about 700 lines): it is the `ProxyHttp` impl, whose hooks share
//! `EgressCtx` and must stay in one `impl` block, plus that context's fields; each hook calls
//! named functions in the submodules above, and what can leave has left (`shared.rs`, the
//! cache and coalescing glue; `retry.rs`, `rate_limit.rs`, ...).
//!
//! ```text
//! curl 'http://127.0.0.1:8081/v1/search?q=abba&type=track'   # with `spotify-gateway demo`
//! ```

mod by_app;
mod endpoint;
mod hygiene;
mod identity;
mod inflate;
pub mod links;
mod rate_limit;
mod retry;
mod shared;
mod spans;
mod target;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};

pub use by_app::{EgressApps, APP_HEADER};
pub use hygiene::upstream_headers;

use super::assertion::Verified;
use super::respond::{self, Failure, Upstream};
use super::{RequestInfo, UpstreamTarget};
use crate::net::api_connection::{Turn, WARM_HEADER};
use crate::net::outbound;
use crate::net::tls_roots::{self, TlsTarget};
use crate::quota::{cool_down, Answer, AnswerCache, Flights, Lookup, Priority, Reason};
use crate::server::state::{Gateway, Live};
use crate::store::Store;
use crate::telemetry::traces;
use identity::Credential;
use links::{BodyError, LinkMap, LinkRewriter};
use rate_limit::Refusal;
use retry::Attempt;
use shared::Share;

/// Listener name in metrics and logs.
const LISTENER: &str = "egress";

pub struct EgressProxy {
    gw: Arc<Gateway>,
    api: UpstreamTarget,
    /// `{api_url}/v1/` in Spotify's links, and what it becomes.
    links: Arc<LinkMap>,
    /// Identical GETs in flight (`egress.coalesce`); the gateway's, which purges them.
    flights: Arc<Flights>,
    /// Spotify's cacheable answers (`egress.cache_size`); the gateway's, which purges them.
    cache: Arc<AnswerCache>,
    /// Names tokens in share keys without holding them.
    macs: shared::TokenMacs,
    /// Assertions verified lately (`X-Gateway-User`): an app's calls for one request carry
    /// the same one.
    verified: Verified,
    /// The series every call records, resolved once (a label lookup hashes its values and
    /// takes a lock: per call, that is work pingora alone does not do).
    series: Series,
}

/// Pre-resolved metric series of the calls to the API (the app's).
struct Series {
    upstream_duration: prometheus::Histogram,
    retries: prometheus::IntCounter,
    connections: prometheus::IntCounter,
    responses_h2: prometheus::IntCounter,
    responses_h1: prometheus::IntCounter,
}

#[derive(Default)]
pub struct EgressCtx {
    /// Which of `EgressApps`' apps the call names.
    app: usize,
    req: RequestInfo,
    /// The reloadable settings, read once per call.
    live: Option<Arc<Live>>,
    credential: Option<Credential>,
    upstream_started: Option<Instant>,
    /// Spotify refused the user's token once; the retry must carry a refreshed one.
    retry_with_new_token: bool,
    /// The one retry after a 401 has been used.
    retried_401: bool,
    /// An answer decided inside a phase that can only fail (`upstream_peer`,
    /// `response_body_filter`); written by `fail_to_proxy`.
    local_answer: Option<Failure>,
    /// When the call came in (its request header was read).
    arrived: Option<Instant>,
    /// The call, retries included, must end by then.
    deadline: Option<Instant>,
    /// The lifecycle's warm-up (`net::api_connection`): connect to the API, send nothing.
    warm: bool,
    /// This call's turn in pingora's connector (`net::api_connection`), until it connects.
    turn: Option<Turn>,
    /// Attempts sent (or tried) to Spotify so far.
    attempts: u32,
    /// Set when a retry is scheduled: wait this long before it.
    retry_backoff: Option<Duration>,
    /// This attempt's answer header came from Spotify: past this, the call cannot be sent
    /// again after a connection failure (part of the answer may be on its way).
    answer_header_seen: bool,
    /// Rewrites paging links in a JSON answer.
    rewrite: Option<LinkRewriter>,
    /// Spotify's answer body was refused (`response_body_filter`), and logged there.
    body_refused: bool,
    /// Spotify answered 429: reported (with its reason) once its body is in.
    refusal: Option<Refusal>,
    /// This GET's answer may be shared (coalescing, cache).
    share: Option<Share>,
    /// Spotify answered 304 to the cache's `If-None-Match`: the cached answer, written by
    /// `fail_to_proxy` (the only phase after the upstream header that can answer anew).
    revalidated: Option<Arc<Answer>>,
    /// `revalidated` was written: the error that took it there is no failure.
    served_revalidated: bool,
    /// The span of the attempt at Spotify under way (`spans.rs`).
    upstream_span: Option<crate::telemetry::traces::ChildSpan>,
    /// The call's route template (`endpoint.rs`), while it is traced.
    endpoint: String,
}

impl EgressProxy {
    pub fn new(gw: Arc<Gateway>) -> EgressProxy {
        let api = UpstreamTarget::from_url(&gw.app.spotify.api_url)
            .with_http2()
            .via(&gw.outbound);
        let origin = |u: &url::Url| u.as_str().trim_end_matches('/').to_string();
        let links = LinkMap::new(
            &format!("{}/v1/", origin(&gw.app.spotify.api_url)),
            &format!("{}/v1/", origin(&gw.config.egress.public_base_url)),
        );
        // Each series from the start, so `increase()` sees the first event.
        let m = &gw.metrics;
        let app = gw.app.name.as_str();
        let series = Series {
            upstream_duration: m.upstream_duration.with_label_values(&[app, LISTENER]),
            retries: m.retries.with_label_values(&[app]),
            connections: m.upstream_connections.with_label_values(&["api"]),
            responses_h2: m.upstream_responses.with_label_values(&["api", "h2"]),
            responses_h1: m.upstream_responses.with_label_values(&["api", "http/1.1"]),
        };
        for reason in BodyError::REASONS {
            m.upstream_body_refused.with_label_values(&[app, reason]);
        }
        let flights = Arc::clone(&gw.answers.flights);
        let cache = Arc::clone(&gw.answers.cache);
        EgressProxy {
            gw,
            api,
            links,
            flights,
            cache,
            macs: shared::TokenMacs::new(),
            verified: Verified::default(),
            series,
        }
    }

    /// Writes `failure` in Spotify's error shape.
    async fn answer(&self, session: &mut Session, ctx: &EgressCtx, failure: Failure) -> Result<()> {
        failure
            .write_spotify(session, &ctx.req.id, || self.gw.login_url(None))
            .await
    }

    /// A failed TLS connection to the API, counted and logged (`tls_roots::report`), as the
    /// answer that names the host and the cause.
    fn tls_failure(&self, e: &Error) -> Option<Failure> {
        let reason = tls_roots::classify_proxy_error(e)?;
        let host = self.api.host_header().to_string();
        tls_roots::report(&self.gw.metrics, TlsTarget::Api, &host, reason);
        Some(Failure::UpstreamTls { host, reason })
    }

    /// A tunnel through `spotify.proxy_url` that could not be opened, as the answer that
    /// says so; logged with what the operator can do.
    fn proxy_failure(&self, e: &Error) -> Option<Failure> {
        let problem = outbound::ProxyProblem::of_pingora(e)?;
        problem.report("api", e);
        Some(Failure::OutboundProxy(problem))
    }

    /// What decides whether the call is tried again.
    fn attempt<'a>(&self, session: &'a Session, ctx: &EgressCtx) -> Attempt<'a> {
        Attempt {
            method: &session.req_header().method,
            body_replayable: !session.as_ref().retry_buffer_truncated(),
            attempts: ctx.attempts,
            max_retries: live(ctx, &self.gw).egress.max_retries,
            deadline: ctx.deadline,
        }
    }

    /// A local 429 during Spotify's `Retry-After`, with what is left of it.
    async fn cooling_down(
        &self,
        session: &mut Session,
        ctx: &EgressCtx,
        wait: Duration,
        reason: Reason,
    ) -> Result<bool> {
        self.gw.cool_down.refused_locally(reason);
        ctx.span_cool_down(wait, reason);
        let failure = Failure::RateLimited {
            retry_after_secs: cool_down::retry_after_secs(wait),
            quota_exceeded: reason == Reason::QuotaExceeded,
        };
        self.answer(session, ctx, failure).await?;
        Ok(true)
    }

    /// Tells every replica about Spotify's 429, with the reason its body gave (once).
    fn report_refusal(&self, ctx: &mut EgressCtx) {
        if let Some(refusal) = ctx.refusal.take() {
            self.gw.cool_down.report(refusal.hold_ms, refusal.reason());
        }
    }

    /// Spotify refused the token (401): forget it; for a user, refresh and retry once unless
    /// the body can no longer be replayed (then the 401 goes to the caller, and the next call
    /// refreshes). Returns the error that makes pingora retry.
    fn token_refused(&self, session: &Session, ctx: &mut EgressCtx) -> Option<Box<Error>> {
        match &ctx.credential {
            Some(Credential::App(grant)) => self.gw.app_tokens.invalidate(grant),
            Some(Credential::User {
                session: user,
                token,
            }) => {
                user.token_rejected(token);
                if !ctx.retried_401 && !session.as_ref().retry_buffer_truncated() {
                    ctx.retried_401 = true;
                    ctx.retry_with_new_token = true;
                    return Some(retry_error(
                        401,
                        "Spotify refused the user's token; refreshing and retrying once",
                    ));
                }
            }
            None => {}
        }
        None
    }
}

/// The reloadable settings of this call (set in `request_filter`), or the current ones.
fn live(ctx: &EgressCtx, gw: &Gateway) -> Arc<Live> {
    ctx.live.clone().unwrap_or_else(|| gw.live())
}

/// `work` bounded by what is left of the call's deadline: waiting for a token (the refresh
/// lock, the store, Spotify's token endpoint) never makes a call late. When the deadline
/// passes while the store has been in trouble since the call arrived (`Store::troubled_since`:
/// a failover, a store down or hanging) the store is the cause: 503 with `Retry-After`, the
/// store named; otherwise the wait was for Spotify's token endpoint (or another replica's
/// refresh): 504.
async fn within_deadline<T>(
    deadline: Option<Instant>,
    arrived: Option<Instant>,
    store: &dyn Store,
    work: impl std::future::Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    let left = deadline
        .map(|d| d.saturating_duration_since(Instant::now()))
        .unwrap_or_default();
    // The work stays alive (pinned here) until the store has been asked: dropped, its store
    // operation would no longer count as under way.
    let mut work = std::pin::pin!(work);
    match tokio::time::timeout(left, work.as_mut()).await {
        Ok(outcome) => outcome,
        Err(_) if arrived.is_some_and(|at| store.troubled_since(at)) => {
            Err(Failure::StoreUnavailable)
        }
        Err(_) => Err(Failure::DeadlinePassed(
            "No token for this call within its deadline (egress.total_timeout): Spotify's token \
             endpoint is slow or failing. The session is kept: retry shortly.",
        )),
    }
}

/// How long a warm-up may wait for its turn, or take to connect.
const WARM_WAIT: Duration = Duration::from_secs(10);

/// The warm-up's answer to the lifecycle: 204 when it connected (the error
/// `connected_to_upstream` stops it with), 502 when it could not.
async fn warmed(session: &mut Session, e: &Error) -> FailToProxy {
    let status = match e.etype() {
        ErrorType::HTTPStatus(204) => 204,
        _ => 502,
    };
    session.set_keepalive(None);
    let written = match ResponseHeader::build(status, Some(0)) {
        Ok(mut header) => {
            let _ = header.insert_header("content-length", "0");
            session
                .write_response_header(Box::new(header), true)
                .await
                .is_ok()
        }
        Err(_) => false,
    };
    FailToProxy {
        error_code: if written { status } else { 0 },
        can_reuse_downstream: false,
    }
}

/// An error that tells pingora to send the call again.
fn retry_error(status: u16, why: &'static str) -> Box<Error> {
    let mut e = Error::explain(ErrorType::HTTPStatus(status), why);
    e.set_retry(true);
    e
}

#[async_trait]
impl ProxyHttp for EgressProxy {
    type CTX = EgressCtx;

    fn new_ctx(&self) -> EgressCtx {
        Default::default()
    }

    /// The request header is in: tells the listener's header deadline (`listeners`).
    fn on_connection_reuse(
        &self,
        _session: &mut Session,
        _ctx: &mut EgressCtx,
        context: Box<dyn std::any::Any + Send + Sync>,
    ) {
        crate::server::guards::RequestContext::header_read(context);
    }

    /// Refuses what may not carry a token (method, target), answers 429 during a cool-down,
    /// and picks the credential: the user's token (refreshed if needed) or the app token.
    async fn request_filter(&self, session: &mut Session, ctx: &mut EgressCtx) -> Result<bool> {
        let req = session.req_header();
        if let Some(mark) = req.headers.get(WARM_HEADER) {
            ctx.warm = self.gw.api_connection.is_warm_token(mark.as_bytes());
            if ctx.warm {
                return Ok(false);
            }
        }
        ctx.req.begin(LISTENER, session, &self.gw.traces);
        let req = session.req_header();
        ctx.req.route = match target::check(&req.method, req.raw_path(), &req.uri) {
            Ok(route) => route,
            Err(failure) => {
                self.answer(session, ctx, failure).await?;
                return Ok(true);
            }
        };
        ctx.span_endpoint(session.req_header().uri.path());
        let live = self.gw.live();
        let now = Instant::now();
        ctx.arrived = Some(now);
        ctx.deadline = Some(now + live.egress.total_timeout);
        ctx.live = Some(Arc::clone(&live));
        // During a cool-down only a fresh cached answer can be had (a GET, with the cache on).
        let cooling = self.gw.cool_down.remaining();
        if let Some((wait, reason)) = cooling {
            if !self.cache.enabled() || session.req_header().method != http::Method::GET {
                return self.cooling_down(session, ctx, wait, reason).await;
            }
        }
        // Inside the request's span: a token refresh it starts is its child.
        let credential = within_deadline(
            ctx.deadline,
            ctx.arrived,
            self.gw.sessions.store().as_ref(),
            traces::within(
                ctx.req.span.as_ref(),
                identity::credential(&self.gw, &live, &self.verified, session),
            ),
        );
        match credential.await {
            Ok(credential) => {
                // A share key (a keyed hash of the token, a few strings) only where an answer
                // may be shared: with coalescing and the cache off, proxying pays nothing.
                let coalesce = live.egress.coalesce;
                let sharing = cooling.is_some() || coalesce || self.cache.enabled();
                let key = sharing
                    .then(|| shared::key(session, &credential, &self.macs))
                    .flatten();
                ctx.credential = Some(credential);
                if let Some((wait, reason)) = cooling {
                    let cached = key.map(|k| {
                        let sent = shared::Sent::new(&session.req_header().headers, &k.token);
                        self.cache.lookup(&k.key, &sent)
                    });
                    return match cached {
                        Some(Lookup::Fresh(entry)) => self.cache_hit(session, ctx, &entry).await,
                        _ => self.cooling_down(session, ctx, wait, reason).await,
                    };
                }
                match key {
                    Some(key) if coalesce || self.cache.enabled() => {
                        self.shared_answer(session, ctx, key, coalesce).await
                    }
                    _ => Ok(false),
                }
            }
            Err(failure) => {
                self.answer(session, ctx, failure).await?;
                Ok(true)
            }
        }
    }

    /// The API address, with timeouts cut to what is left of the call's deadline. Also where
    /// every attempt takes its call from the budget (`egress.budget_per_30s`), where
    /// a retry waits its backoff and, after Spotify refused a user's token, gets a refreshed
    /// one: pingora retries a request by calling this phase again, and no other phase runs
    /// between the decision to retry and the next attempt.
    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut EgressCtx,
    ) -> Result<Box<HttpPeer>> {
        if std::mem::take(&mut ctx.retry_with_new_token) {
            let deadline = ctx.deadline;
            if let Some(Credential::User { session, token }) = &mut ctx.credential {
                let refresh = identity::user_token(&self.gw, session);
                let refresh = traces::within(ctx.req.span.as_ref(), refresh);
                let store = self.gw.sessions.store().as_ref();
                match within_deadline(deadline, ctx.arrived, store, refresh).await {
                    Ok(fresh) => *token = fresh,
                    Err(failure) => {
                        let status = failure.status();
                        ctx.local_answer = Some(failure);
                        return Err(Error::explain(
                            ErrorType::HTTPStatus(status),
                            "no usable token after Spotify refused the user's token",
                        ));
                    }
                }
            }
        }
        if ctx.warm {
            ctx.turn = self.gw.api_connection.enter(WARM_WAIT).await;
            return self.api.peer(Some(WARM_WAIT)).await;
        }
        if let Some(backoff) = ctx.retry_backoff.take() {
            self.series.retries.inc();
            let span = ctx.span_retry(backoff);
            tokio::time::sleep(backoff).await;
            if let Some(span) = span {
                span.end(None);
            }
        }
        ctx.answer_header_seen = false;
        let live = live(ctx, &self.gw);
        let cfg = &live.egress;
        let remaining = ctx
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(cfg.total_timeout);
        if remaining.is_zero() {
            return Err(Error::explain(
                ErrorType::ReadTimedout,
                "the call's total deadline passed",
            ));
        }
        if let Some(budget) = &self.gw.budget {
            let priority = match ctx.credential {
                Some(Credential::User { .. }) => Priority::User,
                _ => Priority::App,
            };
            let deadline = ctx.deadline.unwrap_or_else(Instant::now);
            let arrived = ctx.arrived.unwrap_or_else(Instant::now);
            let span = ctx.span_budget_wait();
            let taken = budget
                .take(&self.gw.app.name, priority, arrived, deadline)
                .await;
            if let Some(span) = span {
                span.end(taken.is_err().then_some("no_room"));
            }
            if let Err(wait) = taken {
                if let Some(lead) = ctx.share.as_mut().and_then(|s| s.lead.take()) {
                    lead.refuse();
                }
                ctx.local_answer = Some(Failure::RateLimited {
                    retry_after_secs: cool_down::retry_after_secs(wait),
                    quota_exceeded: false,
                });
                return Err(Error::explain(
                    ErrorType::HTTPStatus(429),
                    "no room in egress.budget_per_30s within the call's deadline",
                ));
            }
        }
        ctx.span_attempt(
            &self.gw.app.spotify.api_url,
            session.req_header().method.as_str(),
        );
        ctx.attempts += 1;
        ctx.upstream_started = Some(Instant::now());
        let connect_timeout = cfg.connect_timeout.min(remaining);
        // One caller at a time takes a stream on the shared connection, or dials it while
        // the others wait (`api_connection`).
        ctx.turn = self.gw.api_connection.enter(connect_timeout).await;
        let mut peer = self.api.peer(Some(connect_timeout)).await?;
        peer.options.read_timeout = Some(cfg.read_timeout.min(remaining));
        peer.options.write_timeout = Some(cfg.read_timeout.min(remaining));
        Ok(peer)
    }

    /// Counts the connections opened to Spotify (a reused one, or another stream on an
    /// HTTP/2 connection, costs no handshake), and ends this call's turn in the connector, so
    /// the next caller goes (`api_connection`). A warm-up ends here: its stream goes back
    /// unused.
    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        fd: std::os::unix::io::RawFd,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut EgressCtx,
    ) -> Result<()> {
        if !reused {
            self.series.connections.inc();
        }
        self.gw
            .api_connection
            .connected(ctx.turn.take(), fd, reused);
        if ctx.warm {
            let mut e = Error::explain(ErrorType::HTTPStatus(204), "warm-up: connected");
            e.set_retry(false);
            return Err(e);
        }
        Ok(())
    }

    /// Injects the token and the API host; drops the client's credentials and hop-by-hop
    /// headers (`hygiene`); passes the trace context on (`trace`).
    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut EgressCtx,
    ) -> Result<()> {
        let bearer = ctx.credential.as_ref().map(Credential::bearer);
        upstream_headers(upstream, bearer, self.api.host_header(), &ctx.req.id)?;
        if let Some(etag) = ctx.share.as_ref().and_then(|s| s.stale.as_ref()?.etag()) {
            upstream.insert_header("if-none-match", etag)?;
        }
        ctx.req.trace.apply(upstream)
    }

    /// Reads Spotify's status: 401 → refresh and retry once; 429 → cool-down; 502–504 →
    /// retry with backoff where allowed. Then sets up the paging-link rewrite.
    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream: &mut ResponseHeader,
        ctx: &mut EgressCtx,
    ) -> Result<()> {
        ctx.answer_header_seen = true;
        if let Some(at) = ctx.upstream_started {
            let seconds = at.elapsed().as_secs_f64();
            self.series.upstream_duration.observe(seconds);
        }
        let h2 = upstream.version == http::Version::HTTP_2;
        let protocol = if h2 { "h2" } else { "http/1.1" };
        ctx.req.upstream_protocol = Some(protocol);
        self.gw.api_connection.answered(h2);
        match h2 {
            true => self.series.responses_h2.inc(),
            false => self.series.responses_h1.inc(),
        }
        let retry_after = upstream
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok());
        ctx.span_answer(upstream.status.as_u16(), protocol, retry_after);
        match upstream.status.as_u16() {
            // Spotify no longer takes this token (revoked, expired early, clock skew).
            401 => {
                if let Some(e) = self.token_refused(session, ctx) {
                    return Err(e);
                }
            }
            // Hold at once; the reason (and the word to other replicas) once the body is in.
            429 => {
                let refusal = Refusal::new(upstream);
                self.gw.cool_down.hold_here(refusal.hold_ms);
                ctx.refusal = Some(refusal);
            }
            // The cache asked whether its stale answer still holds, and it does.
            304 => {
                if let Some(share) = &ctx.share {
                    if let Some(stale) = &share.stale {
                        let arrived = ctx.arrived.unwrap_or_else(Instant::now);
                        let answer =
                            self.cache
                                .revalidated(&share.key, stale, &upstream.headers, arrived);
                        self.report_cache_size();
                        ctx.revalidated = Some(answer);
                        let mut e = Error::explain(
                            ErrorType::Custom("Revalidated"),
                            "Spotify confirmed the cached answer (304)",
                        );
                        e.set_retry(false);
                        return Err(e);
                    }
                }
            }
            status @ 502..=504 => {
                if let Some(backoff) = retry::backoff(&self.attempt(session, ctx), true) {
                    ctx.retry_backoff = Some(backoff);
                    return Err(retry_error(
                        status,
                        "Spotify answered 502/503/504; retrying",
                    ));
                }
            }
            _ => {}
        }
        ctx.rewrite = links::prepare(&self.links, &session.req_header().method, upstream)?;
        Ok(())
    }

    /// Rewrites paging links chunk by chunk when `upstream_response_filter` set that up. A
    /// gzip body that is corrupt or inflates past the bound (`links`, `inflate`) fails the
    /// answer, and nothing more of it is inflated or sent. Once its header has gone out,
    /// pingora aborts the answer to the client (no clean end of the chunked body); when the
    /// first chunks already pass the bound, pingora has not written the header yet (it
    /// filters the header and the chunks read with it before writing), and the client gets
    /// 502 in Spotify's error shape instead. Logged once here, counted by reason.
    fn response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut EgressCtx,
    ) -> Result<Option<Duration>> {
        if let Some(refusal) = &mut ctx.refusal {
            if let Some(chunk) = body {
                refusal.feed(chunk);
            }
            if end_of_stream {
                self.report_refusal(ctx);
            }
        }
        let Some(rewriter) = &mut ctx.rewrite else {
            self.capture(body, end_of_stream, ctx);
            return Ok(None);
        };
        let chunk = body.take().unwrap_or_default();
        match rewriter.feed(chunk, end_of_stream) {
            Ok(out) => {
                *body = Some(out);
                self.capture(body, end_of_stream, ctx);
                Ok(None)
            }
            Err(refused) => {
                // Frees the decoder at once; the followers make their own calls.
                ctx.rewrite = None;
                ctx.share = None;
                ctx.body_refused = true;
                // Written only if the answer has not begun (`respond::write_local`).
                ctx.local_answer = Some(Failure::Upstream {
                    status: 502,
                    message: "The gateway refused Spotify's answer",
                });
                let reason = refused.reason();
                self.gw
                    .metrics
                    .upstream_body_refused
                    .with_label_values(&[&self.gw.app.name, reason])
                    .inc();
                let client_gets = match session.response_written() {
                    Some(_) => "the answer cut off mid-body",
                    None => "502",
                };
                tracing::error!(
                    request_id = %ctx.req.id,
                    route = ctx.req.route,
                    reason,
                    "refused Spotify's answer: {refused}; the client gets {client_gets}"
                );
                let mut e = Error::because(
                    ErrorType::Custom("UpstreamBodyRefused"),
                    "Spotify's answer was refused mid-body",
                    refused,
                );
                e.set_retry(false);
                Err(e.into_up())
            }
        }
    }

    /// Nothing reached Spotify: any method may be retried, within attempts and deadline.
    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut EgressCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // The next caller goes (and dials, as this one may when it tries again).
        ctx.turn = None;
        if ctx.warm {
            e.set_retry(false);
            return e;
        }
        // Another attempt meets the same certificate, or the same refusal of the proxy's
        // credentials.
        if tls_roots::classify_proxy_error(&e).is_some_and(|r| r.is_certificate())
            || *e.etype() == outbound::PROXY_AUTH_REFUSED
        {
            e.set_retry(false);
            return e;
        }
        match retry::backoff(&self.attempt(session, ctx), false) {
            Some(backoff) => {
                ctx.retry_backoff = Some(backoff);
                e.set_retry(true);
            }
            None => e.set_retry(false),
        }
        e
    }

    /// Tags Spotify's answer with the request id.
    async fn response_filter(
        &self,
        session: &mut Session,
        upstream: &mut ResponseHeader,
        ctx: &mut EgressCtx,
    ) -> Result<()> {
        upstream.insert_header("x-request-id", ctx.req.id.as_str())?;
        if let Some(share) = &ctx.share {
            upstream.insert_header("cache-status", shared::forwarded(share.stale.is_some()))?;
            self.begin_capture(session, upstream, ctx);
        }
        Ok(())
    }

    /// An error mid-call: our own retries stay retries; otherwise only idempotent calls whose
    /// body can be replayed are retried, as pingora decides for a reused connection.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut EgressCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        if ctx.warm {
            e.set_retry(false);
        } else if ctx.retry_with_new_token || ctx.retry_backoff.is_some() {
            // Our own retries: decided in upstream_response_filter / fail_to_connect.
            e.set_retry(true);
        } else if !session.req_header().method.is_idempotent()
            || session.as_ref().retry_buffer_truncated()
        {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
            // A GET on a pooled connection that died under it (an HTTP/2 connection whose
            // tunnel or peer went away reads as a ReadError or H2Error, which pingora does not
            // retry):
            // tried again, with backoff, within the call's deadline (`retry`).
            // Only Spotify's side: a caller that went away is no reason to call again.
            let broken = *e.esource() == ErrorSource::Upstream
                && matches!(
                    e.etype(),
                    ErrorType::ReadError
                        | ErrorType::WriteError
                        | ErrorType::ConnectionClosed
                        | ErrorType::H2Error
                );
            if !e.retry() && broken && !ctx.answer_header_seen {
                if let Some(backoff) = retry::backoff(&self.attempt(session, ctx), true) {
                    ctx.retry_backoff = Some(backoff);
                    e.set_retry(true);
                }
            }
        }
        e
    }

    /// Writes the answer decided in `upstream_peer`, or maps pingora's error (`respond`).
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut EgressCtx,
    ) -> FailToProxy {
        if ctx.warm {
            return warmed(session, e).await;
        }
        if let Some(answer) = ctx.revalidated.take() {
            return self.write_revalidated(session, ctx, answer).await;
        }
        let failure = ctx
            .local_answer
            .take()
            .or_else(|| self.tls_failure(e))
            .or_else(|| self.proxy_failure(e))
            .or_else(|| Failure::from_proxy_error(e, Upstream::Spotify));
        // pingora closes the connection after a failed proxy: say so in the answer, so a
        // client does not send its next request on a connection that is going away.
        session.set_keepalive(None);
        respond::fail_to_proxy(failure, async |f| self.answer(session, ctx, f).await).await
    }

    /// A refused answer body was logged where it was refused (`response_body_filter`).
    fn suppress_error_log(&self, _session: &Session, ctx: &EgressCtx, _e: &Error) -> bool {
        ctx.body_refused || ctx.served_revalidated || ctx.warm
    }

    /// Method and path only: a query string can carry anything.
    fn request_summary(&self, session: &Session, _ctx: &Self::CTX) -> String {
        super::request_summary(session)
    }

    /// Metrics and the access log line.
    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut EgressCtx) {
        if ctx.warm {
            return;
        }
        // A 429 whose body never finished is still Spotify's refusal.
        self.report_refusal(ctx);
        let e = e.filter(|_| !ctx.served_revalidated);
        ctx.req.record(
            LISTENER,
            ctx.credential.as_ref().and_then(Credential::user),
            &self.gw,
            session,
            e,
        );
        ctx.span_attempt_failed(e.map_or("no answer", |e| e.etype().as_str()));
        ctx.req.end_span(session);
    }
}
