//! The client spans of the calls a login makes (`telemetry::traces`): the token request (the
//! code exchange, a refresh) and `GET /v1/me`, children of the span current where they are
//! made. Named by method and fixed path; no code, token or profile field is ever an attribute.

use opentelemetry::KeyValue;
use url::Url;

use super::error::TokenError;
use crate::telemetry::traces::{self, ChildSpan};

/// A token request's span (`grant`: the OAuth grant type), when a traced request makes it.
pub(super) fn token_request(url: &Url, grant: &'static str) -> Option<ChildSpan> {
    let span = traces::client_of_current("POST /api/token")?;
    span.set(traces::server_of(url));
    span.set([
        KeyValue::new("http.request.method", "POST"),
        KeyValue::new("oauth.grant_type", grant),
    ]);
    Some(span)
}

/// Ends a token request's span: an error of a bounded kind when it failed.
pub(super) fn token_answer<T>(span: Option<ChildSpan>, result: &Result<T, TokenError>) {
    if let Some(span) = span {
        span.end(result.as_ref().err().map(kind));
    }
}

/// `GET /v1/me`'s span.
pub(super) fn profile_request(url: &Url) -> Option<ChildSpan> {
    let span = traces::client_of_current("GET /v1/me")?;
    span.set(traces::server_of(url));
    span.set([
        KeyValue::new("http.request.method", "GET"),
        KeyValue::new("url.template", "/v1/me"),
    ]);
    Some(span)
}

/// A token error as a bounded kind (`error.type`).
fn kind(e: &TokenError) -> &'static str {
    match e {
        TokenError::InvalidGrant => "invalid_grant",
        TokenError::Rejected(_) => "rejected",
        TokenError::Unavailable(_) => "unavailable",
        TokenError::Tls { .. } => "tls",
        TokenError::Proxy(_) => "proxy",
    }
}
