//! Answers the gateway writes itself, and the one mapping from a failure on the request path
//! to its status, headers and body.
//!
//! Why this file is over 600 lines: the invariant is that a `Failure` becomes an answer in exactly
//! one place (status, `Retry-After`, code, both error shapes, and `of_token_error`); the writers
//! below are the only code that uses that mapping. Splitting the mapping would reopen the door to a
//! second one.
//!
//! Both listeners describe what went wrong as a [`Failure`] (a kind, plus the facts the answer
//! needs). The egress listener answers in the Web API's error shape
//! (`{"error":{"status":..,"message":..}}`), so client libraries parse the gateway's own
//! answers too; the public listener answers `{"error":"<code>","message":..}` to API callers
//! and an error page to browsers. Status, `Retry-After`, `Allow` and the code are decided here
//! only.

use std::borrow::Cow;

use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, Session};
use serde_json::json;

use crate::net::outbound::ProxyProblem;
use crate::net::tls_roots::TlsReason;
use crate::oauth::TokenError;
use crate::proxy::pages;

/// How long a client should wait before trying again after the store did not answer.
const STORE_RETRY_AFTER_SECS: u64 = 5;
/// The same after an upstream (Spotify's Web API, the app) or the outbound proxy could not be
/// reached or did not answer in time: long enough for a restart or a network blip to pass,
/// short enough that a client does not give up on a service that is back.
const UNREACHABLE_RETRY_AFTER_SECS: u64 = 5;

/// What went wrong, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The request cannot be served as sent (400), e.g. an unsafe request target.
    BadRequest(Cow<'static, str>),
    /// `return_to` is not a path on this site (400).
    InvalidReturnTo,
    /// A login callback that cannot complete (400); `code` is `invalid_state`,
    /// `invalid_code` or `login_failed`. The page offers to sign in again.
    LoginFailed { code: &'static str, message: String },
    /// No such route (404).
    NotFound(&'static str),
    /// The method is not served here (405), with the `Allow` header when given.
    MethodNotAllowed {
        message: Cow<'static, str>,
        allow: Option<&'static str>,
    },
    /// The call names no identity the gateway accepts (401).
    Unauthorized(&'static str),
    /// Refused whoever asks (403); `code` says why (forward-auth: `untrusted_proxy`,
    /// `host_not_allowed`).
    Forbidden {
        code: &'static str,
        message: &'static str,
    },
    /// The user's session has ended: sign in again (401, `SESSION_ENDED`, with the login URL).
    SessionEnded,
    /// The session reached its re-consent deadline: Spotify's refresh token has ended, so the
    /// user must sign in and consent again (401, `REAUTH_REQUIRED`, with the login URL).
    ReauthRequired,
    /// Spotify's rate limit is cooling down (429 with `Retry-After`); `quota_exceeded` says
    /// Spotify's reason was `QUOTA_EXCEEDED`, and the answer says so too.
    RateLimited {
        retry_after_secs: u64,
        quota_exceeded: bool,
    },
    /// The session store did not answer, or not within the call's deadline (503 with
    /// `Retry-After`, the store named as the cause).
    StoreUnavailable,
    /// Spotify's accounts service could not be reached (503 with `Retry-After`).
    SpotifyUnavailable {
        message: &'static str,
        retry_after_secs: u64,
    },
    /// Spotify refused the gateway's own credentials: the operator must fix the config (502).
    CredentialsRefused(&'static str),
    /// The call's deadline passed while the gateway waited for something it needs (504).
    DeadlinePassed(&'static str),
    /// A TLS connection to Spotify (`host`, its token endpoint or its Web API) failed for
    /// `reason` (502): the operator must act, retrying does not help.
    UpstreamTls { host: String, reason: TlsReason },
    /// No tunnel to Spotify through the outbound proxy (502): the operator must act.
    OutboundProxy(ProxyProblem),
    /// The upstream (Spotify's Web API or the internal app) failed; `status` is 502, 504 or
    /// whatever pingora decided.
    Upstream { status: u16, message: &'static str },
}

/// Which token request failed: its answer differs only in the words and in when to retry.
#[derive(Clone, Copy, Debug)]
pub enum TokenRequest {
    /// A user's token refreshed for an egress call.
    Refresh,
    /// The app's client-credentials token for an egress call that names no user.
    AppToken,
    /// The code exchange at the end of a login.
    Login,
}

impl Failure {
    /// The answer to a failed token request: **the** mapping of [`TokenError`], for a refresh,
    /// the app token and a login alike. A TLS failure and a refused tunnel name what the
    /// operator must fix; `Unavailable` says to retry; a refused grant or client (for a login,
    /// `LoginError` tells a refused code apart before this) says to check the credentials.
    pub fn of_token_error(error: TokenError, request: TokenRequest) -> Failure {
        match error {
            TokenError::Tls { host, reason } => Failure::UpstreamTls { host, reason },
            TokenError::Proxy(problem) => Failure::OutboundProxy(problem),
            TokenError::Unavailable(_) => Failure::SpotifyUnavailable {
                message: match request {
                    TokenRequest::Refresh => {
                        "Spotify's token endpoint is unavailable; the user's token could not be \
                         refreshed. The session is kept: retry shortly."
                    }
                    TokenRequest::AppToken => {
                        "Spotify's token endpoint is unavailable; the gateway could not get an \
                         app token. Retry shortly."
                    }
                    TokenRequest::Login => {
                        "Spotify could not be reached to complete the login. Try signing in \
                         again in a moment."
                    }
                },
                retry_after_secs: match request {
                    TokenRequest::AppToken => 1,
                    TokenRequest::Refresh | TokenRequest::Login => 5,
                },
            },
            TokenError::InvalidGrant | TokenError::Rejected(_) => {
                Failure::CredentialsRefused(match request {
                    TokenRequest::Refresh => {
                        "Spotify refused the gateway's refresh request; the operator must check \
                         spotify.client_id and the client secret"
                    }
                    TokenRequest::AppToken | TokenRequest::Login => {
                        "Spotify refused the gateway's client credentials; the operator must \
                         check spotify.client_id and the client secret."
                    }
                })
            }
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Failure::BadRequest(_) | Failure::InvalidReturnTo | Failure::LoginFailed { .. } => 400,
            Failure::NotFound(_) => 404,
            Failure::Forbidden { .. } => 403,
            Failure::MethodNotAllowed { .. } => 405,
            Failure::Unauthorized(_) | Failure::SessionEnded | Failure::ReauthRequired => 401,
            Failure::RateLimited { .. } => 429,
            Failure::StoreUnavailable | Failure::SpotifyUnavailable { .. } => 503,
            Failure::CredentialsRefused(_)
            | Failure::UpstreamTls { .. }
            | Failure::OutboundProxy(_) => 502,
            Failure::DeadlinePassed(_) => 504,
            Failure::Upstream { status, .. } => *status,
        }
    }

    /// The public listener's error code.
    pub fn code(&self) -> &'static str {
        match self {
            Failure::BadRequest(_) => "bad_request",
            Failure::InvalidReturnTo => "invalid_return_to",
            Failure::LoginFailed { code, .. } => code,
            Failure::NotFound(_) => "not_found",
            Failure::Forbidden { code, .. } => code,
            Failure::MethodNotAllowed { .. } => "method_not_allowed",
            Failure::Unauthorized(_) => "unauthenticated",
            Failure::SessionEnded => "session_ended",
            Failure::ReauthRequired => "reauth_required",
            Failure::RateLimited { .. } => "rate_limited",
            Failure::StoreUnavailable => "store_unavailable",
            Failure::SpotifyUnavailable { .. } => "spotify_unavailable",
            Failure::CredentialsRefused(_) => "spotify_refused_credentials",
            Failure::UpstreamTls { .. } => "spotify_tls_failed",
            Failure::OutboundProxy(_) => "outbound_proxy_failed",
            Failure::DeadlinePassed(_) => "deadline_passed",
            Failure::Upstream { .. } => "upstream_error",
        }
    }

    pub fn message(&self) -> Cow<'_, str> {
        match self {
            Failure::BadRequest(m) | Failure::MethodNotAllowed { message: m, .. } => {
                Cow::Borrowed(m)
            }
            Failure::InvalidReturnTo => "return_to must be a path on this site, such as /app, or \
                                         (with forward-auth) a URL on a host in \
                                         forward_auth.allowed_hosts"
                .into(),
            Failure::LoginFailed { message, .. } => Cow::Borrowed(message),
            Failure::NotFound(m)
            | Failure::Forbidden { message: m, .. }
            | Failure::Unauthorized(m)
            | Failure::CredentialsRefused(m)
            | Failure::DeadlinePassed(m)
            | Failure::SpotifyUnavailable { message: m, .. }
            | Failure::Upstream { message: m, .. } => Cow::Borrowed(m),
            Failure::OutboundProxy(p) => Cow::Borrowed(p.message()),
            Failure::SessionEnded => "The user's session has ended (signed out, expired or \
                                      access revoked); the user must sign in again"
                .into(),
            Failure::ReauthRequired => "The user's Spotify authorization has reached its end \
                                        (Spotify ends refresh tokens six months after the \
                                        user's consent); the user must sign in again"
                .into(),
            Failure::RateLimited {
                quota_exceeded: true,
                ..
            } => "Too many requests".into(),
            Failure::RateLimited { .. } => "API rate limit exceeded".into(),
            Failure::StoreUnavailable => "The session store is unavailable (down, unreachable or \
                                          failing over) and this answer needed it; the session \
                                          is kept: retry shortly. The operator can see the \
                                          store's state in /readyz, the store_errors_total \
                                          metric and the gateway's log"
                .into(),
            Failure::UpstreamTls { host, reason } => format!(
                "The gateway could not connect to {host} over TLS: {reason}. The operator must \
                 act (see the gateway's log); retrying will not help."
            )
            .into(),
        }
    }

    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Failure::RateLimited {
                retry_after_secs, ..
            }
            | Failure::SpotifyUnavailable {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            Failure::StoreUnavailable => Some(STORE_RETRY_AFTER_SECS),
            Failure::DeadlinePassed(_) => Some(1),
            Failure::OutboundProxy(ProxyProblem::Unreachable)
            | Failure::Upstream {
                status: 502..=504, ..
            } => Some(UNREACHABLE_RETRY_AFTER_SECS),
            // Refused credentials and certificates: retrying cannot help until the operator
            // acts, so no time is named.
            _ => None,
        }
    }

    /// Where a browser's error page leads: a failed login can simply start over; anything
    /// else leads back to the app.
    fn next(&self) -> pages::Next {
        match self {
            Failure::InvalidReturnTo
            | Failure::LoginFailed { .. }
            | Failure::ReauthRequired
            | Failure::SpotifyUnavailable { .. } => pages::Next::SignIn,
            _ => pages::Next::Home,
        }
    }

    /// The headers every answer to this failure carries.
    fn headers(&self, request_id: &str) -> Vec<(&'static str, String)> {
        let mut headers = vec![("x-request-id", request_id.to_string())];
        if let Some(secs) = self.retry_after() {
            headers.push(("retry-after", secs.to_string()));
        }
        if let Failure::MethodNotAllowed {
            allow: Some(allow), ..
        } = self
        {
            headers.push(("allow", (*allow).to_string()));
        }
        headers
    }

    /// The Web API's error shape; a session that ended also says how to sign in again.
    pub fn spotify_body(&self, login_url: impl FnOnce() -> String) -> serde_json::Value {
        let mut body = spotify_error(self.status(), &self.message());
        let reason = match self {
            Failure::SessionEnded => Some("SESSION_ENDED"),
            Failure::ReauthRequired => Some("REAUTH_REQUIRED"),
            _ => None,
        };
        if let Some(reason) = reason {
            body["error"]["reason"] = reason.into();
            body["error"]["login_url"] = login_url().into();
        }
        if let Failure::RateLimited {
            quota_exceeded: true,
            ..
        } = self
        {
            body["error"]["reason"] = "QUOTA_EXCEEDED".into();
        }
        body
    }

    /// Writes the failure in the Web API's shape (the egress listener).
    pub async fn write_spotify(
        &self,
        session: &mut Session,
        request_id: &str,
        login_url: impl FnOnce() -> String,
    ) -> Result<()> {
        let body = self.spotify_body(login_url);
        respond_json(session, self.status(), &body, &self.headers(request_id)).await
    }

    /// Writes the failure as a page for browsers, JSON for everyone else (the public
    /// listener).
    pub async fn write_problem(
        &self,
        session: &mut Session,
        request_id: &str,
        app_name: &str,
    ) -> Result<()> {
        let status = self.status();
        let headers = self.headers(request_id);
        if wants_html(session.req_header()) {
            let page = pages::error(app_name, status, &self.message(), request_id, self.next());
            respond_html(session, status, &page, &headers).await
        } else {
            let body = json!({ "error": self.code(), "message": self.message() });
            respond_json(session, status, &body, &headers).await
        }
    }

    /// A request that failed inside pingora (connect, read, timeout), as pingora's default
    /// `fail_to_proxy` would classify it; `None` when the client connection is already gone
    /// and nothing can be written. `what` names the upstream in the message.
    pub fn from_proxy_error(e: &Error, upstream: Upstream) -> Option<Failure> {
        let timed_out = matches!(
            e.etype(),
            ErrorType::ConnectTimedout
                | ErrorType::ReadTimedout
                | ErrorType::WriteTimedout
                | ErrorType::TLSHandshakeTimedout
        );
        let status = match error_status(e) {
            0 => return None,
            _ if timed_out && upstream == Upstream::Spotify => 504,
            code => code,
        };
        let message = match (upstream, status) {
            (Upstream::Spotify, 504) => "Spotify's Web API did not answer in time",
            (Upstream::Spotify, 502) => "The gateway could not reach Spotify's Web API",
            (Upstream::App, 502) => {
                "The gateway could not reach the application. Try again shortly."
            }
            (Upstream::Spotify, _) => "The gateway could not complete the request",
            (Upstream::App, _) => "The gateway could not complete the request.",
        };
        Some(Failure::Upstream { status, message })
    }
}

/// The end of a `fail_to_proxy` hook: writes `failure` (if the client can still be answered)
/// and tells pingora the status.
pub async fn fail_to_proxy(
    failure: Option<Failure>,
    write: impl AsyncFnOnce(Failure) -> Result<()>,
) -> FailToProxy {
    let error_code = failure.as_ref().map(Failure::status).unwrap_or(0);
    if let Some(failure) = failure {
        if let Err(err) = write(failure).await {
            tracing::debug!(error = %err, "could not write the error answer");
        }
    }
    FailToProxy {
        error_code,
        can_reuse_downstream: false,
    }
}

/// Which upstream a proxy error came from, for its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upstream {
    Spotify,
    App,
}

/// The status for a request that failed inside pingora, as its default `fail_to_proxy` picks
/// it; 0 when the client connection is already gone.
pub fn error_status(e: &Error) -> u16 {
    match e.etype() {
        ErrorType::HTTPStatus(code) => *code,
        _ => match e.esource() {
            ErrorSource::Upstream => 502,
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    }
}

/// Spotify's Web API error shape.
pub fn spotify_error(status: u16, message: &str) -> serde_json::Value {
    json!({ "error": { "status": status, "message": message } })
}

/// Whether the client is a browser that wants a page rather than JSON.
pub fn wants_html(req: &RequestHeader) -> bool {
    req.headers
        .get_all("accept")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

/// Writes a complete local JSON answer.
pub async fn respond_json(
    session: &mut Session,
    status: u16,
    body: &serde_json::Value,
    headers: &[(&'static str, String)],
) -> Result<()> {
    let body = Bytes::from(body.to_string());
    let kind = [("content-type", "application/json; charset=utf-8")];
    write_local(session, status, &kind, body, headers).await
}

/// Writes one of the gateway's pages, with a policy that lets it load nothing from anywhere.
pub async fn respond_html(
    session: &mut Session,
    status: u16,
    page: &str,
    headers: &[(&'static str, String)],
) -> Result<()> {
    let body = Bytes::from(page.to_string());
    let kind = [
        ("content-type", "text/html; charset=utf-8"),
        ("x-content-type-options", "nosniff"),
        (
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    ];
    write_local(session, status, &kind, body, headers).await
}

/// A whole answer written by the gateway: never cached, with its length. Nothing at all
/// once an answer has begun (a failure mid-body): pingora would keep the header sent and
/// append this body to the one under way, ending it cleanly, so the client could not tell
/// the answer was cut off. Left alone, pingora aborts it instead.
async fn write_local(
    session: &mut Session,
    status: u16,
    kind: &[(&'static str, &'static str)],
    body: Bytes,
    headers: &[(&'static str, String)],
) -> Result<()> {
    if session
        .response_written()
        .is_some_and(|sent| !sent.status.is_informational())
    {
        return Ok(());
    }
    let mut resp = ResponseHeader::build(status, Some(2 + kind.len() + headers.len()))?;
    for (name, value) in kind {
        resp.insert_header(*name, *value)?;
    }
    resp.insert_header("content-length", body.len().to_string())?;
    resp.insert_header("cache-control", "no-store")?;
    for (name, value) in headers {
        resp.append_header(*name, value.as_str())?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}

/// A 302 to `location`, setting `cookies`.
pub async fn redirect(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_maps_to_its_status_and_retry_after() {
        let cases: &[(Failure, u16, Option<u64>)] = &[
            (Failure::BadRequest("x".into()), 400, None),
            (Failure::InvalidReturnTo, 400, None),
            (Failure::NotFound("x"), 404, None),
            (
                Failure::Forbidden {
                    code: "host_not_allowed",
                    message: "x",
                },
                403,
                None,
            ),
            (Failure::Unauthorized("x"), 401, None),
            (Failure::SessionEnded, 401, None),
            (
                Failure::RateLimited {
                    retry_after_secs: 7,
                    quota_exceeded: false,
                },
                429,
                Some(7),
            ),
            (Failure::StoreUnavailable, 503, Some(5)),
            (
                Failure::SpotifyUnavailable {
                    message: "x",
                    retry_after_secs: 1,
                },
                503,
                Some(1),
            ),
            (Failure::CredentialsRefused("x"), 502, None),
            (
                Failure::OutboundProxy(ProxyProblem::Unreachable),
                502,
                Some(5),
            ),
            (
                Failure::OutboundProxy(ProxyProblem::CredentialsRefused),
                502,
                None,
            ),
            (
                Failure::Upstream {
                    status: 502,
                    message: "x",
                },
                502,
                Some(5),
            ),
            (
                Failure::Upstream {
                    status: 504,
                    message: "x",
                },
                504,
                Some(5),
            ),
            (
                Failure::Upstream {
                    status: 500,
                    message: "x",
                },
                500,
                None,
            ),
            (
                Failure::UpstreamTls {
                    host: "api.spotify.com".into(),
                    reason: TlsReason::Untrusted,
                },
                502,
                None,
            ),
        ];
        for (failure, status, retry_after) in cases {
            assert_eq!(failure.status(), *status, "{failure:?}");
            assert_eq!(failure.retry_after(), *retry_after, "{failure:?}");
        }
    }

    #[test]
    fn an_ended_session_says_how_to_sign_in_again_in_spotifys_shape() {
        let body = Failure::SessionEnded.spotify_body(|| "http://gw/auth/login".into());
        assert_eq!(body["error"]["status"], 401);
        assert_eq!(body["error"]["reason"], "SESSION_ENDED");
        assert_eq!(body["error"]["login_url"], "http://gw/auth/login");
        let body = Failure::ReauthRequired.spotify_body(|| "http://gw/auth/login".into());
        assert_eq!(body["error"]["status"], 401);
        assert_eq!(body["error"]["reason"], "REAUTH_REQUIRED");
        assert_eq!(body["error"]["login_url"], "http://gw/auth/login");
        let other = Failure::StoreUnavailable.spotify_body(|| unreachable!("not asked"));
        assert!(other["error"].get("login_url").is_none());
    }

    #[test]
    fn a_tls_failure_names_the_host_and_the_cause() {
        let f = Failure::UpstreamTls {
            host: "api.spotify.com".into(),
            reason: TlsReason::Expired,
        };
        let body = f.spotify_body(|| unreachable!("not asked"));
        assert_eq!(body["error"]["status"], 502);
        let message = body["error"]["message"].as_str().expect("message");
        assert!(message.contains("api.spotify.com"), "{message}");
        assert!(message.contains("certificate expired"), "{message}");
    }

    #[test]
    fn method_not_allowed_names_the_allowed_methods() {
        let f = Failure::MethodNotAllowed {
            message: "no".into(),
            allow: Some("GET"),
        };
        let headers = f.headers("rid");
        assert!(headers.contains(&("allow", "GET".into())), "{headers:?}");
        assert!(headers.contains(&("x-request-id", "rid".into())));
    }
}
