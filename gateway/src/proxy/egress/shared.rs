//! One answer from Spotify for several callers: which calls may share one (`key`: the same
//! token, target and negotiation headers; and what the answer's `Vary` names, as `Sent`
//! compares it), the copy of the answer taken as it streams to the first caller (`Capture`),
//! and writing a shared answer to another caller, with its `Cache-Status` (RFC 9211).
//!
//! The work itself is in `quota::flight` (coalescing) and `quota::cache`; this file is the
//! egress side of both: `EgressProxy`'s share bookkeeping (a fresh answer from the cache, a
//! copy of an identical call's, leading one, storing and handing on what Spotify said).

use std::sync::Arc;
use std::time::Instant;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use hmac::Mac;
use http::{HeaderMap, HeaderName};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, Session};

use super::identity::Credential;
use super::{EgressCtx, EgressProxy};
use crate::crypto::HmacSha256;
use crate::proxy::respond::Failure;
use crate::quota::vary::{self, Selecting};
use crate::quota::{answer, cache, flight, Answer, Followed, Joined, Lookup};

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

/// Keyed hashes of the access tokens calls carry: a share key names the token without
/// holding it (a key may be logged, or seen in a debugger). The key is random per process,
/// as the cache and the flights are.
pub struct TokenMacs(HmacSha256);

impl TokenMacs {
    pub fn new() -> TokenMacs {
        let key = rand::random::<[u8; 32]>();
        TokenMacs(<HmacSha256 as Mac>::new_from_slice(&key).expect("HMAC takes any key length"))
    }

    /// 128 bits of `HMAC-SHA256(key, token)`, URL-safe.
    pub fn of(&self, token: &str) -> String {
        let mut mac = self.0.clone();
        mac.update(token.as_bytes());
        URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..16])
    }
}

/// A GET that may share Spotify's answer with other calls.
pub struct ShareKey {
    /// The calls that may share one answer (`key`).
    pub key: String,
    /// The keyed hash of the call's token (`TokenMacs`).
    pub token: String,
}

/// The key under which a GET may share Spotify's answer, `None` for a call that must be its
/// own. One line each:
///
/// 1. whose token: `app`, or `user:{id}` (a user's answer never goes to anyone else; what
///    forgets a user's answers finds them by this line);
/// 2. which token: for a user, its keyed hash. Spotify answers by the token's scopes (no
///    `email` without `user-read-email`, the player refused without its scope), and two
///    sessions of one user can hold different scopes (another login, scopes narrowed at a
///    SIGHUP): an answer goes only to calls with the very token it was fetched with. Every
///    app token is the one client's client-credentials token, with no user and no scopes:
///    any app token's answer is the answer for all of them;
/// 3. the target;
/// 4. and 5. `Accept-Encoding` and `Accept-Language`, canonical (`quota::vary`): the answer
///    depends on them, and no call may get an encoding it did not accept.
pub fn key(session: &Session, credential: &Credential, macs: &TokenMacs) -> Option<ShareKey> {
    let req = session.req_header();
    if req.method != http::Method::GET || OWN_CALL.iter().any(|h| req.headers.contains_key(*h)) {
        return None;
    }
    let encoding = vary::accept_encoding(&req.headers)?;
    let language = vary::accept_language(&req.headers)?;
    let target = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let token = macs.of(credential.bearer());
    let (owner, which) = match credential {
        Credential::App(_) => ("app".to_string(), "any"),
        Credential::User { session, .. } => (format!("user:{}", session.user_id()), &*token),
    };
    let key = format!("{owner}\n{which}\n{target}\n{encoding}\n{language}");
    Some(ShareKey { key, token })
}

/// A call's request headers as Spotify sees them, for an answer's `Vary` (`quota::vary`).
pub struct Sent<'a> {
    headers: &'a HeaderMap,
    /// The keyed hash of the token the call carries (its `Authorization` at Spotify).
    token: &'a str,
}

impl<'a> Sent<'a> {
    pub fn new(headers: &'a HeaderMap, token: &'a str) -> Sent<'a> {
        Sent { headers, token }
    }
}

impl vary::Request for Sent<'_> {
    fn sent(&self, name: &HeaderName) -> vary::Sent {
        match name.as_str() {
            "authorization" => vary::Sent::Value(Some(self.token.to_string())),
            // Set anew for every call (`request_id`, `trace`).
            "x-request-id" | "traceparent" | "tracestate" => vary::Sent::PerCall,
            // The client's own (a header that does not travel to Spotify compares as the
            // client sent it: stricter than needed, never looser).
            _ => {
                let lines: Vec<String> = self
                    .headers
                    .get_all(name)
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string())
                    .collect();
                vary::Sent::Value((!lines.is_empty()).then(|| lines.join(", ")))
            }
        }
    }
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
    let mut resp = ResponseHeader::build(answer.status, Some(answer.header_count() + 3))?;
    for (name, value) in answer.headers() {
        resp.append_header(name, value)?;
    }
    resp.insert_header("content-length", answer.body_len().to_string())?;
    resp.insert_header("cache-status", cache_status)?;
    resp.insert_header("x-request-id", request_id)?;
    session.write_response_header(Box::new(resp), false).await?;
    let mut blocks = answer.body().peekable();
    if blocks.peek().is_none() {
        return session.write_response_body(None, true).await;
    }
    while let Some(block) = blocks.next() {
        let last = blocks.peek().is_none();
        session.write_response_body(Some(block), last).await?;
    }
    Ok(())
}

/// The copy of an answer as it goes to the first caller, made as it streams (each chunk
/// copied into the answer's own blocks at once: nothing else of it is held).
pub struct Capture {
    /// What the cache may do with it, from its headers.
    policy: Option<cache::Policy>,
    answer: answer::Builder,
}

impl Capture {
    /// The copy of the answer `header` begins, which the calls `selecting` admits may take.
    /// `None` if it cannot be held.
    pub fn new(header: &ResponseHeader, selecting: Selecting) -> Option<Capture> {
        let status = header.status.as_u16();
        let headers = &header.headers;
        let length = headers
            .get(http::header::CONTENT_LENGTH)
            .filter(|_| !headers.contains_key(http::header::TRANSFER_ENCODING))
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
            .filter(|&n| n <= SHARE_LIMIT);
        Some(Capture {
            policy: cache::policy(status, headers),
            answer: answer::Builder::new(status, headers, selecting, length)?,
        })
    }

    /// Adds a chunk; `false` once the answer is too large to share.
    pub fn feed(&mut self, chunk: &Bytes) -> bool {
        if self.answer.len() + chunk.len() > SHARE_LIMIT {
            return false;
        }
        self.answer.push(chunk);
        true
    }

    /// The answer, held compactly (`Answer`), and what the cache may do with it (`None`:
    /// not keep it).
    pub fn finish(self) -> (Arc<Answer>, Option<cache::Policy>) {
        (Arc::new(self.answer.finish()), self.policy)
    }
}

/// A GET whose answer may be shared (`key`), on its way to Spotify.
pub(super) struct Share {
    pub(super) key: String,
    /// The keyed hash of the call's token, as it was when the call came in.
    pub(super) token: String,
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
            .with_label_values(&[&self.gw.app.name, "hit"])
            .inc();
        ctx.span_cache("hit");
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
        ShareKey { key, token }: ShareKey,
        mut coalesce: bool,
    ) -> Result<bool> {
        let count = |result: &str| {
            self.gw
                .metrics
                .answer_cache
                .with_label_values(&[&self.gw.app.name, result])
                .inc()
        };
        loop {
            let sent = Sent::new(&session.req_header().headers, &token);
            let stale = match self.cache.lookup(&key, &sent) {
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
                                let sent = Sent::new(&session.req_header().headers, &token);
                                if !answer.selecting.admits(&sent) {
                                    // Spotify's answer depends on a header this call sends
                                    // otherwise (its `Vary`): this call makes its own.
                                    coalesce = false;
                                    continue;
                                }
                                count("coalesced");
                                ctx.span_cache("coalesced");
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
                ctx.span_cache("miss");
            }
            ctx.share = Some(Share {
                key,
                token,
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
                let (answer, policy) = capture.finish();
                if let Some(policy) = policy {
                    self.cache
                        .store(&share.key, Arc::clone(&answer), policy, arrived);
                    self.report_cache_size();
                }
                if let Some(lead) = share.lead.take() {
                    lead.land(answer);
                }
            }
        }
    }

    /// Starts the copy of Spotify's answer to a GET that may share it, noting which other
    /// calls may take it (its `Vary`, against this call's headers and the token it carried).
    pub(super) fn begin_capture(
        &self,
        session: &Session,
        upstream: &ResponseHeader,
        ctx: &mut EgressCtx,
    ) {
        let Some(share) = &mut ctx.share else {
            return;
        };
        // The token may have been refreshed since the call came in (a 401 and a retry).
        let token = match &ctx.credential {
            Some(credential) => self.macs.of(credential.bearer()),
            None => share.token.clone(),
        };
        let sent = Sent::new(&session.req_header().headers, &token);
        let selecting = Selecting::of(&upstream.headers, &sent);
        share.capture = Capture::new(upstream, selecting);
        if share.capture.is_none() {
            // Cannot be held: the followers make their own calls (the lead, dropped, lets
            // them go).
            share.lead = None;
        }
    }

    /// The cache's size on `/metrics`, after it changed.
    pub(super) fn report_cache_size(&self) {
        let (entries, bytes) = self.cache.size();
        let metrics = &self.gw.metrics;
        let app = [self.gw.app.name.as_str()];
        metrics
            .answer_cache_entries
            .with_label_values(&app)
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
        metrics
            .answer_cache_bytes
            .with_label_values(&app)
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
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
            .with_label_values(&[&self.gw.app.name, "revalidated"])
            .inc();
        ctx.span_cache("revalidated");
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
