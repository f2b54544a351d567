//! The admin API on the admin listener (`admin/mod.rs` routes `/admin/` here), for operators and
//! `spotify-gateway users`:
//!
//! | method and path | answer |
//! |---|---|
//! | `GET /admin/v1/users?limit=&cursor=&user_id=` | a page of users with live sessions |
//! | `GET /admin/v1/users/{id}` | one user, 404 when the user has no live session |
//! | `DELETE /admin/v1/users/{id}` | every session of the user ends on every replica |
//!
//! Each acts on one app: `?app=NAME` names it, and must when the gateway serves several
//! (`[[apps]]`); a single-app gateway needs none. A user signed into two apps is two users
//! here, one per app.
//!
//! Off (404 for every `/admin/` path) unless `[admin] token_env`/`token_file` is set; then each
//! request needs `Authorization: Bearer <token>`, compared in constant time, or gets a 401.
//! Answers are JSON and never hold a token, a cookie or a session id (`session::users`).
//!
//! Every answer carries `X-Request-Id`: the request's own when well-formed (an operator's
//! ticket number), else a fresh one (`crate::telemetry::request_id`, the proxy listeners' rule). A
//! revocation's `user.revoked` event carries the same id.

use http::{Method, Response};
use pingora::http::RequestHeader;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use crate::server::apps::Apps;
use crate::server::state::Gateway;

/// Every admin API path starts with this.
pub const PREFIX: &str = "/admin/";
const USERS: &str = "/admin/v1/users";
/// Users per page when `?limit=` is absent, and the most a page may ask for: a page is one
/// index read plus a few store reads per user.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 500;

/// The bounded route label for metrics.
pub fn route_label(path: &str) -> &'static str {
    match path.strip_prefix(USERS) {
        Some("") => USERS,
        Some(rest) if rest.len() > 1 && rest.starts_with('/') && !rest[1..].contains('/') => {
            "/admin/v1/users/{id}"
        }
        _ => "/admin/unmatched",
    }
}

fn answer(status: u16, body: Value) -> Response<Vec<u8>> {
    let body = body.to_string().into_bytes();
    let mut builder = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .header("cache-control", "no-store");
    if status == 401 {
        builder = builder.header("www-authenticate", "Bearer realm=\"spotify-gateway admin\"");
    }
    builder
        .body(body)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

fn error(status: u16, code: &str, message: &str) -> Response<Vec<u8>> {
    answer(status, json!({ "error": code, "message": message }))
}

/// Whether the request carries the configured token (constant time in the token's bytes).
fn authorized(req: &RequestHeader, token: &crate::secret::Secret) -> bool {
    let Some(sent) = req
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    sent.trim()
        .as_bytes()
        .ct_eq(token.expose().as_bytes())
        .into()
}

/// A path segment or query value, percent-decoded (`+` is a plus here, not a space).
fn decode(raw: &str) -> String {
    let escaped = raw.replace('+', "%2B");
    url::form_urlencoded::parse(format!("v={escaped}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn query(req: &RequestHeader, name: &str) -> Option<String> {
    let q = req.uri.query()?;
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Answers one admin API request, with its request id.
pub async fn serve(apps: &Apps, req: &RequestHeader) -> Response<Vec<u8>> {
    let id = crate::telemetry::request_id::of(&req.headers);
    let mut resp = route(apps, req, &id).await;
    if let Ok(value) = http::HeaderValue::from_str(&id) {
        resp.headers_mut()
            .insert(crate::telemetry::request_id::HEADER, value);
    }
    resp
}

/// The app `?app=` names, or the only one; else the answer that says why not.
fn app_of<'a>(apps: &'a Apps, req: &RequestHeader) -> Result<&'a Gateway, Box<Response<Vec<u8>>>> {
    let refused = |status, code, message| Box::new(error(status, code, message));
    match query(req, "app") {
        Some(name) => apps.by_name(&name).map(|g| &**g).ok_or_else(|| {
            refused(
                404,
                "unknown_app",
                "no app of that name: see [[apps]] in the config",
            )
        }),
        None if apps.several() => Err(refused(
            400,
            "app_required",
            "this gateway serves several apps: name one with ?app=NAME",
        )),
        None => Ok(apps.first()),
    }
}

async fn route(apps: &Apps, req: &RequestHeader, request_id: &str) -> Response<Vec<u8>> {
    let Some(token) = apps.first().live().admin_token.clone() else {
        return error(
            404,
            "admin_api_off",
            "the admin API is off: set [admin] token_env or token_file",
        );
    };
    if !authorized(req, &token) {
        return error(
            401,
            "unauthorized",
            "send the admin token as Authorization: Bearer <token>",
        );
    }
    let path = req.uri.path();
    let user = match path.strip_prefix(USERS) {
        Some("") => None,
        Some(rest) if route_label(path) != "/admin/unmatched" => Some(decode(&rest[1..])),
        _ => return error(404, "not_found", "no such admin route"),
    };
    let gw = match app_of(apps, req) {
        Ok(gw) => gw,
        Err(refused) => return *refused,
    };
    match (&req.method, user) {
        (&Method::GET, None) => list(gw, req).await,
        (&Method::GET, Some(user)) => show(gw, &user).await,
        (&Method::DELETE, Some(user)) => revoke(gw, &user, request_id).await,
        _ => error(
            405,
            "method_not_allowed",
            "GET the list; GET or DELETE a user",
        ),
    }
}

fn store_failed(e: crate::store::StoreError) -> Response<Vec<u8>> {
    tracing::error!(error = %e, "admin API: the session store failed");
    error(
        503,
        "store_unavailable",
        "the session store did not answer; try again",
    )
}

async fn list(gw: &Gateway, req: &RequestHeader) -> Response<Vec<u8>> {
    let limit = match query(req, "limit").map(|l| l.parse::<usize>()) {
        None => DEFAULT_LIMIT,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => {
            return error(
                400,
                "bad_limit",
                &format!("limit must be a number from 1 to {MAX_LIMIT}"),
            )
        }
    };
    if let Some(user) = query(req, "user_id") {
        return match gw.sessions.user_summary(&user).await {
            Ok(found) => answer(
                200,
                json!({ "users": found.into_iter().collect::<Vec<_>>(), "next_cursor": null }),
            ),
            Err(e) => store_failed(e),
        };
    }
    let cursor = query(req, "cursor").filter(|c| !c.is_empty());
    match gw.sessions.users_page(cursor.as_deref(), limit).await {
        Ok(page) => answer(200, json!(page)),
        Err(e) => store_failed(e),
    }
}

async fn show(gw: &Gateway, user: &str) -> Response<Vec<u8>> {
    match gw.sessions.user_summary(user).await {
        Ok(Some(summary)) => answer(200, json!(summary)),
        Ok(None) => error(404, "no_such_user", "no live session of this user"),
        Err(e) => store_failed(e),
    }
}

async fn revoke(gw: &Gateway, user: &str, request_id: &str) -> Response<Vec<u8>> {
    match gw.sessions.revoke_user(user).await {
        Ok(ended) => {
            tracing::info!(
                request_id,
                sessions = ended,
                "admin API: a user was revoked"
            );
            gw.events.emit(
                crate::events::Event::new(crate::events::Kind::Revoked)
                    .user(user, None)
                    .sessions_ended(ended)
                    .request(request_id),
            );
            answer(200, json!({ "user_id": user, "sessions_ended": ended }))
        }
        Err(e) => store_failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_bounded_labels() {
        assert_eq!(route_label("/admin/v1/users"), USERS);
        assert_eq!(route_label("/admin/v1/users/alice"), "/admin/v1/users/{id}");
        assert_eq!(route_label("/admin/v1/users/"), "/admin/unmatched");
        assert_eq!(route_label("/admin/v1/users/a/b"), "/admin/unmatched");
        assert_eq!(route_label("/admin/v1/usersx"), "/admin/unmatched");
    }

    #[test]
    fn ids_are_percent_decoded_with_plus_kept() {
        assert_eq!(decode("a%20b+c"), "a b+c");
        assert_eq!(decode("alice"), "alice");
    }
}
