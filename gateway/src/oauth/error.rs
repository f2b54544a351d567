//! Why the token endpoint gave no token, as data: the RFC 6749 §5.2 error kinds callers branch
//! on, never the message text (Spotify changed its messages in 2026).

use oauth2::basic::BasicErrorResponseType;
use oauth2::RequestTokenError;

use super::http_client::HttpError;
use crate::net::outbound::ProxyProblem;
use crate::net::tls_roots::{self, TlsReason};

/// Why the token endpoint did not give a token. Kinds, never message text, drive behaviour.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// RFC 6749 §5.2 `invalid_grant`: the code or refresh token is dead. Ends a session.
    #[error("Spotify refused the grant (invalid_grant)")]
    InvalidGrant,
    /// The request itself was refused (`invalid_client`, `unauthorized_client`...): a
    /// configuration problem, not worth retrying.
    #[error(
        "Spotify's token endpoint refused the request ({0}); check spotify.client_id and the \
         client secret"
    )]
    Rejected(String),
    /// 5xx, timeout, connection refused or an unreadable answer: retry later, delete nothing.
    #[error("Spotify's token endpoint is unavailable ({0})")]
    Unavailable(String),
    /// The TLS connection failed (an untrusted CA, an expired certificate, the wrong name):
    /// retrying cannot help until the operator acts, so it is not `Unavailable`.
    #[error("TLS to {host} failed: {reason}")]
    Tls { host: String, reason: TlsReason },
    /// No tunnel through the outbound proxy (`spotify.proxy_url`): the operator must act.
    #[error("{}", .0.message())]
    Proxy(ProxyProblem),
}

/// `host` is the token endpoint's, for a TLS failure; `proxied`: the request went through
/// `spotify.proxy_url`.
pub(super) fn classify(
    e: RequestTokenError<HttpError, oauth2::basic::BasicErrorResponse>,
    host: &str,
    proxied: bool,
) -> TokenError {
    match e {
        RequestTokenError::ServerResponse(r) => match r.error() {
            BasicErrorResponseType::InvalidGrant => TokenError::InvalidGrant,
            BasicErrorResponseType::Extension(other) => TokenError::Unavailable(other.clone()),
            kind => TokenError::Rejected(kind.as_ref().to_string()),
        },
        RequestTokenError::Request(e) => transport(&e, host, proxied),
        // The body is not echoed: it could hold a token.
        RequestTokenError::Parse(_, _) => {
            TokenError::Unavailable("unreadable answer from the token endpoint".into())
        }
        RequestTokenError::Other(msg) => TokenError::Unavailable(msg),
    }
}

/// A request that got no answer from `host` that can be read: a TLS failure, no tunnel
/// through the proxy, or unavailable (an answer past the cap is unreadable, as a malformed
/// one is).
pub(super) fn transport(e: &HttpError, host: &str, proxied: bool) -> TokenError {
    let e = match e {
        HttpError::Transport(e) => e,
        HttpError::TooLong => return TokenError::Unavailable(e.to_string()),
    };
    let chain = tls_roots::error_chain(e);
    if let Some(reason) = tls_roots::classify(&chain, false) {
        return TokenError::Tls {
            host: host.to_string(),
            reason,
        };
    }
    if proxied {
        if let Some(problem) = ProxyProblem::of_reqwest(e, &chain) {
            problem.report("accounts", &chain);
            return TokenError::Proxy(problem);
        }
    }
    TokenError::Unavailable(chain)
}
