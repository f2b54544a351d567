//! Spotify's 429, read: how long it holds calls (`Retry-After`) and why (`QUOTA_EXCEEDED` in
//! its body, or the rolling rate limit). The hold starts when the header arrives
//! (`CoolDown::hold_here`); the reason is known once the small body is in, and then the
//! refusal is reported to every replica (`CoolDown::report`).

use std::io::Read as _;

use pingora::http::ResponseHeader;

use crate::quota::cool_down::hold_ms;
use crate::quota::Reason;

/// Spotify's error bodies are tiny; more than this is not read for the reason.
const PEEK_LIMIT: usize = 8 * 1024;

/// A 429 from Spotify whose body is still arriving.
pub struct Refusal {
    pub hold_ms: u64,
    gzip: bool,
    peek: Vec<u8>,
}

impl Refusal {
    pub fn new(upstream: &ResponseHeader) -> Refusal {
        let header = |name: &str| upstream.headers.get(name).and_then(|v| v.to_str().ok());
        Refusal {
            hold_ms: hold_ms(header("retry-after")),
            gzip: header("content-encoding").is_some_and(|e| e.trim().eq_ignore_ascii_case("gzip")),
            peek: Vec::new(),
        }
    }

    /// Keeps the start of the body (a copy: the body goes on to the caller unchanged).
    pub fn feed(&mut self, chunk: &[u8]) {
        let room = PEEK_LIMIT.saturating_sub(self.peek.len());
        self.peek.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }

    /// `QUOTA_EXCEEDED` when the body says so (`{"error":{"reason":"QUOTA_EXCEEDED"}}`),
    /// else the rate limit; a body that cannot be read counts as the rate limit.
    pub fn reason(&self) -> Reason {
        let mut plain = Vec::new();
        let body: &[u8] = if self.gzip {
            let inflater = flate2::read::GzDecoder::new(self.peek.as_slice());
            // Bounded: a hostile body cannot inflate past the peek's size.
            if inflater
                .take(PEEK_LIMIT as u64)
                .read_to_end(&mut plain)
                .is_err()
            {
                return Reason::RateLimited;
            }
            &plain
        } else {
            &self.peek
        };
        let quota = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .is_some_and(|v| v["error"]["reason"] == "QUOTA_EXCEEDED");
        if quota {
            Reason::QuotaExceeded
        } else {
            Reason::RateLimited
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    const QUOTA: &[u8] =
        br#"{"error":{"status":429,"message":"Too many requests","reason":"QUOTA_EXCEEDED"}}"#;

    fn refusal(encoding: Option<&str>, body: &[u8]) -> Refusal {
        let mut h = ResponseHeader::build(429, None).expect("header");
        h.insert_header("retry-after", "3600").expect("header");
        if let Some(e) = encoding {
            h.insert_header("content-encoding", e).expect("header");
        }
        let mut r = Refusal::new(&h);
        let (a, b) = body.split_at(body.len() / 2);
        r.feed(a);
        r.feed(b);
        r
    }

    #[test]
    fn the_reason_is_read_from_plain_and_gzip_bodies() {
        let r = refusal(None, QUOTA);
        assert_eq!(r.hold_ms, 3_600_000);
        assert_eq!(r.reason(), Reason::QuotaExceeded);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(QUOTA).expect("gzip");
        let gz = gz.finish().expect("gzip");
        assert_eq!(refusal(Some("gzip"), &gz).reason(), Reason::QuotaExceeded);
        let plain = br#"{"error":{"status":429,"message":"API rate limit exceeded"}}"#;
        assert_eq!(refusal(None, plain).reason(), Reason::RateLimited);
        assert_eq!(refusal(Some("gzip"), QUOTA).reason(), Reason::RateLimited);
    }
}
