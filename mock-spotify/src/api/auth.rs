//! Who a Web API call speaks for: the bearer token's user and scopes, and the 401s
//! (with their `WWW-Authenticate` challenge) for a missing, unknown or expired token.

use std::time::Instant;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

use crate::errors::api_error;
use crate::state::App;

/// Who a valid bearer token speaks for.
pub(super) struct Caller {
    /// The client id the token was issued to.
    pub client_id: String,
    pub user: Option<String>,
    pub scopes: Vec<String>,
}

impl Caller {
    pub(super) fn has(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

pub(super) fn unauthorized(message: &str) -> Response {
    let mut resp = api_error(StatusCode::UNAUTHORIZED, message);
    // RFC 6750 section 3: the error code is only for a token that was sent and is bad.
    let challenge = match message {
        "Invalid access token" | "The access token expired" => format!(
            "Bearer realm=\"spotify\", error=\"invalid_token\", error_description=\"{message}\""
        ),
        _ => "Bearer realm=\"spotify\"".to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    resp
}

pub(super) fn authenticate(app: &App, headers: &HeaderMap) -> Result<Caller, Response> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized("No token provided"));
    };
    let bad_scheme = || {
        api_error(
            StatusCode::BAD_REQUEST,
            "Only valid bearer authentication supported",
        )
    };
    let value = value.to_str().map_err(|_| bad_scheme())?;
    let (scheme, token) = value.trim().split_once(' ').ok_or_else(bad_scheme)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(bad_scheme());
    }
    let store = app.lock();
    let Some(grant) = store.access.get(token) else {
        return Err(unauthorized("Invalid access token"));
    };
    if grant.expires_at <= Instant::now() {
        return Err(unauthorized("The access token expired"));
    }
    Ok(Caller {
        client_id: grant.client_id.clone(),
        user: grant.user.clone(),
        scopes: grant.scopes.clone(),
    })
}
