//! One answer from Spotify for several callers: which calls may share one (`key`), the
//! copy of the answer taken as it streams to the first caller (`Capture`), and writing a
//! shared answer to another caller, with its `Cache-Status` (RFC 9211).
//!
//! The work itself is in `quota::flight` (coalescing) and `quota::cache`; this file is the
//! egress side of both.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

use super::identity::Credential;
use crate::quota::Answer;

/// The most of an answer held to share it; a larger one streams to its caller alone (and
/// its followers make their own call). Spotify's largest pages are a few hundred KiB.
pub const SHARE_LIMIT: usize = 2 << 20;

/// `Cache-Status`'s name for this cache (RFC 9211 §2).
const CACHE_NAME: &str = "spotify-gateway";

/// Request headers that make a call its caller's own: conditional and partial requests go
/// to Spotify as they are.
const OWN_CALL: [&str; 5] = [
    "if-none-match",
    "if-modified-since",
    "range",
    "if-range",
    "cache-control",
];

/// The key under which a GET may share Spotify's answer: whose token (the app's, or one
/// user's: a user's answer never goes to anyone else), the target, and the request headers
/// Spotify's answer depends on (`Accept-Encoding` as gzip or not, `Accept-Language`).
/// `None` for a call that must be its own.
pub fn key(session: &Session, credential: &Credential) -> Option<String> {
    let req = session.req_header();
    if req.method != http::Method::GET || OWN_CALL.iter().any(|h| req.headers.contains_key(*h)) {
        return None;
    }
    let scope = match credential {
        Credential::App(_) => "app".to_string(),
        Credential::User { session, .. } => format!("user:{}", session.user_id()),
    };
    let header = |name: &str| {
        req.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",")
    };
    let gzip = header("accept-encoding")
        .to_ascii_lowercase()
        .contains("gzip");
    let target = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    Some(format!(
        "{scope}\n{target}\n{gzip}\n{}",
        header("accept-language")
    ))
}

/// `Cache-Status` for an answer from the cache, fresh for `ttl` more seconds.
pub fn hit(ttl: u64) -> String {
    format!("{CACHE_NAME}; hit; ttl={ttl}")
}

/// `Cache-Status` for an answer Spotify confirmed with 304.
pub fn revalidated() -> String {
    format!("{CACHE_NAME}; fwd=stale; fwd-status=304")
}

/// `Cache-Status` for a copy of an identical call's answer.
pub fn collapsed() -> String {
    format!("{CACHE_NAME}; fwd=miss; collapsed")
}

/// `Cache-Status` for the caller whose call went to Spotify.
pub fn forwarded(stale: bool) -> String {
    let why = if stale { "stale" } else { "miss" };
    format!("{CACHE_NAME}; fwd={why}")
}

/// Writes a shared answer to this caller, with its own length, request id and
/// `Cache-Status`.
pub async fn write(
    session: &mut Session,
    answer: &Answer,
    cache_status: &str,
    request_id: &str,
) -> Result<()> {
    let mut resp = ResponseHeader::build(answer.status, Some(answer.headers.len() + 3))?;
    for (name, value) in &answer.headers {
        resp.append_header(name.clone(), value.clone())?;
    }
    resp.insert_header("content-length", answer.body.len().to_string())?;
    resp.insert_header("cache-status", cache_status)?;
    resp.insert_header("x-request-id", request_id)?;
    session.write_response_header(Box::new(resp), false).await?;
    session
        .write_response_body(Some(answer.body.clone()), true)
        .await
}

/// The copy of an answer as it goes to the first caller.
pub struct Capture {
    status: u16,
    headers: http::HeaderMap,
    body: BytesMut,
}

impl Capture {
    pub fn new(header: &ResponseHeader) -> Capture {
        Capture {
            status: header.status.as_u16(),
            headers: header.headers.clone(),
            body: BytesMut::new(),
        }
    }

    /// Adds a chunk; `false` once the answer is too large to share.
    pub fn feed(&mut self, chunk: &Bytes) -> bool {
        if self.body.len() + chunk.len() > SHARE_LIMIT {
            return false;
        }
        self.body.extend_from_slice(chunk);
        true
    }

    pub fn finish(self) -> Arc<Answer> {
        Arc::new(Answer::new(self.status, &self.headers, self.body.freeze()))
    }
}
