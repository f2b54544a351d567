//! `/auth/disconnect`: a user deletes everything the gateway holds for them (Spotify's
//! Developer Policy: users must be able to disconnect, and their data must then be deleted).
//!
//! `GET` shows the confirmation form (or, for API callers, the form's token as JSON); `POST`
//! acts, and only for a same-origin request (`Origin`, else `Referer`, must be the public
//! origin) carrying the form's token, a keyed hash of the session: a page elsewhere can neither
//! send the form with the browser's cookie nor know the token. Every session of the user ends
//! on every replica (`Sessions::disconnect`), and the answer links to Spotify's own page for
//! removing the app's access.

use bytes::BytesMut;
use pingora::prelude::*;
use pingora::proxy::Session;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::{PublicCtx, PublicProxy};
use crate::events::{Event, Kind};
use crate::proxy::pages;
use crate::proxy::respond::{respond_html, respond_json, wants_html, Failure};
use crate::session::LiveSession;

/// Where a user removes an app's access at Spotify itself.
pub const SPOTIFY_APPS_PAGE: &str = "https://www.spotify.com/account/apps/";
/// The form is one token: anything longer is not it.
const MAX_FORM_BYTES: usize = 4096;

impl PublicProxy {
    pub(super) async fn disconnect(
        &self,
        session: &mut Session,
        ctx: &mut PublicCtx,
    ) -> Result<()> {
        let live = match self.current_session(session).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                let stale = self.has_session_cookie(session);
                return self
                    .unauthenticated(session, ctx, "/auth/disconnect", stale)
                    .await;
            }
            Err(_) => return self.problem(session, ctx, Failure::StoreUnavailable).await,
        };
        let token = self.form_token(&live);
        if session.req_header().method != http::Method::POST {
            return if wants_html(session.req_header()) {
                let page = pages::disconnect_confirm(&self.gw.page_name, &token);
                respond_html(session, 200, &page, &[]).await
            } else {
                let body = json!({ "csrf_token": token, "method": "POST", "field": "csrf" });
                respond_json(session, 200, &body, &[]).await
            };
        }
        if !self.same_origin(session) {
            let failure = Failure::Forbidden {
                code: "cross_site",
                message: "Cross-site request refused: disconnect from the gateway's own page.",
            };
            return self.problem(session, ctx, failure).await;
        }
        let sent = match read_form_token(session).await {
            Ok(sent) => sent,
            Err(failure) => return self.problem(session, ctx, failure).await,
        };
        if !bool::from(sent.as_bytes().ct_eq(token.as_bytes())) {
            let failure = Failure::Forbidden {
                code: "invalid_form_token",
                message: "The form's token is missing or wrong: open the disconnect page and try \
                          again.",
            };
            return self.problem(session, ctx, failure).await;
        }
        let ended = match self.gw.sessions.disconnect(&live).await {
            Ok(n) => n,
            Err(_) => return self.problem(session, ctx, Failure::StoreUnavailable).await,
        };
        tracing::info!(
            sessions = ended,
            "a user disconnected: their sessions are deleted"
        );
        self.gw.events.emit(
            Event::new(Kind::Disconnected)
                .user(live.user_id(), live.with_record(|r| r.account_id.clone()))
                .request(&ctx.req.id)
                .trace(ctx.req.trace.trace_id())
                .sessions_ended(ended),
        );
        let clear = [
            ("set-cookie", self.cookies.clear(&self.cookies.session)),
            ("x-request-id", ctx.req.id.clone()),
        ];
        if wants_html(session.req_header()) {
            let page = pages::disconnected(&self.gw.page_name, SPOTIFY_APPS_PAGE);
            respond_html(session, 200, &page, &clear).await
        } else {
            let body = json!({
                "disconnected": true,
                "sessions_ended": ended,
                "remove_access_at": SPOTIFY_APPS_PAGE,
            });
            respond_json(session, 200, &body, &clear).await
        }
    }

    /// The disconnect form's token for this session: a keyed hash of its store key, so it is
    /// the same on every replica and useless for any other session.
    fn form_token(&self, live: &LiveSession) -> String {
        self.gw
            .sessions
            .keys()
            .index_key("disconnect-form", live.key.expose())
    }

    /// Whether the request comes from a page of the gateway's own origin (the redirect URI's):
    /// `Origin` when the browser sent one, else `Referer`; neither is refused.
    fn same_origin(&self, session: &Session) -> bool {
        let ours = self.gw.app.spotify.redirect_uri.origin();
        let headers = &session.req_header().headers;
        let from = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| url::Url::parse(v).ok())
                .map(|u| u.origin())
        };
        match from("origin").or_else(|| from("referer")) {
            Some(origin) => origin == ours,
            None => false,
        }
    }
}

/// The `csrf` field of a form body (`application/x-www-form-urlencoded`), read within
/// [`MAX_FORM_BYTES`].
async fn read_form_token(session: &mut Session) -> std::result::Result<String, Failure> {
    let mut body = BytesMut::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_FORM_BYTES {
                    return Err(Failure::BadRequest("The form is too large.".into()));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(_) => return Err(Failure::BadRequest("The form could not be read.".into())),
        }
    }
    Ok(url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default())
}
