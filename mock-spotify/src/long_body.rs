//! A long answer (`/__mock/fault` with `long_body`): a 200 JSON answer that begins as a token
//! answer or a user object would, `{"access_token":"aaaa…`, and goes on for `bytes` bytes,
//! or without end when `bytes` is left out. It is streamed in 64 KiB chunks of one static
//! block, never built: the mock holds nothing of it, so what grows is only what a client
//! reading it keeps. A leaf: it imports no other module of the crate.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use futures_core::Stream;
use serde::Deserialize;

const HEAD: &[u8] = br#"{"access_token":""#;
const CHUNK: usize = 64 * 1024;
static PADDING: [u8; CHUNK] = [b'a'; CHUNK];
/// The longest finite body: 16 GiB, as the gzip bomb's.
const MAX_BYTES: u64 = 16 << 30;

/// `"long_body": {"bytes": N}`, or `"long_body": {}` for a body without end.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LongBody {
    pub bytes: Option<u64>,
}

impl LongBody {
    /// The message of the 400 for a length that cannot be sent.
    pub(crate) fn check(&self) -> Result<(), String> {
        match self.bytes {
            Some(n) if !(HEAD.len() as u64..=MAX_BYTES).contains(&n) => Err(format!(
                "long_body.bytes must be between {} and {MAX_BYTES} (leave it out for no end)",
                HEAD.len()
            )),
            _ => Ok(()),
        }
    }

    /// The body, streamed.
    pub(crate) fn body(&self) -> Body {
        Body::from_stream(Chunks {
            head_sent: false,
            left: self.bytes.map(|n| n - HEAD.len() as u64),
        })
    }
}

/// The head, then padding until `left` runs out (never, when `None`).
struct Chunks {
    head_sent: bool,
    left: Option<u64>,
}

impl Stream for Chunks {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if !self.head_sent {
            self.head_sent = true;
            return Poll::Ready(Some(Ok(Bytes::from_static(HEAD))));
        }
        let len = match self.left {
            Some(0) => return Poll::Ready(None),
            Some(left) => left.min(CHUNK as u64) as usize,
            None => CHUNK,
        };
        if let Some(left) = &mut self.left {
            *left -= len as u64;
        }
        Poll::Ready(Some(Ok(Bytes::from_static(&PADDING[..len]))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(body: &LongBody, most: usize) -> (usize, bool) {
        let mut chunks = Chunks {
            head_sent: false,
            left: body.bytes.map(|n| n - HEAD.len() as u64),
        };
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut total = 0;
        for _ in 0..most {
            match Pin::new(&mut chunks).poll_next(&mut cx) {
                Poll::Ready(Some(Ok(chunk))) => total += chunk.len(),
                _ => return (total, true),
            }
        }
        (total, false)
    }

    #[test]
    fn a_long_body_has_the_length_asked_for_or_no_end() {
        assert_eq!(
            drain(
                &LongBody {
                    bytes: Some(200_000)
                },
                100
            ),
            (200_000, true)
        );
        assert_eq!(drain(&LongBody { bytes: Some(17) }, 100), (17, true));
        let (read, ended) = drain(&LongBody { bytes: None }, 100);
        assert!(!ended && read > 6 << 20, "{read}");
        assert!(LongBody { bytes: Some(3) }.check().is_err());
        assert!(LongBody { bytes: None }.check().is_ok());
    }
}
