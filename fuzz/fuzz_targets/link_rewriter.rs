//! `LinkRewriter::feed`: rewrites Spotify's paging links in every JSON answer, streaming, as
//! chunks arrive. Whatever the chunking, the output equals the one-pass reference below on
//! the whole body (a plain replace, plus, in same-length mode, the owed spaces after the
//! string's closing quote); gzip bodies come out decompressed and rewritten (fuzz inputs are
//! far below the inflate bound, so a valid body never fails); arbitrary bytes declared gzip
//! are an error, never a panic.
//!
//! Input: a control byte (pattern, gzip, how the stream ends), a count n, n chunk sizes, the
//! body.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use spotify_gateway::proxy::egress::links::{LinkMap, LinkRewriter};

/// The production pattern (shorter replacement: same-length mode), and short self-overlapping
/// ones for the held-back tail, with shorter and longer replacements.
const MAPS: [(&str, &str); 4] = [
    ("https://api.spotify.com/v1/", "http://127.0.0.1:8081/v1/"),
    ("aa", "b"),
    ("aba", "http://x"),
    ("/", "//"),
];

/// Leftmost, non-overlapping replace, as `str::replace`, on bytes; with `pad`, each shortened
/// match owes spaces, paid after the next unescaped `"` (or at the end).
fn reference(hay: &[u8], from: &[u8], to: &[u8], pad: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let (mut i, mut owed, mut escaped) = (0, 0, false);
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
            if pad {
                owed += from.len() - to.len();
                escaped = false;
            }
            continue;
        }
        let b = hay[i];
        out.push(b);
        i += 1;
        if owed > 0 {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                out.resize(out.len() + owed, b' ');
                owed = 0;
            }
        }
    }
    out.resize(out.len() + owed, b' ');
    out
}

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(body).expect("gzip to memory");
    enc.finish().expect("gzip to memory")
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let Some((&n, rest)) = rest.split_first() else {
        return;
    };
    let n = usize::from(n % 16).min(rest.len());
    let (sizes, body) = rest.split_at(n);
    let sizes = if sizes.is_empty() { &[7][..] } else { sizes };
    let (from, to) = MAPS[usize::from(control & 3)];
    let compressed = control & 4 != 0;
    let empty_last = control & 8 != 0;

    let input = if compressed {
        gzip(body)
    } else {
        body.to_vec()
    };
    let mut pieces: Vec<&[u8]> = Vec::new();
    let (mut at, mut i) = (0, 0);
    while at < input.len() {
        let size = usize::from(sizes[i % sizes.len()]);
        i += 1;
        // Empty chunks happen; every second step moves on, so the loop ends.
        let size = if size == 0 && i % 2 == 0 { 1 } else { size };
        let end = (at + size).min(input.len());
        pieces.push(&input[at..end]);
        at = end;
    }
    if empty_last || pieces.is_empty() {
        pieces.push(&[]);
    }

    let map = LinkMap::new(from, to);
    let mut rewriter = LinkRewriter::new(map.clone(), compressed);
    let pad = rewriter.keeps_length();
    assert_eq!(pad, !compressed && to.len() <= from.len());
    let mut out = Vec::new();
    for (k, piece) in pieces.iter().enumerate() {
        let last = k + 1 == pieces.len();
        let chunk = rewriter
            .feed(bytes::Bytes::copy_from_slice(piece), last)
            .expect("a valid body rewrites");
        out.extend_from_slice(&chunk);
    }
    assert_eq!(out, reference(body, from.as_bytes(), to.as_bytes(), pad));
    if pad {
        assert_eq!(out.len(), body.len(), "same-length mode changed the length");
    }

    if control & 16 != 0 {
        let mut rewriter = LinkRewriter::new(map, true);
        let _ = rewriter.feed(bytes::Bytes::copy_from_slice(body), true);
    }
});
