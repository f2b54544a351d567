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
    Rejected(Refusal),
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

/// A token request refused for good (RFC 6749 §5.2, `invalid_grant` apart, which is
/// `TokenError::InvalidGrant`), or one the gateway cannot make at all: a kind, so callers
/// branch on it and messages name the standard code, never Spotify's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `invalid_client`: the client id or secret is wrong.
    InvalidClient,
    /// `invalid_request`: a parameter is missing or malformed.
    InvalidRequest,
    /// `unauthorized_client`: the app may not use this grant.
    UnauthorizedClient,
    /// `unsupported_grant_type`.
    UnsupportedGrantType,
    /// `invalid_scope`.
    InvalidScope,
    /// No request was made: the client-credentials flow needs a client secret (PKCE has none).
    NoClientSecret,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::InvalidClient => "invalid_client",
            Refusal::InvalidRequest => "invalid_request",
            Refusal::UnauthorizedClient => "unauthorized_client",
            Refusal::UnsupportedGrantType => "unsupported_grant_type",
            Refusal::InvalidScope => "invalid_scope",
            Refusal::NoClientSecret => {
                "no client secret configured for the client-credentials flow"
            }
        })
    }
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
            BasicErrorResponseType::InvalidClient => TokenError::Rejected(Refusal::InvalidClient),
            BasicErrorResponseType::InvalidRequest => TokenError::Rejected(Refusal::InvalidRequest),
            BasicErrorResponseType::UnauthorizedClient => {
                TokenError::Rejected(Refusal::UnauthorizedClient)
            }
            BasicErrorResponseType::UnsupportedGrantType => {
                TokenError::Rejected(Refusal::UnsupportedGrantType)
            }
            BasicErrorResponseType::InvalidScope => TokenError::Rejected(Refusal::InvalidScope),
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

#[cfg(test)]
mod tests {
    use super::*;
    use oauth2::basic::BasicErrorResponse;

    fn answered(kind: BasicErrorResponseType) -> TokenError {
        let answer = BasicErrorResponse::new(kind, Some("Spotify's own words".into()), None);
        classify(RequestTokenError::ServerResponse(answer), "accounts", false)
    }

    #[test]
    fn refusals_are_kinds_named_by_their_rfc_6749_code() {
        use BasicErrorResponseType as T;
        let cases = [
            (T::InvalidClient, Refusal::InvalidClient, "invalid_client"),
            (
                T::InvalidRequest,
                Refusal::InvalidRequest,
                "invalid_request",
            ),
            (
                T::UnauthorizedClient,
                Refusal::UnauthorizedClient,
                "unauthorized_client",
            ),
            (
                T::UnsupportedGrantType,
                Refusal::UnsupportedGrantType,
                "unsupported_grant_type",
            ),
            (T::InvalidScope, Refusal::InvalidScope, "invalid_scope"),
        ];
        for (kind, refusal, code) in cases {
            let error = answered(kind);
            assert_eq!(error, TokenError::Rejected(refusal));
            let message = error.to_string();
            assert!(message.contains(code), "{message}");
            assert!(message.contains("spotify.client_id"), "{message}");
            assert!(
                !message.contains("own words"),
                "Spotify's text is never echoed"
            );
        }
        assert_eq!(answered(T::InvalidGrant), TokenError::InvalidGrant);
    }
}
