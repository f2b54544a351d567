//! The `/__mock/*` test controls: counters, the request log, faults to arm, token
//! expiry and revocation, aging a user's authorization, the app's mode and its registered
//! users, reset. Their errors are the mock's own `{"error":"..."}`,
//! not one of Spotify's shapes, since no Spotify client ever sees them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use serde_json::json;

use crate::catalog;
use crate::config::AppMode;
use crate::faults::{self, Target};
use crate::http::{json_response, Params, JSON};
use crate::state::App;

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
            "connections": app.wire.json(),
            "quota": app.quota.json(),
            "quota_by_client": app
                .quotas()
                .into_iter()
                .map(|(id, _, q)| (id.to_string(), q.json()))
                .collect::<serde_json::Map<_, _>>(),
        }),
        JSON,
    )
}

pub(crate) async fn fault(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let (target, fault) = match faults::parse_request(&body) {
        Ok(parsed) => parsed,
        Err(message) => return control_error(StatusCode::BAD_REQUEST, &message),
    };
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

/// Longest aging `/__mock/age` takes in one call: ten years is past every deadline.
const MAX_AGE_DAYS: u64 = 3650;
/// Spotify's limit for a development-mode app's registered users.
const MAX_REGISTERED_USERS: usize = 5;

/// `POST /__mock/age?user=ID&days=N`: the user's authorization is N days older, as if that
/// time had passed for it: its refresh tokens near (or pass) their six-month end, and its
/// access tokens (one hour) have expired when N > 0. A later login is a new authorization.
pub(crate) async fn age(State(app): State<Arc<App>>, uri: Uri) -> Response {
    let user = match user_param(&uri) {
        Ok(user) => user,
        Err(resp) => return resp,
    };
    let params = Params::parse(uri.query().unwrap_or("").as_bytes());
    let days = match params.get("days").map(str::parse::<u64>) {
        Some(Ok(days)) if days <= MAX_AGE_DAYS => days,
        _ => {
            return control_error(
                StatusCode::BAD_REQUEST,
                &format!("days must be a whole number from 0 to {MAX_AGE_DAYS}"),
            )
        }
    };
    let expired = if days > 0 {
        expire_access(&app, user.id)
    } else {
        0
    };
    let by = Duration::from_secs(days * 24 * 3600);
    let mut store = app.lock();
    let mut aged = 0;
    let mut oldest = Duration::ZERO;
    for token in store.refresh.values_mut().filter(|t| t.user == user.id) {
        token.authorized.aged += by;
        oldest = oldest.max(token.authorized.age());
        aged += 1;
    }
    json_response(
        StatusCode::OK,
        &json!({
            "ok": true,
            "aged_refresh_tokens": aged,
            "expired_access_tokens": expired,
            "authorization_age_days": oldest.as_secs() / (24 * 3600),
        }),
        JSON,
    )
}

fn app_state(app: &App) -> serde_json::Value {
    let store = app.lock();
    json!({ "mode": store.mode.name(), "registered": store.registered })
}

/// `GET /__mock/app`: the app's mode and the users registered in its dashboard.
pub(crate) async fn app(State(app): State<Arc<App>>) -> Response {
    json_response(StatusCode::OK, &app_state(&app), JSON)
}

/// `POST /__mock/app` with `{"mode":"development"|"extended_quota"}` and/or
/// `{"registered":["alice",...]}` (at most 5 known users). Either is checked before anything
/// changes.
pub(crate) async fn set_app(State(app): State<Arc<App>>, body: Bytes) -> Response {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Change {
        mode: Option<String>,
        registered: Option<Vec<String>>,
    }
    let change: Change = match serde_json::from_slice(&body) {
        Ok(change) => change,
        Err(e) => return control_error(StatusCode::BAD_REQUEST, &format!("bad JSON: {e}")),
    };
    let mode = match change.mode.as_deref().map(|m| (m, AppMode::parse(m))) {
        None => None,
        Some((_, Some(mode))) => Some(mode),
        Some((other, None)) => {
            return control_error(
                StatusCode::BAD_REQUEST,
                &format!("unknown mode {other:?}; use \"development\" or \"extended_quota\""),
            )
        }
    };
    if let Some(users) = &change.registered {
        if let Some(unknown) = users.iter().find(|u| catalog::user(u).is_none()) {
            return control_error(StatusCode::NOT_FOUND, &format!("unknown user {unknown:?}"));
        }
        if users.len() > MAX_REGISTERED_USERS {
            return control_error(
                StatusCode::BAD_REQUEST,
                &format!("a development-mode app has at most {MAX_REGISTERED_USERS} users"),
            );
        }
    }
    {
        let mut store = app.lock();
        if let Some(mode) = mode {
            store.mode = mode;
        }
        if let Some(users) = change.registered {
            store.registered = users.into_iter().collect();
        }
    }
    json_response(StatusCode::OK, &app_state(&app), JSON)
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
    app.wire.reset();
    for (_, _, quota) in app.quotas() {
        quota.reset();
    }
    app.cache_headers.reset();
    ok()
}

/// `POST /__mock/cache`: the `max-age` of catalogue and search answers (`api::caching`).
pub(crate) async fn cache(State(app): State<Arc<App>>, body: Bytes) -> Response {
    match app.cache_headers.control(&body) {
        Ok(()) => ok(),
        Err(message) => control_error(StatusCode::BAD_REQUEST, &message),
    }
}

/// `POST /__mock/quota`: the rolling window's budget and `QUOTA_EXCEEDED` (`quota`), for
/// every client, or for the one `"client_id"` names, or for every client of the developer
/// account `"account"` names.
pub(crate) async fn quota(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let mut control: serde_json::Map<String, serde_json::Value> =
        match serde_json::from_slice(&body) {
            Ok(c) => c,
            Err(e) => return control_error(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")),
        };
    let take = |c: &mut serde_json::Map<_, _>, key: &str| match c.remove(key) {
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        None => Ok(None),
        Some(_) => Err(format!("{key} must be a string")),
    };
    let (client, account) = match (
        take(&mut control, "client_id"),
        take(&mut control, "account"),
    ) {
        (Ok(c), Ok(a)) => (c, a),
        (Err(m), _) | (_, Err(m)) => return control_error(StatusCode::BAD_REQUEST, &m),
    };
    let rest = serde_json::Value::Object(control).to_string();
    let chosen: Vec<_> = app
        .quotas()
        .into_iter()
        .filter(|(id, acct, _)| {
            client.as_deref().is_none_or(|c| c == *id)
                && account.as_deref().is_none_or(|a| a == *acct)
        })
        .collect();
    if chosen.is_empty() {
        return control_error(StatusCode::NOT_FOUND, "no such client_id or account");
    }
    for (_, _, quota) in chosen {
        if let Err(message) = quota.control(rest.as_bytes()) {
            return control_error(StatusCode::BAD_REQUEST, &message);
        }
    }
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
                "client_id": r.client_id,
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
