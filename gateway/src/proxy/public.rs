//! The public listener: Spotify login for browsers (`/auth/*`), the session cookie, and the
//! internal app behind it, which receives the user's identity headers.
//!
//! ```text
//! curl -i 'http://127.0.0.1:8080/auth/login?return_to=/'   # with `spotify-gateway demo`
//! ```

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use serde_json::json;
use url::Url;

use super::{respond_json, UpstreamTarget, IDENTITY_HEADERS};
use crate::oauth::TokenError;
use crate::pages;
use crate::session::{LiveSession, LoginError, LOGIN_TTL};
use crate::state::Gateway;

const LISTENER: &str = "public";
/// Longest `return_to` accepted.
const MAX_RETURN_TO: usize = 2048;

pub struct PublicProxy {
    gw: Arc<Gateway>,
    upstream: Option<UpstreamTarget>,
    cookies: CookieNames,
}

/// Cookie names and attributes. Over https the names get the `__Host-` prefix, which
/// browsers only accept with `Secure`, `Path=/` and no `Domain`.
struct CookieNames {
    session: String,
    login: String,
    secure: bool,
}

#[derive(Default)]
pub struct PublicCtx {
    started: Option<Instant>,
    route: &'static str,
    request_id: String,
    session: Option<Arc<LiveSession>>,
    upstream_started: Option<Instant>,
}

impl PublicProxy {
    pub fn new(gw: Arc<Gateway>) -> PublicProxy {
        let upstream = gw
            .config
            .upstream
            .as_ref()
            .map(|u| UpstreamTarget::from_url(&u.url));
        let secure = gw.config.spotify.redirect_uri.scheme() == "https";
        let base = &gw.config.session.cookie_name;
        let session = if secure {
            format!("__Host-{base}")
        } else {
            base.clone()
        };
        let cookies = CookieNames {
            login: format!("{session}-login"),
            session,
            secure,
        };
        PublicProxy {
            gw,
            upstream,
            cookies,
        }
    }

    fn set_cookie(&self, name: &str, value: &str, max_age_secs: u64) -> String {
        let secure = if self.cookies.secure { "; Secure" } else { "" };
        format!("{name}={value}; Path=/; Max-Age={max_age_secs}; HttpOnly; SameSite=Lax{secure}")
    }

    fn clear_cookie(&self, name: &str) -> String {
        self.set_cookie(name, "", 0)
    }

    fn is_public_path(&self, path: &str) -> bool {
        if self.upstream.is_none() {
            return false;
        }
        self.gw.live().public_paths.iter().any(|p| {
            if p.ends_with('/') {
                path.starts_with(p.as_str())
            } else {
                path == p
                    || path
                        .strip_prefix(p.as_str())
                        .is_some_and(|r| r.starts_with('/'))
            }
        })
    }

    async fn current_session(
        &self,
        session: &Session,
    ) -> Result<Option<Arc<LiveSession>>, crate::session::store::StoreError> {
        match cookie_value(session.req_header(), &self.cookies.session) {
            Some(value) => self.gw.sessions.by_cookie(&value).await,
            None => Ok(None),
        }
    }

    async fn login(&self, session: &mut Session, ctx: &mut PublicCtx) -> Result<()> {
        let return_to = match query_param(session.req_header(), "return_to") {
            None => "/".to_string(),
            Some(raw) => match safe_return_to(&raw) {
                Some(path) => path,
                None => {
                    return self
                        .problem(
                            session,
                            ctx,
                            400,
                            "invalid_return_to",
                            "return_to must be a path on this site, such as /app",
                        )
                        .await;
                }
            },
        };
        let scopes = self.gw.live().scopes.clone();
        match self.gw.sessions.begin_login(return_to, &scopes).await {
            Ok((authorize_url, login_cookie)) => {
                let cookie =
                    self.set_cookie(&self.cookies.login, &login_cookie, LOGIN_TTL.as_secs());
                redirect(session, &authorize_url, &[cookie], &ctx.request_id).await
            }
            Err(_) => self.store_unavailable(session, ctx).await,
        }
    }

    async fn callback(&self, session: &mut Session, ctx: &mut PublicCtx) -> Result<()> {
        let req = session.req_header();
        let login_cookie = cookie_value(req, &self.cookies.login);
        let state = query_param(req, "state");
        let code = query_param(req, "code");
        let error = query_param(req, "error");
        let result = self
            .gw
            .sessions
            .finish_login(
                login_cookie.as_deref(),
                state.as_deref(),
                code.as_deref(),
                error.as_deref(),
            )
            .await;
        let logins = &self.gw.metrics.logins;
        match result {
            Ok(new) => {
                logins.with_label_values(&["ok"]).inc();
                tracing::info!("login completed");
                let cookies = [
                    self.set_cookie(
                        &self.cookies.session,
                        &new.cookie_value,
                        self.gw.config.session.lifetime.as_secs(),
                    ),
                    self.clear_cookie(&self.cookies.login),
                ];
                redirect(session, &new.return_to, &cookies, &ctx.request_id).await
            }
            Err(LoginError::Denied) => {
                logins.with_label_values(&["denied"]).inc();
                let clear = [("set-cookie", self.clear_cookie(&self.cookies.login))];
                if wants_html(session.req_header()) {
                    let page = pages::access_denied(self.app_name());
                    respond_html(session, 403, &page, &clear).await
                } else {
                    let body = json!({
                        "error": "access_denied",
                        "message": "The user declined access at Spotify.",
                        "login_url": self.login_url(None),
                    });
                    respond_json(session, 403, &body, &clear).await
                }
            }
            Err(LoginError::Store(_)) => {
                logins.with_label_values(&["error"]).inc();
                self.store_unavailable(session, ctx).await
            }
            Err(LoginError::Token(TokenError::Unavailable(_))) => {
                logins.with_label_values(&["error"]).inc();
                self.problem(
                    session,
                    ctx,
                    503,
                    "spotify_unavailable",
                    "Spotify could not be reached to complete the login. Try signing in again \
                     in a moment.",
                )
                .await
            }
            Err(e) => {
                logins.with_label_values(&["invalid"]).inc();
                tracing::info!(reason = %e, "login callback refused");
                let code = match e {
                    LoginError::NoLoginCookie
                    | LoginError::StateMismatch
                    | LoginError::UnknownState => "invalid_state",
                    LoginError::CodeRefused | LoginError::MissingCode => "invalid_code",
                    _ => "login_failed",
                };
                self.problem(
                    session,
                    ctx,
                    400,
                    code,
                    &format!("Login failed: {e}. Please sign in again."),
                )
                .await
            }
        }
    }

    async fn logout(&self, session: &mut Session, ctx: &mut PublicCtx) -> Result<()> {
        match self.current_session(session).await {
            Ok(Some(s)) => {
                if self.gw.sessions.end(&s.key).await.is_err() {
                    return self.store_unavailable(session, ctx).await;
                }
                tracing::info!("signed out");
            }
            Ok(None) => {}
            Err(_) => return self.store_unavailable(session, ctx).await,
        }
        let clear = [("set-cookie", self.clear_cookie(&self.cookies.session))];
        if wants_html(session.req_header()) {
            let page = pages::signed_out(self.app_name());
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
                    "display_name": r.display_name,
                    "scopes": r.scopes,
                    "token_expires_at": r.access_expires_at_ms / 1000,
                    "session_expires_at": r.expires_at_ms / 1000,
                });
                respond_json(session, 200, &body, &[]).await
            }
            Ok(None) => {
                let stale = self.has_session_cookie(session);
                self.unauthenticated(session, ctx, "/", stale).await
            }
            Err(_) => self.store_unavailable(session, ctx).await,
        }
    }

    fn app_name(&self) -> &str {
        &self.gw.config.server.app_name
    }

    /// Whether the request carries a session cookie at all (valid or not).
    fn has_session_cookie(&self, session: &Session) -> bool {
        cookie_value(session.req_header(), &self.cookies.session).is_some()
    }

    /// No valid session: browsers go to the login, API callers get 401 JSON. A browser whose
    /// cookie no longer opens a session (`stale`: it expired, or the user signed out on
    /// another device) is told so instead of being bounced to Spotify without a word.
    async fn unauthenticated(
        &self,
        session: &mut Session,
        ctx: &mut PublicCtx,
        return_to: &str,
        stale: bool,
    ) -> Result<()> {
        if wants_html(session.req_header()) {
            let location = format!("/auth/login?return_to={}", urlencode(return_to));
            if stale {
                let page = pages::session_expired(self.app_name(), &location);
                let headers = [
                    ("set-cookie", self.clear_cookie(&self.cookies.session)),
                    ("x-request-id", ctx.request_id.clone()),
                ];
                return respond_html(session, 401, &page, &headers).await;
            }
            redirect(session, &location, &[], &ctx.request_id).await
        } else {
            let body = json!({
                "error": "unauthenticated",
                "message": "Sign in with Spotify first.",
                "login_url": self.login_url(Some(return_to)),
            });
            respond_json(
                session,
                401,
                &body,
                &[("x-request-id", ctx.request_id.clone())],
            )
            .await
        }
    }

    fn login_url(&self, return_to: Option<&str>) -> String {
        self.gw.login_url(return_to)
    }

    async fn store_unavailable(&self, session: &mut Session, ctx: &mut PublicCtx) -> Result<()> {
        self.problem(
            session,
            ctx,
            503,
            "store_unavailable",
            "The session store is unavailable. Try again shortly.",
        )
        .await
    }

    /// An error as a page for browsers, JSON for everyone else.
    async fn problem(
        &self,
        session: &mut Session,
        ctx: &mut PublicCtx,
        status: u16,
        code: &str,
        message: &str,
    ) -> Result<()> {
        let mut headers = vec![("x-request-id", ctx.request_id.clone())];
        if status == 503 {
            headers.push(("retry-after", "5".into()));
        }
        if wants_html(session.req_header()) {
            // Login failures can simply start over; anything else leads back to the app.
            let next = match code {
                "invalid_return_to"
                | "invalid_state"
                | "invalid_code"
                | "login_failed"
                | "spotify_unavailable" => pages::Next::SignIn,
                _ => pages::Next::Home,
            };
            let page = pages::error(self.app_name(), status, message, &ctx.request_id, next);
            respond_html(session, status, &page, &headers).await
        } else {
            let body = json!({ "error": code, "message": message });
            respond_json(session, status, &body, &headers).await
        }
    }
}

#[async_trait]
impl ProxyHttp for PublicProxy {
    type CTX = PublicCtx;

    fn new_ctx(&self) -> PublicCtx {
        PublicCtx {
            started: Some(Instant::now()),
            route: "unmatched",
            ..Default::default()
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut PublicCtx) -> Result<bool> {
        ctx.request_id = super::request_id(session);
        let path = session.req_header().uri.path().to_string();
        let method = session.req_header().method.clone();
        // TRACE would echo the request back to the browser with the identity headers and the
        // assertion the gateway adds; CONNECT would make the gateway a tunnel.
        if method == http::Method::TRACE || method == http::Method::CONNECT {
            self.problem(
                session,
                ctx,
                405,
                "method_not_allowed",
                "Method not allowed here.",
            )
            .await?;
            return Ok(true);
        }
        let auth_route = match path.as_str() {
            "/auth/login" => Some("/auth/login"),
            "/auth/callback" => Some("/auth/callback"),
            "/auth/logout" => Some("/auth/logout"),
            "/auth/userinfo" => Some("/auth/userinfo"),
            p if p.starts_with("/auth/") => Some("/auth/other"),
            _ => None,
        };
        if let Some(route) = auth_route {
            ctx.route = route;
            let allowed = match route {
                "/auth/logout" => method == http::Method::GET || method == http::Method::POST,
                _ => method == http::Method::GET || method == http::Method::HEAD,
            };
            if !allowed {
                self.problem(
                    session,
                    ctx,
                    405,
                    "method_not_allowed",
                    "Method not allowed here.",
                )
                .await?;
                return Ok(true);
            }
            match route {
                "/auth/login" => self.login(session, ctx).await?,
                "/auth/callback" => self.callback(session, ctx).await?,
                "/auth/logout" => self.logout(session, ctx).await?,
                "/auth/userinfo" => self.userinfo(session, ctx).await?,
                _ => {
                    self.problem(session, ctx, 404, "not_found", "No such gateway route.")
                        .await?
                }
            }
            return Ok(true);
        }

        if self.upstream.is_none() {
            ctx.route = "unmatched";
            self.problem(session, ctx, 404, "not_found", "No upstream is configured.")
                .await?;
            return Ok(true);
        }
        if self.is_public_path(&path) {
            ctx.route = "public_path";
            return Ok(false);
        }
        match self.current_session(session).await {
            Ok(Some(s)) => {
                ctx.route = "upstream";
                ctx.session = Some(s);
                Ok(false)
            }
            Ok(None) => {
                ctx.route = "unauthenticated";
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
                ctx.route = "upstream";
                self.store_unavailable(session, ctx).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut PublicCtx,
    ) -> Result<Box<HttpPeer>> {
        ctx.upstream_started = Some(Instant::now());
        match &self.upstream {
            Some(u) => u.peer().await,
            None => Err(Error::explain(
                ErrorType::InternalError,
                "no upstream configured",
            )),
        }
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut PublicCtx,
    ) -> Result<()> {
        // Identity comes from the gateway alone. Spellings with `_` go too: CGI/WSGI-style app
        // servers read `X_Spotify_User_Id` as `X-Spotify-User-Id`.
        let lookalikes: Vec<http::HeaderName> = upstream
            .headers
            .keys()
            .filter(|k| {
                k.as_str().contains('_')
                    && IDENTITY_HEADERS.contains(&k.as_str().replace('_', "-").as_str())
            })
            .cloned()
            .collect();
        for name in lookalikes {
            upstream.remove_header(&name);
        }
        for name in IDENTITY_HEADERS {
            upstream.remove_header(name);
        }
        strip_cookies(upstream, &[&self.cookies.session, &self.cookies.login])?;
        if let Some(s) = &ctx.session {
            let keys = self.gw.sessions.keys();
            s.with_record(|r| -> Result<()> {
                upstream.insert_header("x-spotify-user-id", r.user_id.as_str())?;
                upstream.insert_header("x-spotify-scopes", r.scopes.as_str())?;
                let assertion = crate::assertion::issue(keys, &r.user_id, &s.key);
                upstream.insert_header("x-gateway-user", assertion)
            })?;
        }
        upstream.insert_header("x-request-id", ctx.request_id.as_str())?;
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _upstream: &mut ResponseHeader,
        ctx: &mut PublicCtx,
    ) -> Result<()> {
        if let Some(at) = ctx.upstream_started {
            self.gw
                .metrics
                .upstream_duration
                .with_label_values(&[LISTENER])
                .observe(at.elapsed().as_secs_f64());
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut PublicCtx,
    ) -> FailToProxy {
        let code = super::error_status(e);
        if code > 0 {
            let message = if code == 502 {
                "The gateway could not reach the application. Try again shortly."
            } else {
                "The gateway could not complete the request."
            };
            if let Err(err) = self
                .problem(session, ctx, code, "upstream_error", message)
                .await
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

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut PublicCtx) {
        let access = super::Access {
            listener: LISTENER,
            route: ctx.route,
            request_id: &ctx.request_id,
            started: ctx.started,
            user: ctx.session.as_deref(),
        };
        access.record(&self.gw, session, e);
    }
}

/// A same-site relative path to send the browser back to, normalised; `None` for anything
/// that could leave the site (absolute URLs, `//host`, `/\host`, control characters).
pub fn safe_return_to(raw: &str) -> Option<String> {
    if raw.len() > MAX_RETURN_TO
        || !raw.starts_with('/')
        || raw.starts_with("//")
        || raw.contains('\\')
        || raw.chars().any(|c| c.is_control())
    {
        return None;
    }
    let base = Url::parse("http://gateway.invalid/").ok()?;
    let joined = base.join(raw).ok()?;
    if joined.origin() != base.origin() {
        return None;
    }
    let mut out = joined.path().to_string();
    if out.starts_with("//") {
        return None;
    }
    if let Some(q) = joined.query() {
        out.push('?');
        out.push_str(q);
    }
    Some(out)
}

fn wants_html(req: &RequestHeader) -> bool {
    req.headers
        .get_all("accept")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

fn query_param(req: &RequestHeader, name: &str) -> Option<String> {
    let query = req.uri.query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The value of cookie `name` from the request's `Cookie` headers.
fn cookie_value(req: &RequestHeader, name: &str) -> Option<String> {
    req.headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(|c| c.ok())
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}

/// Removes the gateway's own cookies before the request reaches the app: they are of no use
/// to it, and a leaked session cookie is a stolen session.
fn strip_cookies(req: &mut RequestHeader, names: &[&str]) -> Result<()> {
    let kept: Vec<String> = req
        .headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or_default().trim();
            !pair.is_empty() && !names.contains(&name)
        })
        .map(str::to_string)
        .collect();
    req.remove_header("cookie");
    if !kept.is_empty() {
        req.insert_header("cookie", kept.join("; "))?;
    }
    Ok(())
}

async fn redirect(
    session: &mut Session,
    location: &str,
    cookies: &[String],
    request_id: &str,
) -> Result<()> {
    let mut resp = ResponseHeader::build(302, Some(4 + cookies.len()))?;
    resp.insert_header("location", location)?;
    resp.insert_header("content-length", "0")?;
    resp.insert_header("cache-control", "no-store")?;
    resp.insert_header("x-request-id", request_id)?;
    for c in cookies {
        resp.append_header("set-cookie", c.as_str())?;
    }
    session.write_response_header(Box::new(resp), true).await
}

async fn respond_html(
    session: &mut Session,
    status: u16,
    page: &str,
    headers: &[(&'static str, String)],
) -> Result<()> {
    let body = Bytes::from(page.to_string());
    let mut resp = ResponseHeader::build(status, Some(5 + headers.len()))?;
    resp.insert_header("content-type", "text/html; charset=utf-8")?;
    resp.insert_header("content-length", body.len().to_string())?;
    resp.insert_header("cache-control", "no-store")?;
    resp.insert_header("x-content-type-options", "nosniff")?;
    resp.insert_header(
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    )?;
    for (name, value) in headers {
        resp.append_header(*name, value.as_str())?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_to_accepts_only_same_site_paths() {
        assert_eq!(safe_return_to("/").as_deref(), Some("/"));
        assert_eq!(safe_return_to("/app?x=1").as_deref(), Some("/app?x=1"));
        assert_eq!(safe_return_to("/a/../b").as_deref(), Some("/b"));
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https:evil.example",
            "evil.example",
            "/app\r\nSet-Cookie: x=1",
            "/\tfoo",
            "",
        ] {
            assert_eq!(safe_return_to(bad), None, "{bad:?}");
        }
        // Percent-encoded slashes stay a path on this site.
        assert_eq!(
            safe_return_to("/%2F%2Fevil.example").as_deref(),
            Some("/%2F%2Fevil.example")
        );
        // Non-ASCII is percent-encoded, so a header can carry it.
        assert_eq!(safe_return_to("/ü").as_deref(), Some("/%C3%BC"));
    }
}
