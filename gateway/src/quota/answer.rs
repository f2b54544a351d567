//! An answer from Spotify held whole in memory, to hand to more than one caller: the callers
//! of a coalesced call (`flight`), and later ones from the cache (`cache`).

use bytes::Bytes;
use http::HeaderMap;

/// Spotify's status, headers and body, as the first caller got them (paging links already
/// pointing at the gateway). Framing and per-call headers are not kept: each caller's
/// answer gets its own length and request id.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Headers that describe one transfer or one call, not the answer.
const NOT_KEPT: [&str; 6] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "x-request-id",
    "cache-status",
];

impl Answer {
    pub fn new(status: u16, headers: &HeaderMap, body: Bytes) -> Answer {
        let mut kept = headers.clone();
        for name in NOT_KEPT {
            kept.remove(name);
        }
        Answer {
            status,
            headers: kept,
            body,
        }
    }

    /// Roughly what it costs to hold, in bytes.
    pub fn weight(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum();
        self.body.len() + headers + 64
    }
}
