//! Spotify's two error bodies, built in one place so every endpoint and every
//! injected fault answers in the same shape:
//!
//! - the Web API's `{"error":{"status":N,"message":"..."}}` (player errors add a
//!   `reason`), served as `application/json; charset=utf-8`;
//! - the accounts service's RFC 6749 section 5.2
//!   `{"error":"invalid_grant","error_description":"..."}`, served as
//!   `application/json`.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use crate::http::{json_response, JSON, JSON_UTF8};

/// Spotify's regular Web API error object.
pub(crate) fn api_error(status: StatusCode, message: &str) -> Response {
    web_api(
        status,
        json!({ "status": status.as_u16(), "message": message }),
    )
}

/// A Web API error with a `reason` next to the message, as Spotify's player errors
/// carry (`NO_ACTIVE_DEVICE`, `PREMIUM_REQUIRED`, ...).
pub(crate) fn player_error(status: StatusCode, message: &str, reason: &str) -> Response {
    web_api(
        status,
        json!({ "status": status.as_u16(), "message": message, "reason": reason }),
    )
}

fn web_api(status: StatusCode, error: Value) -> Response {
    json_response(status, &json!({ "error": error }), JSON_UTF8)
}

pub(crate) fn bad_request(message: &str) -> Response {
    api_error(StatusCode::BAD_REQUEST, message)
}

pub(crate) fn forbidden(message: &str) -> Response {
    api_error(StatusCode::FORBIDDEN, message)
}

/// The 404 for an ID that names nothing (an unknown path gets "Service not found").
pub(crate) fn resource_not_found() -> Response {
    api_error(StatusCode::NOT_FOUND, "Resource not found")
}

/// The accounts service's OAuth error. Without cache headers: the token endpoint adds
/// those itself, while an injected fault answers without them.
pub(crate) fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    json_response(
        status,
        &json!({ "error": error, "error_description": description }),
        JSON,
    )
}
