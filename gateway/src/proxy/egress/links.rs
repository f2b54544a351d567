//! Rewrites Spotify's absolute API links (`next`, `previous`, `href`, ...) in JSON bodies to
//! the egress listener's public base URL, so client libraries that follow them stay on the
//! gateway.
//!
//! Streaming: each chunk is rewritten as it arrives. Only a tail that may be the start of a
//! link split across two chunks is held back (shorter than the link prefix); memory stays
//! bounded whatever the body size. A gzip body is decompressed on the way (the caller then
//! sends it uncompressed to the local client), within a bound (`inflate`): past it, `feed`
//! fails and the caller fails the answer (502 if its header has not gone out yet, else cut
//! off mid-body). Passing the answer on untouched instead is not possible: `prepare` has
//! already made its header say 200, chunked, no `Content-Encoding`, and it has usually gone
//! to the client, so the rest can only be the decoded body or nothing. Failing also keeps a
//! bomb from reaching the client at all.
//!
//! Same length: when the new prefix is not longer than Spotify's (the usual sidecar case,
//! `http://127.0.0.1:8081` for `https://api.spotify.com`) and the body is not compressed, each
//! shortened link is made up for with spaces right after the JSON string that holds it
//! (`"next":"http://127.0.0.1:8081/v1/..."  ,`): insignificant whitespace to any JSON
//! parser, and the body keeps the length Spotify announced, so the answer keeps its
//! `Content-Length` instead of becoming chunked.

use std::sync::Arc;

use bytes::Bytes;
use memchr::memmem::Finder;

pub use super::inflate::BodyError;
use super::inflate::{Inflater, Limits};

/// What to replace by what; built once per listener.
pub struct LinkMap {
    finder: Finder<'static>,
    to: Vec<u8>,
}

impl LinkMap {
    /// Replaces every `from` (e.g. `https://api.spotify.com/v1/`) by `to`.
    pub fn new(from: &str, to: &str) -> Arc<LinkMap> {
        Arc::new(LinkMap {
            finder: Finder::new(from.as_bytes()).into_owned(),
            to: to.as_bytes().to_vec(),
        })
    }

    /// Whether rewriting changes nothing.
    pub fn is_identity(&self) -> bool {
        self.finder.needle() == self.to.as_slice()
    }

    fn pattern_len(&self) -> usize {
        self.finder.needle().len()
    }

    /// Length of the longest proper prefix of `from` that `data` ends with: bytes that may
    /// be the start of a link the next chunk completes.
    fn partial_tail(&self, data: &[u8]) -> usize {
        let needle = self.finder.needle();
        let longest = needle.len().saturating_sub(1).min(data.len());
        (1..=longest)
            .rev()
            .find(|&n| data[data.len() - n..] == needle[..n])
            .unwrap_or(0)
    }
}

pub struct LinkRewriter {
    map: Arc<LinkMap>,
    /// Tail of the previous chunk that may start a split link.
    carry: Vec<u8>,
    gunzip: Option<Inflater>,
    /// Same-length mode (see the module docs).
    keep_length: bool,
    padding: Padding,
}

/// Spaces owed for shortened links (same-length mode), paid after the end of the JSON string
/// that holds the last one.
#[derive(Default)]
struct Padding {
    owed: usize,
    /// The last byte scanned for the string's end was a backslash.
    escaped: bool,
}

impl LinkRewriter {
    /// A rewriter for one answer; `gzip` when its body is gzip, inflated within the bound for
    /// Spotify's answers (`inflate`).
    pub fn new(map: Arc<LinkMap>, gzip: bool) -> LinkRewriter {
        LinkRewriter::with_limits(map, gzip, Limits::SPOTIFY)
    }

    fn with_limits(map: Arc<LinkMap>, gzip: bool, limits: Limits) -> LinkRewriter {
        let keep_length = !gzip && map.to.len() <= map.pattern_len();
        LinkRewriter {
            map,
            carry: Vec::new(),
            gunzip: gzip.then(|| Inflater::new(limits)),
            keep_length,
            padding: Padding::default(),
        }
    }

    /// Whether the rewritten body has exactly the length of the original.
    pub fn keeps_length(&self) -> bool {
        self.keep_length
    }

    /// Rewrites the next chunk; `last` flushes everything held back. Fails on a gzip body
    /// that is corrupt or inflates past the bound; the answer must then be cut off.
    pub fn feed(&mut self, chunk: Bytes, last: bool) -> Result<Bytes, BodyError> {
        let data = match &mut self.gunzip {
            Some(inflater) => {
                let mut data = std::mem::take(&mut self.carry);
                inflater.inflate(&chunk, last, &mut data)?;
                Bytes::from(data)
            }
            None if self.carry.is_empty() => chunk,
            None => {
                let mut data = std::mem::take(&mut self.carry);
                data.extend_from_slice(&chunk);
                Bytes::from(data)
            }
        };

        let map = &self.map;
        let mut matches = map.finder.find_iter(&data).peekable();
        let tail_from = if last {
            data.len()
        } else {
            data.len() - map.partial_tail(&data)
        };
        if matches.peek().is_none() && self.padding.owed == 0 {
            // Nothing to change: pass the bytes on without copying them.
            self.carry = data[tail_from..].to_vec();
            return Ok(data.slice(..tail_from));
        }

        let mut out = Vec::with_capacity(data.len() + 64);
        let mut copied = 0;
        for at in matches {
            self.padding.copy_plain(&data[copied..at], &mut out);
            out.extend_from_slice(&map.to);
            if self.keep_length {
                self.padding.owed += map.pattern_len() - map.to.len();
                self.padding.escaped = false;
            }
            copied = at + map.pattern_len();
        }
        // A tail that looks like a link's start may overlap the end of a link just replaced.
        let keep_from = tail_from.max(copied);
        self.padding.copy_plain(&data[copied..keep_from], &mut out);
        if last && self.padding.owed > 0 {
            // The body ended inside a string (not JSON after all): the length still holds.
            out.resize(out.len() + std::mem::take(&mut self.padding.owed), b' ');
        }
        self.carry = data[keep_from..].to_vec();
        Ok(Bytes::from(out))
    }
}

impl Padding {
    /// Copies bytes that hold no link, paying owed spaces right after the closing quote of
    /// the JSON string a shortened link was written into.
    fn copy_plain(&mut self, mut plain: &[u8], out: &mut Vec<u8>) {
        while self.owed > 0 && !plain.is_empty() {
            if std::mem::take(&mut self.escaped) {
                out.push(plain[0]);
                plain = &plain[1..];
                continue;
            }
            match memchr::memchr2(b'"', b'\\', plain) {
                None => break,
                Some(at) if plain[at] == b'\\' => {
                    self.escaped = true;
                    out.extend_from_slice(&plain[..=at]);
                    plain = &plain[at + 1..];
                }
                Some(at) => {
                    out.extend_from_slice(&plain[..=at]);
                    out.resize(out.len() + std::mem::take(&mut self.owed), b' ');
                    plain = &plain[at + 1..];
                }
            }
        }
        out.extend_from_slice(plain);
    }
}

/// Sets up link rewriting for a JSON answer with a body; `None` leaves the answer to stream
/// untouched (not JSON, no body, an encoding we cannot read, or nothing to rewrite). When
/// the body will change size, the framing headers are changed to match.
pub fn prepare(
    map: &Arc<LinkMap>,
    method: &http::Method,
    upstream: &mut pingora::http::ResponseHeader,
) -> pingora::Result<Option<LinkRewriter>> {
    let status = upstream.status.as_u16();
    let is_json = upstream
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let has_body = *method != http::Method::HEAD && !matches!(status, 204 | 304) && status >= 200;
    if !is_json || !has_body || map.is_identity() {
        return Ok(None);
    }
    let encoding = upstream
        .headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    let gzip = match encoding.as_deref() {
        None | Some("identity") => false,
        Some("gzip") => true,
        // An encoding we cannot read: pass it through as it is.
        Some(_) => return Ok(None),
    };
    let rewriter = LinkRewriter::new(Arc::clone(map), gzip);
    if !rewriter.keeps_length() {
        // The body changes size (and loses its gzip): length is unknown until the end.
        upstream.remove_header("content-length");
        upstream.remove_header("content-encoding");
        upstream.insert_header("transfer-encoding", "chunked")?;
    }
    Ok(Some(rewriter))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const FROM: &str = "https://api.spotify.com/v1/";
    /// Shorter than `FROM`: the sidecar case, rewritten in place.
    const TO: &str = "http://127.0.0.1:8081/v1/";
    /// Longer than `FROM`: the body changes length.
    const TO_LONGER: &str = "http://spotify-gateway.team-a.svc.cluster.local:8081/v1/";

    fn body() -> String {
        let mut s = String::from(r#"{"href":"https://api.spotify.com/v1/search?q=a","items":["#);
        for i in 0..200 {
            s.push_str(&format!(
                r#"{{"href":"https://api.spotify.com/v1/tracks/{i}","name":"x\"y\\"}},"#
            ));
        }
        s.push_str(r#"{}],"next":"https://api.spotify.com/v1/search?offset=20","previous":null}"#);
        s
    }

    fn rewrite_in_chunks(input: &[u8], to: &str, size: usize, gzip: bool) -> String {
        let mut r = LinkRewriter::new(LinkMap::new(FROM, to), gzip);
        let mut out = Vec::new();
        let chunks: Vec<&[u8]> = input.chunks(size).collect();
        for (i, c) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            out.extend_from_slice(&r.feed(Bytes::copy_from_slice(c), last).expect("feed"));
        }
        String::from_utf8(out).expect("utf-8")
    }

    fn json(s: &str) -> Value {
        serde_json::from_str(s).expect("valid JSON")
    }

    const SIZES: [usize; 9] = [1, 2, 7, 26, 27, 28, 64, 1000, usize::MAX];

    #[test]
    fn a_shorter_prefix_keeps_the_length_and_the_json() {
        let input = body();
        let expected = json(&input.replace(FROM, TO));
        for size in SIZES {
            let out = rewrite_in_chunks(input.as_bytes(), TO, size, false);
            assert_eq!(out.len(), input.len(), "{size}");
            assert!(!out.contains(FROM), "{size}");
            assert_eq!(json(&out), expected, "{size}");
        }
    }

    #[test]
    fn spaces_go_right_after_the_string_that_holds_the_link() {
        let input = r#"{"next":"https://api.spotify.com/v1/x?a=\"\\","n":[1]}"#;
        let expected = r#"{"next":"http://127.0.0.1:8081/v1/x?a=\"\\"  ,"n":[1]}"#;
        for size in SIZES {
            assert_eq!(
                rewrite_in_chunks(input.as_bytes(), TO, size, false),
                expected,
                "{size}"
            );
        }
        // Not JSON after all (the string never ends): the length is still kept.
        let open = r#"{"next":"https://api.spotify.com/v1/x"#;
        assert_eq!(
            rewrite_in_chunks(open.as_bytes(), TO, 5, false),
            "{\"next\":\"http://127.0.0.1:8081/v1/x  "
        );
    }

    #[test]
    fn a_longer_prefix_changes_the_length() {
        let input = body();
        let r = LinkRewriter::new(LinkMap::new(FROM, TO_LONGER), false);
        assert!(!r.keeps_length());
        for size in SIZES {
            assert_eq!(
                rewrite_in_chunks(input.as_bytes(), TO_LONGER, size, false),
                input.replace(FROM, TO_LONGER),
                "{size}"
            );
        }
    }

    fn gzip(body: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(body).expect("gzip");
        enc.finish().expect("gzip")
    }

    #[test]
    fn gzip_bodies_are_decompressed_and_rewritten() {
        let input = body();
        let gz = gzip(input.as_bytes());
        assert!(!LinkRewriter::new(LinkMap::new(FROM, TO), true).keeps_length());
        for size in [1, 13, 512, gz.len()] {
            assert_eq!(
                rewrite_in_chunks(&gz, TO, size, true),
                input.replace(FROM, TO)
            );
        }
    }

    #[test]
    fn bodies_without_links_pass_without_a_copy() {
        let mut r = LinkRewriter::new(LinkMap::new(FROM, TO), false);
        let chunk = Bytes::from_static(br#"{"display_name":"alice","id":"alice"}"#);
        let out = r.feed(chunk.clone(), true).expect("feed");
        assert_eq!(out, chunk);
        assert_eq!(out.as_ptr(), chunk.as_ptr(), "the same buffer, not a copy");
    }

    #[test]
    fn only_a_possible_link_start_is_held_back() {
        let mut r = LinkRewriter::new(LinkMap::new(FROM, TO), false);
        assert_eq!(
            r.feed(Bytes::from_static(b"[\"ab\""), false).expect("feed"),
            "[\"ab\""
        );
        assert_eq!(
            r.feed(Bytes::from_static(b",\"https://api.sp"), false)
                .expect("feed"),
            ",\""
        );
        assert_eq!(r.carry, b"https://api.sp");
        let rest = r
            .feed(Bytes::from_static(b"otify.com/v1/x\"]"), true)
            .expect("feed");
        assert_eq!(rest, "http://127.0.0.1:8081/v1/x\"  ]");

        let mut r = LinkRewriter::new(LinkMap::new(FROM, TO), false);
        let chunk = Bytes::from(vec![b'a'; 10_000]);
        for _ in 0..100 {
            let out = r.feed(chunk.clone(), false).expect("feed");
            assert!(r.carry.is_empty());
            assert_eq!(out.len(), chunk.len());
        }
    }

    #[test]
    fn corrupt_gzip_is_an_error() {
        let mut r = LinkRewriter::new(LinkMap::new(FROM, TO), true);
        assert!(r
            .feed(Bytes::from_static(b"definitely not gzip"), true)
            .is_err());
    }

    #[test]
    fn a_gzip_body_past_the_bound_fails_with_nothing_past_it_sent() {
        let input = body();
        let gz = gzip(input.as_bytes());
        let limits = Limits {
            max_inflated: input.len() as u64 / 2,
            ..Limits::SPOTIFY
        };
        for size in [64, 4096, gz.len()] {
            let mut r = LinkRewriter::with_limits(LinkMap::new(FROM, TO), true, limits);
            let (mut out, mut error) = (Vec::new(), None);
            let chunks: Vec<&[u8]> = gz.chunks(size).collect();
            for (i, c) in chunks.iter().enumerate() {
                match r.feed(Bytes::copy_from_slice(c), i + 1 == chunks.len()) {
                    Ok(part) => out.extend_from_slice(&part),
                    Err(e) => {
                        error = Some(e.reason());
                        break;
                    }
                }
            }
            assert_eq!(error, Some("inflate_limit"), "{size}");
            assert!(
                out.len() as u64 <= limits.max_inflated,
                "{size}: {}",
                out.len()
            );
        }
        // Spotify's bound leaves an ordinary answer whole (gzip_bodies_are_...).
        let mut r = LinkRewriter::new(LinkMap::new(FROM, TO), true);
        assert!(r.feed(Bytes::from(gz), true).is_ok());
    }
}
