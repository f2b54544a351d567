//! The gateway's own routes on the public listener: `/auth/login`, `/auth/callback`,
//! `/auth/logout`, `/auth/userinfo`, and the answer to a request without a session
//! (`/auth/check` is in `check`).

use std::sync::Arc;

use pingora::prelude::*;
use pingora::proxy::Session;
use serde_json::json;

use super::paths::{self, query_param, safe_return_to, urlencode, AuthRoute};
use super::{PublicCtx, PublicProxy};
use crate::events::{Event, Kind};
use crate::oauth::TokenError;
use crate::proxy::pages;
use crate::proxy::respond::{
    redirect, respond_html, respond_json, wants_html, Failure, TokenRequest,
};
use crate::session::{
    cookie, Callback, CloseReason, LiveSession, LoginError, LOGIN_TTL, REAUTH_NOTICE,
};
use crate::store::StoreError;
use crate::telemetry::traces;
use opentelemetry::KeyValue;

impl PublicProxy {
    /// Serves one of the gateway's own routes.
    pub(super) async fn serve_auth(
        &self,
        route: AuthRoute,
        session: &mut Session,
        ctx: &mut PublicCtx,
    ) -> Result<()> {
        if !route.allows(&session.req_header().method) {
            let failure = Failure::MethodNotAllowed {
                message: "Method not allowed here.".into(),
                allow: None,
            };
            return self.problem(session, ctx, failure).await;
        }
        match route {
            AuthRoute::Login => self.login(session, ctx).await,
            AuthRoute::Callback => self.callback(session, ctx).await,
            AuthRoute::Logout => self.logout(session, ctx).await,
            AuthRoute::Userinfo => self.userinfo(session, ctx).await,
            AuthRoute::Check => {
                let span = traces::child_of_current("forward-auth check");
                let scope = span.as_ref().map(|s| s.scope());
                let checked = traces::in_scope(scope, self.check(session, ctx)).await;
                if let Some(span) = span {
                    let status = crate::proxy::response_status(session);
                    let result = if status == 200 { "allowed" } else { "denied" };
                    span.set([KeyValue::new("gateway.forward_auth.result", result)]);
                    span.end(None);
                }
                checked
            }
            AuthRoute::Disconnect => self.disconnect(session, ctx).await,
            AuthRoute::PlaybackToken => self.playback_token(session, ctx).await,
            AuthRoute::Other => {
                self.problem(session, ctx, Failure::NotFound("No such gateway route."))
                    .await
            }
        }
    }

    /// The session the request's cookie names, if any.
    pub(super) async fn current_session(
        &self,
        session: &Session,
    ) -> Result<Option<Arc<LiveSession>>, StoreError> {
        match cookie::value(session.req_header(), &self.cookies.session) {
            Some(value) => self.gw.sessions.by_cookie(&value).await,
            None => Ok(None),
        }
    }

    /// Whether the request carries a session cookie at all (valid or not).
    pub(super) fn has_session_cookie(&self, session: &Session) -> bool {
        cookie::value(session.req_header(), &self.cookies.session).is_some()
    }

    /// A failure as a page for browsers, JSON for everyone else.
    pub(super) async fn problem(
        &self,
        session: &mut Session,
        ctx: &PublicCtx,
        failure: Failure,
    ) -> Result<()> {
        failure
            .write_problem(session, &ctx.req.id, &self.gw.page_name)
            .await
    }

    async fn login(&self, session: &mut Session, ctx: &mut PublicCtx) -> Result<()> {
        let return_to = match query_param(session.req_header(), "return_to") {
            None => "/".to_string(),
            Some(raw) => match paths::return_to(&raw, self.gw.live().forward_auth.as_ref()) {
                Some(path) => path,
                None => return self.problem(session, ctx, Failure::InvalidReturnTo).await,
            },
        };
        let scopes = self.gw.live().scopes.clone();
        match self
            .gw
            .sessions
            .begin_login(&self.gw.token_endpoint, return_to, &scopes)
            .await
        {
            Ok((authorize_url, login_cookie)) => {
                let cookie =
                    self.cookies
                        .set(&self.cookies.login, &login_cookie, LOGIN_TTL.as_secs());
                redirect(session, &authorize_url, &[cookie], &ctx.req.id).await
            }
            Err(_) => self.problem(session, ctx, Failure::StoreUnavailable).await,
        }
    }

    async fn callback(&self, session: &mut Session, ctx: &mut PublicCtx) -> Result<()> {
        // A login from a browser that is still signed in (a re-consent) replaces its session.
        let replaced = self.current_session(session).await.ok().flatten();
        let req = session.req_header();
        let login_cookie = cookie::value(req, &self.cookies.login);
        let state = query_param(req, "state");
        let code = query_param(req, "code");
        let error = query_param(req, "error");
        let access = self.gw.live().access.clone();
        let result = self
            .gw
            .sessions
            .finish_login(
                &self.gw.token_endpoint,
                Callback {
                    login_cookie: login_cookie.as_deref(),
                    state: state.as_deref(),
                    code: code.as_deref(),
                    error: error.as_deref(),
                },
                &access,
            )
            .await;
        let (logins, app) = (&self.gw.metrics.logins, self.gw.app.name.as_str());
        let failure = match result {
            Ok(new) => {
                logins.with_label_values(&[app, "ok"]).inc();
                tracing::info!("login completed");
                self.gw.events.emit(
                    Event::new(Kind::LoginSucceeded)
                        .user(new.user_id.clone(), new.account_id.clone())
                        .request(&ctx.req.id)
                        .trace(ctx.req.trace.trace_id()),
                );
                if let Some(old) = replaced {
                    // Best effort: the browser holds only the new cookie from now on.
                    if self
                        .gw
                        .sessions
                        .end(&old.key, CloseReason::Replaced)
                        .await
                        .is_ok()
                    {
                        tracing::info!("the new login replaced the browser's previous session");
                    }
                }
                // The cookie outlives a session that ends at its deadline, so the browser is
                // told "sign in again" (`unauthenticated`) instead of being sent away silently.
                let cookies = [
                    self.cookies.set(
                        &self.cookies.session,
                        &new.cookie_value,
                        self.gw.config.session.lifetime.as_secs(),
                    ),
                    self.cookies.clear(&self.cookies.login),
                ];
                return redirect(session, &new.return_to, &cookies, &ctx.req.id).await;
            }
            Err(LoginError::Denied) => {
                logins.with_label_values(&[app, "denied"]).inc();
                self.gw.events.emit(
                    Event::new(Kind::LoginDenied)
                        .request(&ctx.req.id)
                        .trace(ctx.req.trace.trace_id()),
                );
                return self.access_denied(session).await;
            }
            Err(
                e @ (LoginError::NotRegistered
                | LoginError::NotAllowed { .. }
                | LoginError::ProductUnknown { .. }),
            ) => {
                // Not registered: Spotify refused the profile call, so no user id is known.
                let (result, event) = match &e {
                    LoginError::NotAllowed {
                        user_id,
                        account_id,
                    } => (
                        "not_allowed",
                        Event::new(Kind::LoginNotAllowed).user(user_id.clone(), account_id.clone()),
                    ),
                    LoginError::ProductUnknown {
                        user_id,
                        account_id,
                    } => (
                        "product_unknown",
                        Event::new(Kind::LoginNotAllowed).user(user_id.clone(), account_id.clone()),
                    ),
                    _ => ("not_registered", Event::new(Kind::LoginNotRegistered)),
                };
                logins.with_label_values(&[app, result]).inc();
                self.gw
                    .events
                    .emit(event.request(&ctx.req.id).trace(ctx.req.trace.trace_id()));
                if result == "product_unknown" {
                    // The operator's rule cannot work for this app: say so where they look.
                    tracing::warn!(result, "login refused: {e}");
                } else {
                    tracing::info!(result, "login refused: {e}");
                }
                return self.login_refused(session, &e).await;
            }
            Err(LoginError::Store(_)) => {
                logins.with_label_values(&[app, "error"]).inc();
                Failure::StoreUnavailable
            }
            // The operator's or Spotify's side, not the user's: the one token mapping.
            Err(LoginError::Token(
                e @ (TokenError::Tls { .. } | TokenError::Proxy(_) | TokenError::Unavailable(_)),
            )) => {
                logins.with_label_values(&[app, "error"]).inc();
                Failure::of_token_error(e, TokenRequest::Login)
            }
            Err(e) => {
                logins.with_label_values(&[app, "invalid"]).inc();
                tracing::info!(reason = %e, "login callback refused");
                let code = match e {
                    LoginError::NoLoginCookie
                    | LoginError::StateMismatch
                    | LoginError::UnknownState => "invalid_state",
                    LoginError::CodeRefused | LoginError::MissingCode => "invalid_code",
                    _ => "login_failed",
                };
                Failure::LoginFailed {
                    code,
                    message: format!("Login failed: {e}. Please sign in again."),
                }
            }
        };
        self.problem(session, ctx, failure).await
    }

    /// The user declined at Spotify: not an error, a page (or JSON) that says so.
    async fn access_denied(&self, session: &mut Session) -> Result<()> {
        let clear = [("set-cookie", self.cookies.clear(&self.cookies.login))];
        if wants_html(session.req_header()) {
            let page = pages::access_denied(&self.gw.page_name);
            respond_html(session, 403, &page, &clear).await
        } else {
            let body = json!({
                "error": "access_denied",
                "message": "The user declined access at Spotify.",
                "login_url": self.gw.login_url(None),
            });
            respond_json(session, 403, &body, &clear).await
        }
    }

    /// A user who may not use the app: not registered for a development-mode app at Spotify,
    /// or refused by `[access]`. A page that says what happened and what to do (or JSON); no
    /// session was created.
    async fn login_refused(&self, session: &mut Session, why: &LoginError) -> Result<()> {
        let clear = [("set-cookie", self.cookies.clear(&self.cookies.login))];
        let app = &self.gw.page_name;
        let (code, page, message) = match why {
            LoginError::NotRegistered => (
                "not_registered",
                pages::not_registered(app),
                "Spotify refused this user: the app is in development mode and the user is not \
                 registered in its Spotify developer dashboard (at most 5 users). The app's \
                 owner must add the user there.",
            ),
            LoginError::ProductUnknown { .. } => (
                "product_unknown",
                pages::product_unknown(app),
                "This gateway admits only some Spotify subscriptions, and Spotify did not say \
                 this account's: Spotify withholds the subscription from apps in development \
                 mode. The operator must remove [access] allowed_products, or get the app \
                 extended quota at Spotify.",
            ),
            _ => (
                "not_allowed",
                pages::not_allowed(app),
                "This Spotify account is not allowed to sign in here.",
            ),
        };
        if wants_html(session.req_header()) {
            respond_html(session, 403, &page, &clear).await
        } else {
            let body = json!({ "error": code, "message": message });
            respond_json(session, 403, &body, &clear).await
        }
    }

    async fn logout(&self, session: &mut Session, ctx: &mut PublicCtx) -> Result<()> {
        match self.current_session(session).await {
            Ok(Some(s)) => {
                if self
                    .gw
                    .sessions
                    .end(&s.key, CloseReason::SignedOut)
                    .await
                    .is_err()
                {
                    return self.problem(session, ctx, Failure::StoreUnavailable).await;
                }
                tracing::info!("signed out");
                self.gw.events.emit(
                    Event::new(Kind::SignedOut)
                        .user(s.user_id(), s.with_record(|r| r.account_id.clone()))
                        .request(&ctx.req.id)
                        .trace(ctx.req.trace.trace_id()),
                );
            }
            Ok(None) => {}
            Err(_) => return self.problem(session, ctx, Failure::StoreUnavailable).await,
        }
        let clear = [("set-cookie", self.cookies.clear(&self.cookies.session))];
        if wants_html(session.req_header()) {
            let page = pages::signed_out(&self.gw.page_name);
            respond_html(session, 200, &page, &clear).await
        } else {
            respond_json(session, 200, &json!({ "signed_out": true }), &clear).await
        }
    }

    async fn userinfo(&self, session: &mut Session, ctx: &mut PublicCtx) -> Result<()> {
        match self.current_session(session).await {
            Ok(Some(s)) => {
                let r = s.record();
                let body = json!({
                    "user_id": r.user_id,
                    "account_id": r.account_id,
                    "display_name": r.display_name,
                    "scopes": r.scopes,
                    "token_expires_at": r.access_expires_at_ms / 1000,
                    "session_expires_at": r.expires_at_ms / 1000,
                    "reauth_by": r.reauth_by_ms.map(|ms| ms / 1000),
                });
                respond_json(session, 200, &body, &[]).await
            }
            Ok(None) => {
                let stale = self.has_session_cookie(session);
                self.unauthenticated(session, ctx, "/", stale).await
            }
            Err(_) => self.problem(session, ctx, Failure::StoreUnavailable).await,
        }
    }

    /// Whether this request is offered a re-consent instead of the page: a browser's page
    /// load (GET with `Accept: text/html`), for a session whose deadline is within
    /// [`REAUTH_NOTICE`], once a day (the offer cookie).
    pub(super) fn offers_reauth(&self, session: &Session, live: &LiveSession) -> bool {
        let req = session.req_header();
        req.method == http::Method::GET
            && wants_html(req)
            && live.reauth_due_within(REAUTH_NOTICE)
            && cookie::value(req, &self.cookies.reauth_offered).is_none()
    }

    /// The re-consent offer: "Renew with Spotify" signs in again and comes back to this page;
    /// "Not now" goes on to it. Either way the offer rests for a day.
    pub(super) async fn reauth_offer(
        &self,
        session: &mut Session,
        ctx: &mut PublicCtx,
        live: &LiveSession,
    ) -> Result<()> {
        const DAY_MS: u64 = 24 * 3600 * 1000;
        let here = session
            .req_header()
            .uri
            .path_and_query()
            .map(|pq| pq.as_str().to_string())
            .and_then(|p| safe_return_to(&p))
            .unwrap_or_else(|| "/".into());
        let left_ms = live
            .with_record(|r| r.reauth_by_ms)
            .unwrap_or_default()
            .saturating_sub(crate::clock::now_ms());
        let renew = format!("/auth/login?return_to={}", urlencode(&here));
        let page = pages::reauth_offer(&self.gw.page_name, left_ms.div_ceil(DAY_MS), &renew, &here);
        let headers = [
            (
                "set-cookie",
                self.cookies
                    .set(&self.cookies.reauth_offered, "1", DAY_MS / 1000),
            ),
            ("x-request-id", ctx.req.id.clone()),
        ];
        respond_html(session, 200, &page, &headers).await
    }

    /// No valid session: browsers go to the login, API callers get 401 JSON. A browser whose
    /// cookie no longer opens a session (`stale`: it expired, or the user signed out on
    /// another device) is told so instead of being bounced to Spotify without a word.
    pub(super) async fn unauthenticated(
        &self,
        session: &mut Session,
        ctx: &mut PublicCtx,
        return_to: &str,
        stale: bool,
    ) -> Result<()> {
        if wants_html(session.req_header()) {
            let location = format!("/auth/login?return_to={}", urlencode(return_to));
            if stale {
                let page = pages::session_expired(&self.gw.page_name, &location);
                let headers = [
                    ("set-cookie", self.cookies.clear(&self.cookies.session)),
                    ("x-request-id", ctx.req.id.clone()),
                ];
                return respond_html(session, 401, &page, &headers).await;
            }
            redirect(session, &location, &[], &ctx.req.id).await
        } else {
            let body = json!({
                "error": "unauthenticated",
                "message": "Sign in with Spotify first.",
                "login_url": self.gw.login_url(Some(return_to)),
            });
            respond_json(session, 401, &body, &[("x-request-id", ctx.req.id.clone())]).await
        }
    }
}
