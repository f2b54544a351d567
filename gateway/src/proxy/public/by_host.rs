//! The public listener of several apps (`[[apps]]`): the request's `Host` picks the app, and
//! that app's [`PublicProxy`] (its cookie, keys, sessions, upstream) serves every phase of
//! the request. A host no app serves is answered 404 by the gateway itself. A single-app
//! gateway that lists no hosts serves every host, as before `[[apps]]`.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};

use super::{cookies_of, PublicCtx, PublicProxy};
use crate::proxy::respond::Failure;
use crate::server::apps::Apps;

pub struct PublicApps {
    apps: Arc<Apps>,
    /// One per app, in the config's order (`PublicCtx::app` indexes it).
    proxies: Vec<PublicProxy>,
}

impl PublicApps {
    pub fn new(apps: &Arc<Apps>) -> PublicApps {
        let all_cookies: Vec<_> = apps.all().iter().map(|g| cookies_of(g)).collect();
        let proxies = apps
            .all()
            .iter()
            .enumerate()
            .map(|(i, gw)| {
                let others = all_cookies
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, c)| c);
                let mut proxy = PublicProxy::new(Arc::clone(gw));
                proxy.cookies = cookies_of(gw).stripping_others(others);
                proxy
            })
            .collect();
        PublicApps {
            apps: Arc::clone(apps),
            proxies,
        }
    }

    /// The app the request's host picks, by its index.
    fn pick(&self, session: &Session) -> Option<usize> {
        let req = session.req_header();
        let host = req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.authority().map(|a| a.as_str()));
        let gw = self.apps.by_host(host)?;
        self.apps.all().iter().position(|g| Arc::ptr_eq(g, gw))
    }

    fn of(&self, ctx: &PublicCtx) -> &PublicProxy {
        &self.proxies[ctx.app]
    }
}

#[async_trait]
impl ProxyHttp for PublicApps {
    /// Boxed: pingora keeps the context inside the request's future, which it moves into a
    /// box of its own for every request; a pointer there instead of the whole context makes
    /// that copy smaller (issue 29).
    type CTX = Box<PublicCtx>;

    fn new_ctx(&self) -> Box<PublicCtx> {
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

    /// Picks the app by `Host`, then lets it decide.
    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        match self.pick(session) {
            Some(app) => ctx.app = app,
            None => {
                let first = &self.proxies[0];
                ctx.req
                    .begin(super::LISTENER, session, &self.proxies[0].gw.traces);
                ctx.req.route = "unmatched";
                ctx.req.no_app = true;
                let failure = Failure::NotFound("No app is served on this host.");
                first.problem(session, ctx, failure).await?;
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

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy {
        self.of(ctx).fail_to_proxy(session, e, ctx).await
    }

    fn suppress_error_log(&self, session: &Session, ctx: &Self::CTX, error: &Error) -> bool {
        self.of(ctx).suppress_error_log(session, ctx, error)
    }

    fn request_summary(&self, session: &Session, ctx: &Self::CTX) -> String {
        self.of(ctx).request_summary(session, ctx)
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Self::CTX) {
        self.of(ctx).logging(session, e, ctx).await
    }
}
