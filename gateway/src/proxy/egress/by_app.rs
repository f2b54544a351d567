//! The egress listener of several apps (`[[apps]]`): the call names its app, and that app's
//! [`EgressProxy`] (its tokens, cool-down, budget and cache) serves every phase of it.
//!
//! The app is the one `X-Gateway-App: NAME` names, else the one the call's assertion
//! (`X-Gateway-User`, or the bearer token) names (an assertion is then verified with that app's keys only, so
//! naming another app than the assertion's is refused as an invalid assertion). A call that
//! names none is the only app's; where there are several it is refused (400), saying how to
//! name one. One listener for every app, rather than one per app: an internal service keeps
//! one egress address, and the assertion it already forwards picks the app by itself. The
//! lifecycle's warm-up of an app's connection to its API (`net::api_connection`) names its
//! app with `X-Gateway-App` too; only that app's proxy takes its mark for a warm-up.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};

use super::{EgressCtx, EgressProxy};
use crate::config::DEFAULT_APP;
use crate::proxy::assertion;
use crate::proxy::respond::Failure;
use crate::server::apps::Apps;

/// The header that names a call's app.
pub const APP_HEADER: &str = "x-gateway-app";

pub struct EgressApps {
    apps: Arc<Apps>,
    /// One per app, in the config's order (`EgressCtx::app` indexes it).
    proxies: Vec<EgressProxy>,
}

impl EgressApps {
    pub fn new(apps: &Arc<Apps>) -> EgressApps {
        EgressApps {
            apps: Arc::clone(apps),
            proxies: apps
                .all()
                .iter()
                .map(|gw| EgressProxy::new(Arc::clone(gw)))
                .collect(),
        }
    }

    /// The app a call names, by its index.
    fn pick(&self, session: &Session) -> Result<usize, Failure> {
        let headers = &session.req_header().headers;
        let index = |name: &str| self.apps.all().iter().position(|g| g.app.name == name);
        if let Some(named) = headers.get(APP_HEADER) {
            return named
                .to_str()
                .ok()
                .and_then(|n| index(n.trim()))
                .ok_or(Failure::BadRequest(
                    "X-Gateway-App names no app of this gateway (see [[apps]] in its config)."
                        .into(),
                ));
        }
        if !self.apps.several() {
            return Ok(0);
        }
        // The assertion, as `X-Gateway-User` or as the bearer token (`identity`).
        let bearer = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|t| assertion::app_named(t.trim()));
        let named = match headers.get("x-gateway-user").and_then(|v| v.to_str().ok()) {
            Some(token) => Some(assertion::app_named(token).flatten()),
            None => bearer,
        }
        .map(|app| app.unwrap_or_else(|| DEFAULT_APP.into()));
        match named {
            Some(app) => index(&app).ok_or(Failure::Unauthorized(
                "X-Gateway-User is invalid or expired; use the one the gateway sent with the \
                 request you are serving",
            )),
            None => Err(Failure::BadRequest(
                "This gateway serves several apps: name the app with X-Gateway-App: NAME, or \
                 send the X-Gateway-User the gateway gave you."
                    .into(),
            )),
        }
    }

    fn of(&self, ctx: &EgressCtx) -> &EgressProxy {
        &self.proxies[ctx.app]
    }
}

#[async_trait]
impl ProxyHttp for EgressApps {
    /// Boxed: pingora keeps the context inside the request's future, which it moves into a
    /// box of its own for every request; a pointer there instead of the whole context makes
    /// that copy smaller (issue 29).
    type CTX = Box<EgressCtx>;

    fn new_ctx(&self) -> Box<EgressCtx> {
        Box::default()
    }

    fn on_connection_reuse(
        &self,
        session: &mut Session,
        ctx: &mut Self::CTX,
        context: Box<dyn std::any::Any + Send + Sync>,
    ) {
        self.of(ctx).on_connection_reuse(session, ctx, context)
    }

    /// Picks the call's app, then lets it decide.
    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        match self.pick(session) {
            Ok(app) => ctx.app = app,
            Err(failure) => {
                ctx.req
                    .begin(super::LISTENER, session, &self.proxies[0].gw.traces);
                ctx.req.route = "unmatched";
                ctx.req.no_app = true;
                self.proxies[0].answer(session, ctx, failure).await?;
                return Ok(true);
            }
        }
        self.of(ctx).request_filter(session, ctx).await
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        self.of(ctx).upstream_peer(session, ctx).await
    }

    async fn connected_to_upstream(
        &self,
        session: &mut Session,
        reused: bool,
        peer: &HttpPeer,
        fd: std::os::unix::io::RawFd,
        digest: Option<&pingora::protocols::Digest>,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        self.of(ctx)
            .connected_to_upstream(session, reused, peer, fd, digest, ctx)
            .await
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        self.of(ctx)
            .upstream_request_filter(session, upstream, ctx)
            .await
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        self.of(ctx)
            .upstream_response_filter(session, upstream, ctx)
            .await
    }

    fn response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<Option<Duration>> {
        self.of(ctx)
            .response_body_filter(session, body, end_of_stream, ctx)
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Self::CTX,
        e: Box<Error>,
    ) -> Box<Error> {
        self.of(ctx).fail_to_connect(session, peer, ctx, e)
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        self.of(ctx).response_filter(session, upstream, ctx).await
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Self::CTX,
        client_reused: bool,
    ) -> Box<Error> {
        self.of(ctx)
            .error_while_proxy(peer, session, e, ctx, client_reused)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy {
        self.of(ctx).fail_to_proxy(session, e, ctx).await
    }

    fn suppress_error_log(&self, session: &Session, ctx: &Self::CTX, e: &Error) -> bool {
        self.of(ctx).suppress_error_log(session, ctx, e)
    }

    fn request_summary(&self, session: &Session, ctx: &Self::CTX) -> String {
        self.of(ctx).request_summary(session, ctx)
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Self::CTX) {
        self.of(ctx).logging(session, e, ctx).await
    }
}
