//! One answer from Spotify for several callers: which calls may share one (`key`), the
//! copy of the answer taken as it streams to the first caller (`Capture`), and writing a
//! shared answer to another caller, with its `Cache-Status` (RFC 9211).
//!
//! The work itself is in `quota::flight` (coalescing) and `quota::cache`; this file is the
//! egress side of both: `EgressProxy`'s share bookkeeping (a fresh answer from the cache, a
//! copy of an identical call's, leading one, storing and handing on what Spotify said).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

use std::time::Instant;

use pingora::proxy::FailToProxy;

use super::identity::Credential;
use super::{EgressCtx, EgressProxy};
use crate::proxy::respond::Failure;
use crate::quota::{cache, flight, Answer, Followed, Joined, Lookup};

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

/// A GET whose answer may be shared (`key`), on its way to Spotify.
pub(super) struct Share {
    pub(super) key: String,
    /// Followers wait for this call's answer.
    pub(super) lead: Option<flight::Lead>,
    /// The stale cached answer this call revalidates.
    pub(super) stale: Option<Arc<cache::Entry>>,
    /// The answer, copied as it streams to this caller.
    pub(super) capture: Option<Capture>,
}

impl EgressProxy {
    /// A fresh answer from the cache.
    pub(super) async fn cache_hit(
        &self,
        session: &mut Session,
        ctx: &EgressCtx,
        entry: &cache::Entry,
    ) -> Result<bool> {
        self.gw
            .metrics
            .answer_cache
            .with_label_values(&["hit"])
            .inc();
        let ttl = entry.ttl().unwrap_or_default().as_secs();
        write(session, &entry.answer, &hit(ttl), &ctx.req.id).await?;
        Ok(true)
    }

    /// A GET that may share an answer: a fresh one from the cache, or a copy of an identical
    /// call's in flight (`Ok(true)`: answered); else this call goes to Spotify (`Ok(false)`),
    /// leading the identical calls that come meanwhile, and revalidating a stale cached
    /// answer when there is one.
    pub(super) async fn shared_answer(
        &self,
        session: &mut Session,
        ctx: &mut EgressCtx,
        key: String,
        mut coalesce: bool,
    ) -> Result<bool> {
        let count = |result: &str| {
            self.gw
                .metrics
                .answer_cache
                .with_label_values(&[result])
                .inc()
        };
        loop {
            let stale = match self.cache.lookup(&key) {
                Lookup::Fresh(entry) => return self.cache_hit(session, ctx, &entry).await,
                Lookup::Stale(entry) => Some(entry),
                Lookup::Miss => None,
            };
            let lead = if coalesce {
                match self.flights.join(&key) {
                    Joined::Lead(lead) => Some(lead),
                    Joined::Follow(follower) => {
                        let left = ctx
                            .deadline
                            .map(|d| d.saturating_duration_since(Instant::now()))
                            .unwrap_or_default();
                        match tokio::time::timeout(left, follower.answer()).await {
                            Ok(Followed::Answer(answer)) => {
                                count("coalesced");
                                let status = collapsed();
                                write(session, &answer, &status, &ctx.req.id).await?;
                                return Ok(true);
                            }
                            // The leader went away without an answer: lead, or follow anew.
                            Ok(Followed::Gone) => continue,
                            // No room for the leader: this call asks the budget alone, within
                            // its own wait (from its arrival), rather than follow newer leaders.
                            Ok(Followed::Refused) => {
                                coalesce = false;
                                continue;
                            }
                            Err(_) => {
                                let failure = Failure::DeadlinePassed(
                                    "An identical call to Spotify did not answer within this \
                                     call's deadline (egress.total_timeout).",
                                );
                                self.answer(session, ctx, failure).await?;
                                return Ok(true);
                            }
                        }
                    }
                }
            } else {
                None
            };
            if stale.is_none() {
                count("miss");
            }
            ctx.share = Some(Share {
                key,
                lead,
                stale,
                capture: None,
            });
            return Ok(false);
        }
    }

    /// Copies the answer as it streams to its caller; at its end, stores it in the cache
    /// when Spotify allows and hands it to the followers.
    pub(super) fn capture(
        &self,
        body: &Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut EgressCtx,
    ) {
        // Not stored if the user was purged since the call arrived (`quota::purge`).
        let arrived = ctx.arrived.unwrap_or_else(Instant::now);
        let Some(share) = &mut ctx.share else {
            return;
        };
        let Some(capture) = &mut share.capture else {
            return;
        };
        if let Some(chunk) = body {
            if !capture.feed(chunk) {
                // Too large to share: the followers make their own calls.
                share.capture = None;
                share.lead = None;
                return;
            }
        }
        if end_of_stream {
            if let Some(capture) = share.capture.take() {
                let answer = capture.finish();
                if let Some(policy) = cache::policy(answer.status, &answer.headers) {
                    self.cache
                        .store(&share.key, Arc::clone(&answer), policy, arrived);
                }
                if let Some(lead) = share.lead.take() {
                    lead.land(answer);
                }
            }
        }
    }

    /// The cached answer Spotify confirmed (304), to this caller and its followers.
    pub(super) async fn write_revalidated(
        &self,
        session: &mut Session,
        ctx: &mut EgressCtx,
        answer: Arc<Answer>,
    ) -> FailToProxy {
        self.gw
            .metrics
            .answer_cache
            .with_label_values(&["revalidated"])
            .inc();
        if let Some(lead) = ctx.share.as_mut().and_then(|s| s.lead.take()) {
            lead.land(Arc::clone(&answer));
        }
        ctx.served_revalidated = true;
        // Written from `fail_to_proxy`, after which pingora may not keep the client's
        // connection (a client that sent its next call on it met a reset in CI): say so in
        // the answer, as every answer written here does.
        session.set_keepalive(None);
        if let Err(e) = write(session, &answer, &revalidated(), &ctx.req.id).await {
            tracing::debug!(error = %e, "could not write the revalidated answer");
        }
        FailToProxy {
            error_code: answer.status,
            can_reuse_downstream: false,
        }
    }
}
