//! `GET /auth/playback-token` (`[playback] enabled = true`): the one door through which a
//! signed-in browser page gets an access token, for Spotify's Web Playback SDK, which runs in
//! the page and asks the page for one (`getOAuthToken`).
//!
//! The narrowest door that serves the SDK: the session's access token and how long it lives,
//! `{"access_token","expires_in"}`, never the refresh token; only for a session whose scopes
//! include `streaming`; only to a same-origin request (`Sec-Fetch-Site: same-origin`, or
//! without it an `Origin` that is the gateway's own), and never with CORS headers, so no other
//! site's script can read it; `Cache-Control: no-store`; at most `max_per_minute` per session
//! (`playback_limit`); each issue an audit event `token.issued` and counted in
//! `playback_tokens_total`. Off: 404, as any unknown gateway route. SECURITY.md says what this
//! exposes and why it is less than the alternatives.

use pingora::prelude::*;
use pingora::proxy::Session;
use serde_json::json;

use super::{PublicCtx, PublicProxy};
use crate::clock::now_ms;
use crate::events::{Event, Kind};
use crate::proxy::respond::{respond_json, Failure, TokenRequest};
use crate::session::SessionError;

/// The scope the Web Playback SDK plays with.
const STREAMING: &str = "streaming";

impl PublicProxy {
    pub(super) async fn playback_token(
        &self,
        session: &mut Session,
        ctx: &mut PublicCtx,
    ) -> Result<()> {
        let playback = self.gw.live().playback.clone();
        if !playback.enabled {
            return self
                .problem(session, ctx, Failure::NotFound("No such gateway route."))
                .await;
        }
        let count = |result: &str| {
            self.gw
                .metrics
                .playback_tokens
                .with_label_values(&[&self.gw.app.name, result])
                .inc()
        };
        if !self.same_origin_fetch(session) {
            count("cross_site");
            let failure = Failure::Forbidden {
                code: "cross_site",
                message: "The playback token is given only to the gateway's own pages \
                          (a same-origin fetch).",
            };
            return self.problem(session, ctx, failure).await;
        }
        let live = match self.current_session(session).await {
            Ok(Some(live)) => live,
            Ok(None) => {
                count("unauthenticated");
                let stale = self.has_session_cookie(session);
                return self.unauthenticated(session, ctx, "/", stale).await;
            }
            Err(_) => {
                count("error");
                return self.problem(session, ctx, Failure::StoreUnavailable).await;
            }
        };
        if !live.with_record(|r| r.scopes.iter().any(|s| s == STREAMING)) {
            count("no_scope");
            let failure = Failure::Forbidden {
                code: "missing_scope",
                message: "This session was not granted the streaming scope: sign in again \
                          once the gateway asks for it (spotify.scopes).",
            };
            return self.problem(session, ctx, failure).await;
        }
        let id = self
            .gw
            .sessions
            .keys()
            .index_key("playback-token", live.key.expose());
        if let Err(wait) =
            self.playback
                .admit(&id, playback.max_per_minute, std::time::Instant::now())
        {
            count("rate_limited");
            let failure = Failure::RateLimited {
                retry_after_secs: wait.as_secs().max(1),
                quota_exceeded: false,
            };
            return self.problem(session, ctx, failure).await;
        }
        let token = match self.gw.user_tokens.access_token(&live).await {
            Ok(token) => token,
            Err(e) => {
                count("error");
                let failure = match e {
                    SessionError::Ended if live.reauth_due_within(std::time::Duration::ZERO) => {
                        Failure::ReauthRequired
                    }
                    SessionError::Ended => Failure::SessionEnded,
                    SessionError::Store(_) => Failure::StoreUnavailable,
                    SessionError::Token(e) => Failure::of_token_error(e, TokenRequest::Refresh),
                };
                return self.problem(session, ctx, failure).await;
            }
        };
        // The token just handed over is the record's (fresh, or refreshed for this call).
        let expires_in = live
            .with_record(|r| r.access_expires_at_ms)
            .saturating_sub(now_ms())
            / 1000;
        count("issued");
        tracing::info!(expires_in, "playback token issued to the session's page");
        self.gw.events.emit(
            Event::new(Kind::TokenIssued)
                .user(live.user_id(), live.with_record(|r| r.account_id.clone()))
                .request(&ctx.req.id)
                .trace(ctx.req.trace.trace_id()),
        );
        let body = json!({ "access_token": token.expose(), "expires_in": expires_in });
        let headers = [
            ("pragma", "no-cache".to_string()),
            ("x-request-id", ctx.req.id.clone()),
        ];
        // `write_local` adds `Cache-Control: no-store`; no `Access-Control-*` header ever.
        respond_json(session, 200, &body, &headers).await
    }

    /// Whether the request is a fetch from a page of the gateway's own origin: the browser's
    /// `Sec-Fetch-Site` when it sent one (it cannot be set by a script), else an `Origin` equal
    /// to the public origin (the redirect URI's). Neither: refused, as is a navigation typed
    /// into the address bar (`Sec-Fetch-Site: none`).
    fn same_origin_fetch(&self, session: &Session) -> bool {
        let headers = &session.req_header().headers;
        if let Some(site) = headers.get("sec-fetch-site") {
            return site.as_bytes() == b"same-origin";
        }
        let ours = self.gw.app.spotify.redirect_uri.origin();
        headers
            .get("origin")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| url::Url::parse(v).ok())
            .is_some_and(|u| u.origin() == ours)
    }
}
