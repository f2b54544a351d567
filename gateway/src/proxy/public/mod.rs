//! The public listener: Spotify login for browsers (`routes`: `/auth/*`; `disconnect`: a user
//! deletes their data), the session cookie (`session::cookie`), the paths that need no session
//! (`paths`), the internal app behind it, which receives the user's identity headers
//! (`identity`), forward-auth for an existing ingress (`check`: `/auth/check`), and with
//! `[playback]` the Web Playback SDK's token for the gateway's own pages (`playback`). A request
//! that passes with a session joins that session's streams, so that whatever it becomes (a
//! WebSocket, an event stream) closes when the session ends (`session::streams`).
//!
//! ```text
//! curl -i 'http://127.0.0.1:8080/auth/login?return_to=/'   # with `spotify-gateway demo`
//! ```

mod by_host;
mod check;
mod disconnect;
mod identity;
mod issued;
mod paths;
mod playback;
mod playback_limit;
mod routes;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};

pub use by_host::PublicApps;
pub use paths::safe_return_to;

use super::respond::{self, Failure, Upstream};
use super::{headers, path_rule, RequestInfo, UpstreamTarget};
use crate::server::guards::{Cut, RequestContext};
use crate::server::state::Gateway;
use crate::session::cookie::Cookies;
use crate::session::{LiveSession, StreamGuard};
use crate::telemetry::traces::{self, RequestSpan};
use paths::AuthRoute;
use playback_limit::PlaybackLimit;

const LISTENER: &str = "public";

pub struct PublicProxy {
    gw: Arc<Gateway>,
    upstream: Option<UpstreamTarget>,
    cookies: Cookies,
    /// How many playback tokens each session had lately (`playback`).
    playback: PlaybackLimit,
    /// Each session's assertion, given again for a minute (`issued`).
    issued: issued::Issued,
    /// `upstream_duration_seconds{app,listener}`, resolved once: observed on every proxied
    /// request (a label lookup hashes its values and takes a lock).
    upstream_duration: prometheus::Histogram,
}

#[derive(Default)]
pub struct PublicCtx {
    /// Which of `PublicApps`' apps the request's `Host` picked.
    app: usize,
    req: RequestInfo,
    session: Option<Arc<LiveSession>>,
    upstream_started: Option<Instant>,
    /// Ends this request from outside (`listeners`), when it has joined its session's
    /// streams and the session ends.
    cut: Option<Cut>,
    /// This request among its session's streams, closed when the session ends
    /// (`session::streams`); dropped with the request.
    stream: Option<StreamGuard>,
}

impl PublicProxy {
    pub fn new(gw: Arc<Gateway>) -> PublicProxy {
        let upstream = gw
            .app
            .upstream
            .as_ref()
            .map(|u| UpstreamTarget::from_url(&u.url));
        let cookies = cookies_of(&gw);
        let upstream_duration = gw
            .metrics
            .upstream_duration
            .with_label_values(&[&gw.app.name, LISTENER]);
        PublicProxy {
            gw,
            upstream_duration,
            upstream,
            cookies,
            playback: PlaybackLimit::default(),
            issued: issued::Issued::default(),
        }
    }

    /// Everything that is not an `/auth/` route: a public path passes, a session passes with
    /// its identity, anything else is sent to sign in.
    async fn gate(&self, session: &mut Session, ctx: &mut PublicCtx) -> Result<bool> {
        if self.upstream.is_none() {
            ctx.req.route = "unmatched";
            self.problem(
                session,
                ctx,
                Failure::NotFound("No upstream is configured."),
            )
            .await?;
            return Ok(true);
        }
        if paths::is_public(
            &self.gw.live().public_paths,
            session.req_header().uri.path(),
        ) {
            ctx.req.route = "public_path";
            return Ok(false);
        }
        let found = match self.current_session(session).await {
            Ok(Some(s)) if self.offers_reauth(session, &s) => {
                ctx.req.route = "reauth_offer";
                self.reauth_offer(session, ctx, &s).await?;
                return Ok(true);
            }
            Ok(Some(s)) => Ok(self.join_streams(ctx, s)),
            other => other,
        };
        match found {
            Ok(Some(s)) => {
                ctx.req.route = "upstream";
                ctx.session = Some(s);
                Ok(false)
            }
            Ok(None) => {
                ctx.req.route = "unauthenticated";
                let return_to = session
                    .req_header()
                    .uri
                    .path_and_query()
                    .map(|pq| pq.as_str().to_string())
                    .unwrap_or_else(|| "/".into());
                let return_to = safe_return_to(&return_to).unwrap_or_else(|| "/".into());
                let stale = self.has_session_cookie(session);
                self.unauthenticated(session, ctx, &return_to, stale)
                    .await?;
                Ok(true)
            }
            Err(_) => {
                ctx.req.route = "upstream";
                self.problem(session, ctx, Failure::StoreUnavailable)
                    .await?;
                Ok(true)
            }
        }
    }

    /// Whatever a request with a session becomes (a WebSocket, an event stream, a long poll),
    /// it must not outlive the session: it joins the session's streams. `None` when the
    /// session ended while it was looked up.
    fn join_streams(&self, ctx: &mut PublicCtx, s: Arc<LiveSession>) -> Option<Arc<LiveSession>> {
        let Some(cut) = ctx.cut.clone() else {
            return Some(s);
        };
        ctx.stream = Some(self.gw.sessions.join_streams(&s, move || cut.fire())?);
        Some(s)
    }
}

/// An app's cookies: the default app's are named `session.cookie_name` (the names before
/// `[[apps]]`, so its sessions survive the upgrade), another app's `session.cookie_name.APP`.
fn cookies_of(gw: &Gateway) -> Cookies {
    let session = &gw.config.session;
    let base = if gw.app.is_default() {
        session.cookie_name.clone()
    } else {
        format!("{}.{}", session.cookie_name, gw.app.name)
    };
    let secure = gw.app.spotify.redirect_uri.scheme() == "https";
    Cookies::new(&base, secure, session.cookie_domain.as_deref())
}

#[async_trait]
impl ProxyHttp for PublicProxy {
    type CTX = PublicCtx;

    fn new_ctx(&self) -> PublicCtx {
        Default::default()
    }

    /// The request header is in: tells the listener's header deadline, and keeps the
    /// request's cut (`listeners`).
    fn on_connection_reuse(
        &self,
        _session: &mut Session,
        ctx: &mut PublicCtx,
        context: Box<dyn std::any::Any + Send + Sync>,
    ) {
        ctx.cut = RequestContext::header_read(context);
    }

    /// Refuses TRACE and CONNECT and paths the shared rule refuses (dot segments, encoded
    /// separators: 400), serves the `/auth/` routes, and decides whether the request may
    /// reach the app (a public path or a valid session).
    async fn request_filter(&self, session: &mut Session, ctx: &mut PublicCtx) -> Result<bool> {
        ctx.req.begin(LISTENER, session, &self.gw.traces);
        let method = &session.req_header().method;
        // TRACE would echo the request back to the browser with the identity headers and the
        // assertion the gateway adds; CONNECT would make the gateway a tunnel.
        if method == http::Method::TRACE || method == http::Method::CONNECT {
            let failure = Failure::MethodNotAllowed {
                message: "Method not allowed here.".into(),
                allow: None,
            };
            self.problem(session, ctx, failure).await?;
            return Ok(true);
        }
        // Before any routing decision: what public paths, sessions and `/auth/` routes are
        // decided on must be the path the app resolves (`path_rule`).
        if let Err(problem) = path_rule::check_path(session.req_header().uri.path()) {
            let failure = Failure::BadRequest(problem.message().into());
            self.problem(session, ctx, failure).await?;
            return Ok(true);
        }
        // Inside the request's span: the session lookup, the login's calls and the store
        // operations under them are its children.
        let scope = ctx.req.span.as_ref().map(RequestSpan::scope);
        if let Some(route) = AuthRoute::of(session.req_header().uri.path()) {
            ctx.req.route = route.label();
            traces::in_scope(scope, self.serve_auth(route, session, ctx)).await?;
            return Ok(true);
        }
        traces::in_scope(scope, self.gate(session, ctx)).await
    }

    /// The internal app's address.
    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut PublicCtx,
    ) -> Result<Box<HttpPeer>> {
        ctx.upstream_started = Some(Instant::now());
        match &self.upstream {
            Some(u) => u.peer(None).await,
            None => Err(Error::explain(
                ErrorType::InternalError,
                "no upstream configured",
            )),
        }
    }

    /// The app sees the gateway's identity headers only, none of its cookies, and no `_`
    /// look-alike of a framing or hop-by-hop header (`proxy::headers`); it gets the request id
    /// and the trace context (`proxy::trace`).
    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut PublicCtx,
    ) -> Result<()> {
        headers::remove_headers(upstream, headers::is_framing_lookalike);
        identity::strip_client_identity(upstream);
        self.cookies.strip(upstream)?;
        if let Some(s) = &ctx.session {
            identity::insert_identity(upstream, s, &self.gw.sessions.keys(), &self.issued)?;
        }
        upstream.insert_header("x-request-id", ctx.req.id.as_str())?;
        ctx.req.trace.apply(upstream)
    }

    /// Times the app's answer.
    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _upstream: &mut ResponseHeader,
        ctx: &mut PublicCtx,
    ) -> Result<()> {
        if let Some(at) = ctx.upstream_started {
            self.upstream_duration.observe(at.elapsed().as_secs_f64());
        }
        Ok(())
    }

    /// The app could not be reached or failed: a page or JSON (`respond`).
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut PublicCtx,
    ) -> FailToProxy {
        let failure = Failure::from_proxy_error(e, Upstream::App);
        // pingora closes the connection after a failed proxy: say so in the answer, so a
        // client does not send its next request on a connection that is going away.
        session.set_keepalive(None);
        respond::fail_to_proxy(failure, async |f| self.problem(session, ctx, f).await).await
    }

    /// A request cut because its session ended fails by design (its client connection is
    /// shut): the access line and `streams_closed_total` say so, not an error line.
    fn suppress_error_log(&self, _session: &Session, ctx: &PublicCtx, _error: &Error) -> bool {
        ctx.stream.is_some() && ctx.cut.as_ref().is_some_and(Cut::has_fired)
    }

    /// Method and path only: a query string can carry an authorization code or state.
    fn request_summary(&self, session: &Session, _ctx: &Self::CTX) -> String {
        super::request_summary(session)
    }

    /// Metrics and the access log line.
    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut PublicCtx) {
        ctx.req
            .record(LISTENER, ctx.session.as_deref(), &self.gw, session, e);
        ctx.req.end_span(session);
    }
}
