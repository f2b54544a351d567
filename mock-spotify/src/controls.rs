//! The `/__mock/*` test controls, and how an armed fault turns into a response.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use crate::state::{App, Fault, FaultHit, Target};
use crate::{catalog, json_response, Params};

const JSON: &str = "application/json";

fn control_error(status: StatusCode, message: &str) -> Response {
    json_response(status, &json!({ "error": message }), JSON)
}

fn ok() -> Response {
    json_response(StatusCode::OK, &json!({ "ok": true }), JSON)
}

pub(crate) async fn stats(State(app): State<Arc<App>>) -> Response {
    let stats = app.lock().stats.clone();
    json_response(
        StatusCode::OK,
        &json!({
            "token_requests": {
                "client_credentials": stats.client_credentials,
                "authorization_code": stats.authorization_code,
                "refresh_token": stats.refresh_token,
            },
            "api_requests": stats.api_requests,
        }),
        JSON,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRequest {
    target: String,
    status: Option<u16>,
    retry_after: Option<u64>,
    times: Option<u32>,
    delay_ms: Option<u64>,
    path_prefix: Option<String>,
}

pub(crate) async fn fault(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let req: FaultRequest = match serde_json::from_slice(&body) {
        Ok(req) => req,
        Err(err) => {
            return control_error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "invalid fault JSON ({err}); expected {{\"target\":\"token\"|\"api\",\"status\":503,\"retry_after\":5,\"times\":1,\"delay_ms\":0,\"path_prefix\":\"/v1/search\"}}"
                ),
            )
        }
    };
    let target = match req.target.as_str() {
        "token" => Target::Token,
        "api" => Target::Api,
        other => {
            return control_error(
                StatusCode::BAD_REQUEST,
                &format!("unknown target {other:?}; expected \"token\" or \"api\""),
            )
        }
    };
    if let Some(status) = req.status {
        if !(400..=599).contains(&status) {
            return control_error(
                StatusCode::BAD_REQUEST,
                "status must be between 400 and 599",
            );
        }
    }
    let delay = Duration::from_millis(req.delay_ms.unwrap_or(0));
    if delay > Duration::from_secs(600) {
        return control_error(StatusCode::BAD_REQUEST, "delay_ms must be at most 600000");
    }
    if req
        .path_prefix
        .as_deref()
        .is_some_and(|p| !p.starts_with('/'))
    {
        return control_error(StatusCode::BAD_REQUEST, "path_prefix must start with /");
    }
    let times = req.times.unwrap_or(1);
    // times = 0 disarms the target, which is handy for cleanup.
    let fault = (times > 0).then_some(Fault {
        status: req.status,
        retry_after: req.retry_after,
        delay,
        remaining: times,
        path_prefix: req.path_prefix,
    });
    let mut store = app.lock();
    match target {
        Target::Token => store.token_fault = fault,
        Target::Api => store.api_fault = fault,
    }
    ok()
}

/// The user named by `?user=`, or the error response to send.
fn user_param(uri: &Uri) -> Result<&'static catalog::User, Response> {
    let params = Params::parse(uri.query().unwrap_or("").as_bytes());
    let Some(id) = params.get("user") else {
        return Err(control_error(StatusCode::BAD_REQUEST, "missing ?user=ID"));
    };
    catalog::user(id)
        .ok_or_else(|| control_error(StatusCode::NOT_FOUND, &format!("unknown user {id:?}")))
}

pub(crate) async fn expire(State(app): State<Arc<App>>, uri: Uri) -> Response {
    let user = match user_param(&uri) {
        Ok(user) => user,
        Err(resp) => return resp,
    };
    let expired = expire_access(&app, user.id);
    json_response(
        StatusCode::OK,
        &json!({ "ok": true, "expired_access_tokens": expired }),
        JSON,
    )
}

pub(crate) async fn revoke(State(app): State<Arc<App>>, uri: Uri) -> Response {
    let user = match user_param(&uri) {
        Ok(user) => user,
        Err(resp) => return resp,
    };
    let expired = expire_access(&app, user.id);
    let mut store = app.lock();
    let before = store.refresh.len();
    store.refresh.retain(|_, t| t.user != user.id);
    let revoked = before - store.refresh.len();
    // Pending codes die too: the user has withdrawn the app's access.
    store.codes.retain(|_, c| c.user != user.id);
    json_response(
        StatusCode::OK,
        &json!({ "ok": true, "expired_access_tokens": expired, "revoked_refresh_tokens": revoked }),
        JSON,
    )
}

fn expire_access(app: &App, user: &str) -> usize {
    let now = Instant::now();
    let mut store = app.lock();
    let mut count = 0;
    for token in store.access.values_mut() {
        if token.user.as_deref() == Some(user) && token.expires_at > now {
            token.expires_at = now;
            count += 1;
        }
    }
    count
}

/// Clears faults, counters and the request log. Tokens, playlist contents and
/// playback stay as they are: a reset between test steps must not undo what the
/// Web API did (a real Spotify account keeps its playlists too).
pub(crate) async fn reset(State(app): State<Arc<App>>) -> Response {
    let mut store = app.lock();
    store.token_fault = None;
    store.api_fault = None;
    store.stats = Default::default();
    store.log.clear();
    ok()
}

pub(crate) async fn requests(State(app): State<Arc<App>>) -> Response {
    let log: Vec<serde_json::Value> = app
        .lock()
        .log
        .iter()
        .map(|r| {
            json!({
                "target": r.target.name(),
                "method": r.method,
                "path": r.path,
                "headers": r.headers,
                "body": r.body,
                "body_bytes": r.body_bytes,
            })
        })
        .collect();
    json_response(StatusCode::OK, &serde_json::Value::Array(log), JSON)
}

/// Waits out the fault's delay; returns the error response if the fault has a status,
/// `None` if the request should now be served normally.
pub(crate) async fn apply_fault(hit: Option<FaultHit>, target: Target) -> Option<Response> {
    let hit = hit?;
    if !hit.delay.is_zero() {
        tokio::time::sleep(hit.delay).await;
    }
    let code = hit.status?;
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let reason = status.canonical_reason().unwrap_or("Error");
    let mut resp = match target {
        Target::Token => {
            let (error, description) = match code {
                429 => ("temporarily_unavailable", "Too many requests"),
                503 => ("server_error", "Service unavailable"),
                500..=599 => ("server_error", reason),
                _ => ("invalid_request", reason),
            };
            json_response(
                status,
                &json!({ "error": error, "error_description": description }),
                JSON,
            )
        }
        Target::Api => {
            let message = match code {
                429 => "API rate limit exceeded",
                500 => "Server error",
                _ => reason,
            };
            crate::api::error(status, message)
        }
    };
    if let Some(secs) = hit.retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    Some(resp)
}
