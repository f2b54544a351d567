//! A gzip bomb (`/__mock/fault` with `gzip_bomb`): a JSON answer whose gzip body is small
//! and inflates to exactly the number of bytes asked for, `{"padding":"aaaa…"}`. With
//! `noise_bytes`, the padding starts with that many hex digits, which gzip only halves: the
//! stream then looks ordinary at first, and only its length gives it away.
//!
//! Built without ever holding the inflated bytes, and fast even in a debug build: one
//! member, whose deflate stream is a run of byte-aligned pieces, each from a fresh
//! compressor ended by a full flush (so it refers to nothing before it). The 1 MiB block of
//! padding is compressed once (about 1 KiB) and its piece repeated; the CRC-32 of the whole
//! body is combined from the pieces' CRCs. A leaf: it imports no other module of the crate.

use std::io;

use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use serde::Deserialize;

const HEAD: &[u8] = br#"{"padding":""#;
const TAIL: &[u8] = br#""}"#;
/// Padding bytes per repeated piece.
const BLOCK: usize = 1 << 20;
/// gzip header (RFC 1952): deflate, no flags, no mtime, unknown OS.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// The smallest body a bomb can inflate to: the JSON around the padding.
const MIN_INFLATED: u64 = (HEAD.len() + TAIL.len()) as u64;
/// The largest: 16 GiB, about 16 MiB compressed.
const MAX_INFLATED: u64 = 16 << 30;
/// The most noise: it is held in memory, and compressed only by half.
const MAX_NOISE: u64 = 64 << 20;

/// `"gzip_bomb": {"inflated_bytes": N, "noise_bytes": M}` (`noise_bytes` defaults to 0).
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Bomb {
    pub inflated_bytes: u64,
    #[serde(default)]
    pub noise_bytes: u64,
}

impl Bomb {
    /// The message of the 400 for a bomb that cannot be built.
    pub(crate) fn check(&self) -> Result<(), String> {
        if !(MIN_INFLATED..=MAX_INFLATED).contains(&self.inflated_bytes) {
            return Err(format!(
                "gzip_bomb.inflated_bytes must be between {MIN_INFLATED} and {MAX_INFLATED}"
            ));
        }
        if self.noise_bytes > MAX_NOISE.min(self.inflated_bytes - MIN_INFLATED) {
            return Err(format!(
                "gzip_bomb.noise_bytes must be at most {MAX_NOISE} and leave room for the JSON"
            ));
        }
        Ok(())
    }

    /// The gzip stream of the JSON body (a checked bomb). CPU-bound for much noise: run it
    /// off the async runtime.
    pub(crate) fn gzip_json(&self) -> io::Result<Vec<u8>> {
        gzip_json(self.inflated_bytes, self.noise_bytes as usize)
    }
}

/// Hex digits from a fixed xorshift sequence: about 4 bits of entropy per byte.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b"0123456789abcdef"[(x >> 60) as usize]
        })
        .collect()
}

/// The gzip stream of a JSON body of exactly `inflated` bytes whose padding starts with
/// `noise` hex digits.
fn gzip_json(inflated: u64, noise_len: usize) -> io::Result<Vec<u8>> {
    let padding = inflated.saturating_sub(MIN_INFLATED) - noise_len as u64;
    let blocks = padding / BLOCK as u64;
    let rest = (padding % BLOCK as u64) as usize;
    let mut first = HEAD.to_vec();
    first.extend_from_slice(&noise(noise_len));

    let block = vec![b'a'; BLOCK];
    let piece = deflate(&block, FlushCompress::Full)?;
    let mut block_crc = Crc::new();
    block_crc.update(&block);
    let mut last = block[..rest].to_vec();
    last.extend_from_slice(TAIL);

    let mut crc = Crc::new();
    crc.update(&first);
    let mut out = Vec::with_capacity(64 + noise_len + piece.len() * blocks as usize);
    out.extend_from_slice(&GZIP_HEADER);
    out.extend_from_slice(&deflate(&first, FlushCompress::Full)?);
    for _ in 0..blocks {
        out.extend_from_slice(&piece);
        crc.combine(&block_crc);
    }
    out.extend_from_slice(&deflate(&last, FlushCompress::Finish)?);
    crc.update(&last);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    // ISIZE: the length modulo 2^32.
    out.extend_from_slice(&(inflated as u32).to_le_bytes());
    Ok(out)
}

/// Raw deflate of `data` from a fresh compressor, ended by `flush` (`Full`: byte-aligned
/// and standalone, more may follow; `Finish`: the final block).
fn deflate(data: &[u8], flush: FlushCompress) -> io::Result<Vec<u8>> {
    let mut compressor = Compress::new(Compression::best(), false);
    let mut out = Vec::with_capacity(data.len() / 256 + 64);
    loop {
        let taken = compressor.total_in() as usize;
        let status = compressor
            .compress_vec(&data[taken..], &mut out, flush)
            .map_err(io::Error::other)?;
        let all_in = compressor.total_in() as usize == data.len();
        // Room left in `out` means the flush is complete.
        if status == Status::StreamEnd || (all_in && out.len() < out.capacity()) {
            return Ok(out);
        }
        out.reserve(out.capacity().max(64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        // Checks the CRC-32 and the length at the end.
        flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut body)
            .expect("valid gzip");
        body
    }

    #[test]
    fn inflates_to_exactly_the_size_asked_for_as_json() {
        let sizes = [
            MIN_INFLATED,
            MIN_INFLATED + 1,
            65_536,
            BLOCK as u64 + MIN_INFLATED,
            3 * BLOCK as u64 + 12_345,
        ];
        for size in sizes {
            let body = gunzip(&gzip_json(size, 0).expect("gzip"));
            assert_eq!(body.len() as u64, size);
            let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
            assert!(json["padding"].is_string());
        }
    }

    #[test]
    fn noise_comes_first_and_compresses_only_by_half() {
        let size = 3 * BLOCK as u64;
        let gz = gzip_json(size, 100_000).expect("gzip");
        assert!(gz.len() > 40_000, "{}", gz.len());
        let body = gunzip(&gz);
        assert_eq!(body.len() as u64, size);
        let padding = &body[HEAD.len()..body.len() - TAIL.len()];
        assert!(padding[..100_000].iter().all(u8::is_ascii_hexdigit));
        assert!(padding[..100].iter().any(|&b| b != padding[0]));
        assert!(padding[100_000..].iter().all(|&b| b == b'a'));
        serde_json::from_slice::<serde_json::Value>(&body).expect("JSON");
    }

    #[test]
    fn bombs_that_cannot_be_built_are_refused() {
        let bomb = |inflated_bytes, noise_bytes| Bomb {
            inflated_bytes,
            noise_bytes,
        };
        assert!(bomb(MIN_INFLATED, 0).check().is_ok());
        assert!(bomb(MIN_INFLATED + 5, 5).check().is_ok());
        assert!(bomb(MIN_INFLATED - 1, 0).check().is_err());
        assert!(bomb(MAX_INFLATED + 1, 0).check().is_err());
        assert!(bomb(MIN_INFLATED + 5, 6).check().is_err());
        assert!(bomb(MAX_INFLATED, MAX_NOISE + 1).check().is_err());
    }

    #[test]
    fn a_gibibyte_is_about_a_mebibyte_compressed() {
        let gz = gzip_json(1 << 30, 0).expect("gzip");
        assert!(gz.len() < 2 << 20, "{} bytes compressed", gz.len());
        assert_eq!(gz[gz.len() - 4..], (1u32 << 30).to_le_bytes(), "ISIZE");
        // Past 4 GiB, ISIZE is the length modulo 2^32.
        let gz = gzip_json((4 << 30) + 7, 0).expect("gzip");
        assert_eq!(gz[gz.len() - 4..], 7u32.to_le_bytes(), "ISIZE");
    }
}
