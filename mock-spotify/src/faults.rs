//! Injected faults (`POST /__mock/fault`): what an armed fault is, how the control's
//! JSON arms one, how an arriving request takes one shot of it, and the delay and
//! error response (or hostile 200: `gzip_bomb`, `long_body`) the request then suffers.
//!
//! The store keeps one armed fault per [`Target`]; `App::arrive` takes the shot under
//! the same lock that counts and logs the request, so exactly `times` requests are hit.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use crate::bomb::Bomb;
use crate::errors::{api_error, oauth_error};
use crate::http::JSON_UTF8;
use crate::long_body::LongBody;

/// Marks a response whose body is streamed (`long_body`): nothing on its way out may collect
/// it (the Web API's entity tags and gzip pass it by).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Streamed;

/// Which of the mock's two services a request (or a fault) is for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Target {
    Token,
    Api,
}

impl Target {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Target::Token => "token",
            Target::Api => "api",
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Fault {
    pub status: Option<u16>,
    pub retry_after: Option<u64>,
    pub delay: Duration,
    pub remaining: u32,
    /// Only requests whose path starts with this suffer the fault.
    pub path_prefix: Option<String>,
    /// Answer 200 with this gzip bomb (API only).
    pub gzip_bomb: Option<Bomb>,
    /// Answer 200 with this long (or endless) body.
    pub long_body: Option<LongBody>,
}

/// What one request must suffer from an armed fault.
#[derive(Clone, Debug)]
pub(crate) struct FaultHit {
    pub status: Option<u16>,
    pub retry_after: Option<u64>,
    pub delay: Duration,
    pub gzip_bomb: Option<Bomb>,
    pub long_body: Option<LongBody>,
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
    /// The answer is a hostile upstream's, not Spotify's (`bomb`).
    gzip_bomb: Option<Bomb>,
    /// The same, and longer than any answer of Spotify's (`long_body`).
    long_body: Option<LongBody>,
}

/// Reads the `/__mock/fault` body: the target and the fault to arm it with (`None`
/// disarms it), or the message of the 400 to send.
pub(crate) fn parse_request(body: &[u8]) -> Result<(Target, Option<Fault>), String> {
    let req: FaultRequest = serde_json::from_slice(body).map_err(|err| {
        format!(
            "invalid fault JSON ({err}); expected {{\"target\":\"token\"|\"api\",\"status\":503,\"retry_after\":5,\"times\":1,\"delay_ms\":0,\"path_prefix\":\"/v1/search\",\"gzip_bomb\":{{\"inflated_bytes\":1073741824,\"noise_bytes\":0}},\"long_body\":{{\"bytes\":50331648}}}}"
        )
    })?;
    let target = match req.target.as_str() {
        "token" => Target::Token,
        "api" => Target::Api,
        other => {
            return Err(format!(
                "unknown target {other:?}; expected \"token\" or \"api\""
            ))
        }
    };
    if let Some(status) = req.status {
        if !(400..=599).contains(&status) {
            return Err("status must be between 400 and 599".to_string());
        }
    }
    let delay = Duration::from_millis(req.delay_ms.unwrap_or(0));
    if delay > Duration::from_secs(600) {
        return Err("delay_ms must be at most 600000".to_string());
    }
    if req
        .path_prefix
        .as_deref()
        .is_some_and(|p| !p.starts_with('/'))
    {
        return Err("path_prefix must start with /".to_string());
    }
    if let Some(bomb) = &req.gzip_bomb {
        if target != Target::Api || req.status.is_some() {
            return Err("gzip_bomb is a 200 from the Web API: target \"api\", no status".into());
        }
        bomb.check()?;
    }
    if let Some(long) = &req.long_body {
        if req.status.is_some() || req.gzip_bomb.is_some() {
            return Err("long_body is a 200 of its own: no status, no gzip_bomb".into());
        }
        long.check()?;
    }
    let times = req.times.unwrap_or(1);
    // times = 0 disarms the target, which is handy for cleanup.
    let fault = (times > 0).then_some(Fault {
        status: req.status,
        retry_after: req.retry_after,
        delay,
        remaining: times,
        path_prefix: req.path_prefix,
        gzip_bomb: req.gzip_bomb,
        long_body: req.long_body,
    });
    Ok((target, fault))
}

/// Takes one shot of the fault armed in `slot` for a request to `path`, disarming it
/// when that was the last.
pub(crate) fn take_shot(slot: &mut Option<Fault>, path: &str) -> Option<FaultHit> {
    let fault = slot.as_mut()?;
    // A fault aimed at other paths neither hits nor uses up a shot here.
    if !fault
        .path_prefix
        .as_deref()
        .is_none_or(|prefix| path.starts_with(prefix))
    {
        return None;
    }
    let hit = FaultHit {
        status: fault.status,
        retry_after: fault.retry_after,
        delay: fault.delay,
        gzip_bomb: fault.gzip_bomb,
        long_body: fault.long_body,
    };
    fault.remaining = fault.remaining.saturating_sub(1);
    if fault.remaining == 0 {
        *slot = None;
    }
    Some(hit)
}

/// Waits out the fault's delay; returns the error response if the fault has a status (or
/// the gzip bomb), `None` if the request should now be served normally.
pub(crate) async fn apply_fault(hit: Option<FaultHit>, target: Target) -> Option<Response> {
    let hit = hit?;
    if !hit.delay.is_zero() {
        tokio::time::sleep(hit.delay).await;
    }
    if let Some(bomb) = hit.gzip_bomb {
        return Some(gzip_bomb(bomb).await);
    }
    if let Some(long) = hit.long_body {
        let mut resp = Response::new(long.body());
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8));
        resp.extensions_mut().insert(Streamed);
        return Some(resp);
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
            oauth_error(status, error, description)
        }
        Target::Api => {
            let message = match code {
                429 => "API rate limit exceeded",
                500 => "Server error",
                _ => reason,
            };
            api_error(status, message)
        }
    };
    if let Some(secs) = hit.retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    Some(resp)
}

/// A 200 JSON answer with the bomb's gzip body. It is sent whatever the request's
/// `Accept-Encoding` says: a hostile upstream would not ask.
async fn gzip_bomb(bomb: Bomb) -> Response {
    let built = tokio::task::spawn_blocking(move || bomb.gzip_json()).await;
    let Ok(Ok(body)) = built else {
        return api_error(StatusCode::INTERNAL_SERVER_ERROR, "Server error");
    };
    let mut resp = Response::new(Body::from(body));
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8));
    headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    resp
}
