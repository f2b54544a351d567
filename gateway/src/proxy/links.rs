//! Rewrites Spotify's absolute API links (`next`, `previous`, `href`, ...) in JSON bodies to
//! the egress listener's public base URL, so client libraries that follow them stay on the
//! gateway.
//!
//! Streaming: each chunk is rewritten as it arrives. Only the last `pattern.len() - 1` bytes
//! are held back, because a link may be split across two chunks; memory stays bounded
//! whatever the body size. A gzip body is decompressed on the way (the caller then sends it
//! uncompressed to the local client).

use std::io::Write;

use bytes::Bytes;
use flate2::write::GzDecoder;
use memchr::memmem::Finder;

pub struct LinkRewriter {
    finder: Finder<'static>,
    to: Vec<u8>,
    /// Tail of the previous chunk that may start a split link.
    carry: Vec<u8>,
    gunzip: Option<GzDecoder<Vec<u8>>>,
}

impl LinkRewriter {
    /// Replaces every `from` (e.g. `https://api.spotify.com/v1/`) by `to`.
    pub fn new(from: &str, to: &str, gzip: bool) -> LinkRewriter {
        LinkRewriter {
            finder: Finder::new(from.as_bytes()).into_owned(),
            to: to.as_bytes().to_vec(),
            carry: Vec::new(),
            gunzip: gzip.then(|| GzDecoder::new(Vec::new())),
        }
    }

    /// Rewrites the next chunk; `last` flushes everything held back.
    pub fn feed(&mut self, chunk: &[u8], last: bool) -> std::io::Result<Bytes> {
        let mut data = std::mem::take(&mut self.carry);
        match &mut self.gunzip {
            Some(decoder) => {
                decoder.write_all(chunk)?;
                if last {
                    decoder.try_finish()?;
                }
                data.extend_from_slice(&std::mem::take(decoder.get_mut()));
            }
            None => data.extend_from_slice(chunk),
        }

        let mut out = Vec::with_capacity(data.len() + 64);
        let mut copied = 0;
        for at in self.finder.find_iter(&data) {
            out.extend_from_slice(&data[copied..at]);
            out.extend_from_slice(&self.to);
            copied = at + self.finder.needle().len();
        }
        // Hold back a tail that could be the start of a link split across chunks.
        let keep_from = if last {
            data.len()
        } else {
            data.len()
                .saturating_sub(self.finder.needle().len().saturating_sub(1))
                .max(copied)
        };
        out.extend_from_slice(&data[copied..keep_from]);
        self.carry = data[keep_from..].to_vec();
        Ok(Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FROM: &str = "https://api.spotify.com/v1/";
    const TO: &str = "http://127.0.0.1:8081/v1/";

    fn body() -> String {
        let mut s = String::from(r#"{"href":"https://api.spotify.com/v1/search?q=a","items":["#);
        for i in 0..200 {
            s.push_str(&format!(
                r#"{{"href":"https://api.spotify.com/v1/tracks/{i}","name":"x"}},"#
            ));
        }
        s.push_str(r#"{}],"next":"https://api.spotify.com/v1/search?offset=20","previous":null}"#);
        s
    }

    fn rewrite_in_chunks(input: &[u8], size: usize, gzip: bool) -> String {
        let mut r = LinkRewriter::new(FROM, TO, gzip);
        let mut out = Vec::new();
        let chunks: Vec<&[u8]> = input.chunks(size).collect();
        for (i, c) in chunks.iter().enumerate() {
            out.extend_from_slice(&r.feed(c, i + 1 == chunks.len()).expect("feed"));
        }
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn every_link_is_rewritten_whatever_the_chunking() {
        let input = body();
        let expected = input.replace(FROM, TO);
        for size in [1, 2, 7, 26, 27, 28, 64, 1000, input.len()] {
            assert_eq!(
                rewrite_in_chunks(input.as_bytes(), size, false),
                expected,
                "{size}"
            );
        }
    }

    #[test]
    fn gzip_bodies_are_decompressed_and_rewritten() {
        let input = body();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(input.as_bytes()).expect("gzip");
        let gz = enc.finish().expect("gzip");
        for size in [1, 13, 512, gz.len()] {
            assert_eq!(rewrite_in_chunks(&gz, size, true), input.replace(FROM, TO));
        }
    }

    #[test]
    fn held_back_bytes_are_bounded() {
        let mut r = LinkRewriter::new(FROM, TO, false);
        let chunk = vec![b'a'; 10_000];
        for _ in 0..100 {
            let out = r.feed(&chunk, false).expect("feed");
            assert!(r.carry.len() < FROM.len());
            assert!(out.len() >= chunk.len() - FROM.len());
        }
    }

    #[test]
    fn corrupt_gzip_is_an_error() {
        let mut r = LinkRewriter::new(FROM, TO, true);
        assert!(r.feed(b"definitely not gzip", true).is_err());
    }
}
