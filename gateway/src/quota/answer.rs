//! An answer from Spotify held whole in memory, to hand to more than one caller: the callers
//! of a coalesced call (`flight`), and later ones from the cache (`cache`).
//!
//! Held compactly, because the cache promises a memory bound (`egress.cache_size`): the kept
//! header fields and the body are copied into one buffer of exactly their size, with a small
//! index of where each field is. A `HeaderMap` would cost more than a typical answer's
//! headers themselves, and a header value straight from pingora is a slice of its whole read
//! buffer, which it would keep alive for as long as the answer is held.

use std::mem::size_of;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::vary::Selecting;

/// Spotify's status, headers and body, as the first caller got them (paging links already
/// pointing at the gateway), and which other calls may take it (`selecting`). Framing and
/// per-call headers are not kept: each caller's answer gets its own length and request id.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// What the answer's `Vary` asks of a call that would take it.
    pub selecting: Selecting,
    /// Each kept field's name then value, then the body.
    data: Bytes,
    fields: Box<[Field]>,
    body_from: usize,
}

/// Where one header field is in `Answer::data`: its name starts where the previous field
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

/// The most a held answer may be (the share limit is far below): offsets fit in `u32`.
const MAX_HELD: usize = u32::MAX as usize;

impl Answer {
    /// A copy of `headers` (less the per-transfer ones) and `body`. `None` if it is too
    /// large to hold.
    pub fn new(
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
        selecting: Selecting,
    ) -> Option<Answer> {
        let kept = || {
            headers
                .iter()
                .filter(|(name, _)| !NOT_KEPT.contains(&name.as_str()))
        };
        let head: usize = kept().map(|(n, v)| n.as_str().len() + v.len()).sum();
        if head + body.len() > MAX_HELD {
            return None;
        }
        let mut data = Vec::with_capacity(head + body.len());
        let mut fields = Vec::with_capacity(kept().count());
        for (name, value) in kept() {
            data.extend_from_slice(name.as_str().as_bytes());
            let value_from = data.len() as u32;
            data.extend_from_slice(value.as_bytes());
            fields.push(Field {
                value_from,
                end: data.len() as u32,
            });
        }
        data.extend_from_slice(body);
        Some(Answer {
            status,
            selecting,
            data: Bytes::from(data),
            fields: fields.into_boxed_slice(),
            body_from: head,
        })
    }

    /// The same answer with other headers (a revalidated one's).
    pub fn with_headers(&self, headers: &HeaderMap) -> Option<Answer> {
        Answer::new(
            self.status,
            headers,
            &self.data[self.body_from..],
            self.selecting.clone(),
        )
    }

    /// The kept header fields, in their order.
    pub fn headers(&self) -> impl Iterator<Item = (HeaderName, HeaderValue)> + '_ {
        let mut from = 0;
        self.fields.iter().filter_map(move |f| {
            let (name_from, value_from, end) = (from, f.value_from as usize, f.end as usize);
            from = end;
            // Both were a valid name and value when copied in.
            let name = HeaderName::from_bytes(&self.data[name_from..value_from]).ok()?;
            let value = HeaderValue::from_maybe_shared(self.data.slice(value_from..end)).ok()?;
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

    pub fn body(&self) -> Bytes {
        self.data.slice(self.body_from..)
    }

    /// What it costs to hold, in bytes: itself, its buffer, its index, its `Vary` values.
    pub fn weight(&self) -> usize {
        size_of::<Answer>()
            + self.data.len()
            + size_of::<Field>() * self.fields.len()
            + self.selecting.heap_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_held_in_one_buffer_of_its_size() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.append("vary", HeaderValue::from_static("Accept-Encoding"));
        headers.append("vary", HeaderValue::from_static("Authorization"));
        headers.insert("content-length", HeaderValue::from_static("2"));
        headers.insert("x-request-id", HeaderValue::from_static("r1"));
        let answer = Answer::new(200, &headers, b"{}", Selecting::Keyed).expect("small");
        assert_eq!(answer.body(), Bytes::from_static(b"{}"));
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
        assert_eq!(answer.data.len(), "content-typeapplication/json".len() + 38);
        assert_eq!(answer.get(&http::header::CONTENT_LENGTH), None);
        assert_eq!(answer.header_map().get_all("vary").iter().count(), 2);

        let mut newer = answer.header_map();
        newer.insert("etag", HeaderValue::from_static("\"b\""));
        let refreshed = answer.with_headers(&newer).expect("small");
        assert_eq!(refreshed.get(&http::header::ETAG).expect("etag"), "\"b\"");
        assert_eq!(refreshed.body(), answer.body());
        assert!(refreshed.weight() > answer.weight());
    }
}
