//! An answer from Spotify held whole in memory, to hand to more than one caller: the callers
//! of a coalesced call (`flight`), and later ones from the cache (`cache`).
//!
//! Held compactly, because the cache promises a memory bound (`egress.cache_size`), and
//! weighed by what it really takes (`Answer::weight`): the kept header fields and the body
//! are copied into blocks of at most `BLOCK` bytes, with a small index of where each field
//! is. A `HeaderMap` would cost more than a typical answer's headers themselves, and a
//! header value straight from pingora is a slice of its whole read buffer (4 KiB and more),
//! which it would keep alive for as long as the answer is held. The body is copied in as it
//! streams (`Builder`), into blocks of its size when its length is known: no buffer grown by
//! doubling and copied again at the end.

use std::mem::size_of;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::vary::Selecting;

/// The largest block an answer is held in: a body of unknown length takes a block this size
/// at a time (the last one given back down to its size), and a large answer is few blocks.
const BLOCK: usize = 16 << 10;

/// Spotify's status, headers and body, as the first caller got them (paging links already
/// pointing at the gateway), and which other calls may take it (`selecting`). Framing and
/// per-call headers are not kept: each caller's answer gets its own length and request id.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// What the answer's `Vary` asks of a call that would take it.
    pub selecting: Selecting,
    /// Each kept field's name then value, then the start of the body.
    head: Bytes,
    fields: Box<[Field]>,
    /// Where the body starts in `head`.
    body_from: usize,
    /// The rest of the body, `BLOCK` bytes each (the last one shorter).
    rest: Box<[Bytes]>,
    /// The bytes allocated for `head` and `rest`.
    allocated: usize,
}

/// Where one header field is in `Answer::head`: its name starts where the previous field
/// ends, its value at `value_from`.
#[derive(Debug, Clone, Copy)]
struct Field {
    value_from: u32,
    end: u32,
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
    /// A copy of `headers` (less the per-transfer ones) and of the body, given as the chunks
    /// it came in (`Builder`, for an answer still streaming).
    pub fn new(
        status: u16,
        headers: &HeaderMap,
        body: &[Bytes],
        selecting: Selecting,
    ) -> Option<Answer> {
        let len = body.iter().map(Bytes::len).sum();
        let mut builder = Builder::new(status, headers, selecting, Some(len))?;
        for chunk in body {
            builder.push(chunk);
        }
        Some(builder.finish())
    }

    /// The same answer with other headers (a revalidated one's).
    pub fn with_headers(&self, headers: &HeaderMap) -> Option<Answer> {
        let body: Vec<Bytes> = self.body().collect();
        Answer::new(self.status, headers, &body, self.selecting.clone())
    }

    /// The kept header fields, in their order.
    pub fn headers(&self) -> impl Iterator<Item = (HeaderName, HeaderValue)> + '_ {
        let mut from = 0;
        self.fields.iter().filter_map(move |f| {
            let (name_from, value_from, end) = (from, f.value_from as usize, f.end as usize);
            from = end;
            // Both were a valid name and value when copied in.
            let name = HeaderName::from_bytes(&self.head[name_from..value_from]).ok()?;
            let value = HeaderValue::from_maybe_shared(self.head.slice(value_from..end)).ok()?;
            Some((name, value))
        })
    }

    pub fn header_count(&self) -> usize {
        self.fields.len()
    }

    /// The first value of `name`.
    pub fn get(&self, name: &HeaderName) -> Option<HeaderValue> {
        self.headers().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The kept headers as a map.
    pub fn header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.fields.len());
        for (name, value) in self.headers() {
            map.append(name, value);
        }
        map
    }

    /// The body, in the blocks it is held in (none empty).
    pub fn body(&self) -> impl Iterator<Item = Bytes> + '_ {
        let start = Some(self.head.slice(self.body_from..)).filter(|b| !b.is_empty());
        start.into_iter().chain(self.rest.iter().cloned())
    }

    pub fn body_len(&self) -> usize {
        self.head.len() - self.body_from + self.rest.iter().map(Bytes::len).sum::<usize>()
    }

    /// What it costs to hold, in bytes: itself, its blocks, its indexes, its `Vary` values.
    pub fn weight(&self) -> usize {
        size_of::<Answer>()
            + self.allocated
            + size_of::<Field>() * self.fields.len()
            + size_of::<Bytes>() * self.rest.len()
            + self.selecting.heap_size()
    }
}

/// An answer as its body streams in: each chunk is copied into the answer's blocks as it
/// comes, so nothing but the answer itself is held meanwhile.
pub struct Builder {
    status: u16,
    selecting: Selecting,
    fields: Vec<Field>,
    fields_len: usize,
    /// The block being filled (the first holds the fields).
    current: Vec<u8>,
    done: Vec<Bytes>,
    /// The body's length so far, and what it is said to be (`Content-Length`), if anything.
    len: usize,
    expected: Option<usize>,
    allocated: usize,
}

impl Builder {
    /// An answer with `headers` (less the per-transfer ones), whose body is about to come;
    /// `expected` is its length, when known, so its blocks are of their size from the start.
    /// `None` if its header fields are too large to index (over 4 GiB: never from pingora,
    /// which refuses large headers).
    pub fn new(
        status: u16,
        headers: &HeaderMap,
        selecting: Selecting,
        expected: Option<usize>,
    ) -> Option<Builder> {
        let kept = || {
            headers
                .iter()
                .filter(|(name, _)| !NOT_KEPT.contains(&name.as_str()))
        };
        let fields_len: usize = kept().map(|(n, v)| n.as_str().len() + v.len()).sum();
        u32::try_from(fields_len).ok()?;
        let in_head = expected
            .unwrap_or(BLOCK)
            .min(BLOCK.saturating_sub(fields_len));
        let mut head = Vec::with_capacity(fields_len + in_head);
        let mut fields = Vec::with_capacity(kept().count());
        for (name, value) in kept() {
            head.extend_from_slice(name.as_str().as_bytes());
            let value_from = head.len() as u32;
            head.extend_from_slice(value.as_bytes());
            fields.push(Field {
                value_from,
                end: head.len() as u32,
            });
        }
        Some(Builder {
            status,
            selecting,
            fields,
            fields_len,
            current: head,
            done: Vec::new(),
            len: 0,
            expected,
            allocated: 0,
        })
    }

    /// The body's length so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies the next chunk of the body in.
    pub fn push(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            let limit = if self.done.is_empty() {
                BLOCK.max(self.fields_len)
            } else {
                BLOCK
            };
            if self.current.len() >= limit {
                let full = std::mem::take(&mut self.current);
                self.seal(full);
                let left = self.expected.map_or(BLOCK, |e| e.saturating_sub(self.len));
                self.current = Vec::with_capacity(left.clamp(1, BLOCK));
            }
            let take = chunk.len().min(limit - self.current.len());
            self.current.extend_from_slice(&chunk[..take]);
            self.len += take;
            chunk = &chunk[take..];
        }
    }

    /// The answer.
    pub fn finish(mut self) -> Answer {
        let mut last = std::mem::take(&mut self.current);
        if !last.is_empty() || self.done.is_empty() {
            // A block made for more than came (the length was not known) gives it back.
            last.shrink_to_fit();
            self.seal(last);
        }
        let head = self.done.remove(0);
        Answer {
            status: self.status,
            selecting: self.selecting,
            head,
            fields: self.fields.into_boxed_slice(),
            body_from: self.fields_len,
            rest: self.done.into_boxed_slice(),
            allocated: self.allocated,
        }
    }

    fn seal(&mut self, block: Vec<u8>) {
        self.allocated += block.capacity();
        self.done.push(Bytes::from(block));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_held_in_blocks_of_their_size() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.append("vary", HeaderValue::from_static("Accept-Encoding"));
        headers.append("vary", HeaderValue::from_static("Authorization"));
        headers.insert("content-length", HeaderValue::from_static("2"));
        headers.insert("x-request-id", HeaderValue::from_static("r1"));
        let body = [Bytes::from_static(b"{"), Bytes::from_static(b"}")];
        let answer = Answer::new(200, &headers, &body, Selecting::Keyed).expect("small");
        assert_eq!(
            answer.body().collect::<Vec<_>>(),
            [Bytes::from_static(b"{}")]
        );
        let kept: Vec<_> = answer.headers().collect();
        assert_eq!(
            kept,
            [
                (http::header::CONTENT_TYPE, headers["content-type"].clone()),
                (
                    http::header::VARY,
                    HeaderValue::from_static("Accept-Encoding")
                ),
                (
                    http::header::VARY,
                    HeaderValue::from_static("Authorization")
                ),
            ]
        );
        assert_eq!(answer.head.len(), "content-typeapplication/json".len() + 38);
        assert!(answer.rest.is_empty(), "one block");
        assert_eq!(answer.get(&http::header::CONTENT_LENGTH), None);
        assert_eq!(answer.header_map().get_all("vary").iter().count(), 2);

        let mut newer = answer.header_map();
        newer.insert("etag", HeaderValue::from_static("\"b\""));
        let refreshed = answer.with_headers(&newer).expect("small");
        assert_eq!(refreshed.get(&http::header::ETAG).expect("etag"), "\"b\"");
        assert!(refreshed.body().eq(answer.body()));
        assert!(refreshed.weight() > answer.weight());
    }

    #[test]
    fn a_large_body_is_held_in_blocks() {
        let body: Vec<u8> = (0..50_000u32).map(|i| i as u8).collect();
        let chunks: Vec<Bytes> = body.chunks(7_000).map(Bytes::copy_from_slice).collect();
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let answer = Answer::new(200, &headers, &chunks, Selecting::Keyed).expect("held");
        assert_eq!(answer.body_len(), body.len());
        assert_eq!(answer.body().collect::<Vec<_>>().concat(), body);
        assert_eq!(answer.head.len(), BLOCK);
        assert_eq!(answer.rest.len(), 3);
        assert!(answer
            .rest
            .iter()
            .all(|b| b.len() <= BLOCK && !b.is_empty()));
        assert!(answer.weight() >= body.len());

        let empty = Answer::new(204, &HeaderMap::new(), &[], Selecting::Keyed).expect("held");
        assert_eq!(empty.body_len(), 0);
        assert_eq!(empty.body().count(), 0);
    }
}
