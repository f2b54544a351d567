//! Bounded gzip inflation for the link rewrite (`links`): Spotify's gzip answer is inflated
//! on the way, and a small, highly compressed body must not become an unbounded buffer (a
//! gzip bomb: a few hundred KB that inflate to GBs).
//!
//! The bound: at most [`MAX_INFLATED`] bytes in all; and past [`RATIO_FLOOR`] inflated bytes
//! at most [`MAX_RATIO`] inflated bytes per compressed byte, over the whole body so far and
//! within each chunk (so a bomb behind an ordinary start is caught within its first chunk).
//! Spotify's JSON answers are at most a few MB (a page of 100 playlist items with full track
//! objects, 20 albums with their tracks, an audio analysis) and JSON compresses 5-20x;
//! deflate's ceiling is about 1030x, which is where a bomb runs. 64 MiB in all, and 100x past
//! 1 MiB, are far from any real answer and stop a bomb after about 1 MiB.
//!
//! Inflation goes in bounded steps: at most [`STEP`] compressed bytes at a time (about 1 MiB
//! inflated at deflate's ceiling), the bound checked after each, so no single chunk can
//! inflate past the bound in one go. What one chunk inflates to is therefore at most
//! `max(RATIO_FLOOR, MAX_RATIO * chunk) + 1 MiB` (pingora reads at most 64 KiB at a time:
//! about 7 MiB), and what the gateway holds per answer stays bounded whatever Spotify sends.

use std::fmt;
use std::io::{self, Write as _};

use flate2::write::GzDecoder;

/// The most an answer may inflate to.
pub const MAX_INFLATED: u64 = 64 << 20;
/// Inflated bytes up to which any ratio is fine (small answers, however repetitive).
pub const RATIO_FLOOR: u64 = 1 << 20;
/// The most inflated bytes per compressed byte past `RATIO_FLOOR`.
pub const MAX_RATIO: u64 = 100;
/// Compressed bytes handed to the decoder per step.
const STEP: usize = 1024;

/// Why an answer's body cannot be passed on.
#[derive(Debug)]
pub enum BodyError {
    /// Not a gzip stream, cut short, or followed by more data.
    Corrupt(io::Error),
    /// Inflated past the bound (see the module docs).
    InflateLimit { inflated: u64, compressed: u64 },
}

impl BodyError {
    /// Every [`BodyError::reason`].
    pub const REASONS: [&'static str; 2] = ["inflate_limit", "corrupt_gzip"];

    /// The metric label: bounded values only.
    pub fn reason(&self) -> &'static str {
        match self {
            BodyError::InflateLimit { .. } => Self::REASONS[0],
            BodyError::Corrupt(_) => Self::REASONS[1],
        }
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Corrupt(e) => write!(f, "its gzip body is corrupt ({e})"),
            BodyError::InflateLimit {
                inflated,
                compressed,
            } => write!(
                f,
                "its gzip body inflated past the gateway's bound ({inflated} bytes from \
                 {compressed} compressed; at most {MAX_INFLATED}, and at most {MAX_RATIO}x \
                 past {RATIO_FLOOR})"
            ),
        }
    }
}

impl std::error::Error for BodyError {}

/// What an answer may inflate to.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    pub max_inflated: u64,
    pub ratio_floor: u64,
    pub max_ratio: u64,
}

/// Bytes in and out, of the whole body so far or of one chunk.
#[derive(Clone, Copy, Default)]
struct Counts {
    compressed: u64,
    inflated: u64,
}

impl Counts {
    fn add(&mut self, compressed: usize, inflated: usize) {
        self.compressed += compressed as u64;
        self.inflated += inflated as u64;
    }
}

impl Limits {
    /// The bound for Spotify's answers (see the module docs).
    pub const SPOTIFY: Limits = Limits {
        max_inflated: MAX_INFLATED,
        ratio_floor: RATIO_FLOOR,
        max_ratio: MAX_RATIO,
    };

    fn check(&self, total: Counts, chunk: Counts) -> Result<(), BodyError> {
        let dense = |c: Counts| {
            c.inflated > self.ratio_floor
                && c.inflated > c.compressed.saturating_mul(self.max_ratio)
        };
        if total.inflated > self.max_inflated || dense(total) || dense(chunk) {
            return Err(BodyError::InflateLimit {
                inflated: total.inflated,
                compressed: total.compressed,
            });
        }
        Ok(())
    }
}

/// A gzip stream inflated chunk by chunk within [`Limits`].
pub(super) struct Inflater {
    decoder: GzDecoder<Vec<u8>>,
    limits: Limits,
    total: Counts,
}

impl Inflater {
    pub fn new(limits: Limits) -> Inflater {
        Inflater {
            decoder: GzDecoder::new(Vec::new()),
            limits,
            total: Counts::default(),
        }
    }

    /// Inflates `chunk` onto the end of `out`; `last` checks the end of the stream. Once past
    /// the bound it fails, now and on every later call.
    pub fn inflate(
        &mut self,
        chunk: &[u8],
        last: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), BodyError> {
        let mut this = Counts::default();
        self.limits.check(self.total, this)?;
        let mut input = chunk;
        while !input.is_empty() {
            let step = &input[..input.len().min(STEP)];
            let taken = self.decoder.write(step).map_err(BodyError::Corrupt)?;
            if taken == 0 {
                let e = io::Error::new(io::ErrorKind::InvalidData, "data after the gzip stream");
                return Err(BodyError::Corrupt(e));
            }
            input = &input[taken..];
            self.drain(taken, &mut this, out)?;
        }
        if last {
            self.decoder.try_finish().map_err(BodyError::Corrupt)?;
            self.drain(0, &mut this, out)?;
        }
        Ok(())
    }

    /// Counts `taken` compressed bytes and moves what the decoder wrote to `out`, within the
    /// bound.
    fn drain(
        &mut self,
        taken: usize,
        this: &mut Counts,
        out: &mut Vec<u8>,
    ) -> Result<(), BodyError> {
        let inflated = self.decoder.get_mut();
        self.total.add(taken, inflated.len());
        this.add(taken, inflated.len());
        if let Err(e) = self.limits.check(self.total, *this) {
            *inflated = Vec::new();
            return Err(e);
        }
        out.extend_from_slice(inflated);
        inflated.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;

    fn gzip(body: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::best());
        enc.write_all(body).expect("gzip");
        enc.finish().expect("gzip")
    }

    /// Feeds `gz` in `chunk`-sized pieces: what came out, the largest piece's output, and the
    /// error if it stopped.
    fn inflate_in_chunks(
        gz: &[u8],
        limits: Limits,
        chunk: usize,
    ) -> (usize, usize, Option<BodyError>) {
        let mut inflater = Inflater::new(limits);
        let (mut total, mut largest) = (0, 0);
        let pieces: Vec<&[u8]> = gz.chunks(chunk).collect();
        for (i, piece) in pieces.iter().enumerate() {
            let mut out = Vec::new();
            let result = inflater.inflate(piece, i + 1 == pieces.len(), &mut out);
            total += out.len();
            largest = largest.max(out.len());
            if let Err(e) = result {
                return (total, largest, Some(e));
            }
        }
        (total, largest, None)
    }

    /// Bytes that gzip cannot shrink much (16 letters at random: about 2x); a bomb is the
    /// opposite.
    fn varied(len: usize) -> Vec<u8> {
        use rand::{Rng as _, SeedableRng as _};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        (0..len).map(|_| rng.gen_range(b'a'..b'q')).collect()
    }

    #[test]
    fn ordinary_bodies_inflate_whole() {
        let body = varied(300_000);
        let gz = gzip(&body);
        for chunk in [1, 100, 4096, gz.len()] {
            let mut inflater = Inflater::new(Limits::SPOTIFY);
            let mut out = Vec::new();
            let pieces: Vec<&[u8]> = gz.chunks(chunk).collect();
            for (i, piece) in pieces.iter().enumerate() {
                inflater
                    .inflate(piece, i + 1 == pieces.len(), &mut out)
                    .expect("within the bound");
            }
            assert_eq!(out, body, "{chunk}");
        }
        // Up to the floor, any ratio is fine: a small, very repetitive answer passes.
        let small = vec![b'x'; RATIO_FLOOR as usize];
        let (total, _, error) = inflate_in_chunks(&gzip(&small), Limits::SPOTIFY, 65_536);
        assert!(error.is_none(), "{error:?}");
        assert_eq!(total, small.len());
    }

    #[test]
    fn a_bomb_stops_past_the_floor_even_inside_one_chunk() {
        // 64 MiB of one byte: about 64 KiB compressed, so one chunk holds all of it.
        let gz = gzip(&vec![b'a'; 64 << 20]);
        assert!(gz.len() <= 100_000, "{}", gz.len());
        let (total, largest, error) = inflate_in_chunks(&gz, Limits::SPOTIFY, gz.len());
        let Some(BodyError::InflateLimit {
            inflated,
            compressed,
        }) = error
        else {
            panic!("not refused: {error:?}");
        };
        assert!(inflated > RATIO_FLOOR && inflated > compressed * MAX_RATIO);
        // Stopped within a step of the floor, and nothing of the last step was passed on.
        assert!(inflated < RATIO_FLOOR + (2 << 20), "{inflated}");
        assert!((total as u64) <= RATIO_FLOOR && largest == total, "{total}");
    }

    #[test]
    fn a_bomb_behind_an_ordinary_start_stops_within_its_chunk() {
        let mut body = varied(2 << 20);
        body.resize(body.len() + (64 << 20), b'a');
        let gz = gzip(&body);
        let chunk = 65_536;
        let (total, largest, error) = inflate_in_chunks(&gz, Limits::SPOTIFY, chunk);
        assert!(
            matches!(error, Some(BodyError::InflateLimit { .. })),
            "{error:?}"
        );
        // Far below the 64 MiB total: the chunk's own ratio stopped it.
        assert!(total < (2 << 20) + (8 << 20), "{total}");
        let per_chunk = RATIO_FLOOR.max(MAX_RATIO * chunk as u64) + (1 << 20);
        assert!((largest as u64) < per_chunk, "{largest}");
    }

    #[test]
    fn the_total_is_bounded_whatever_the_ratio() {
        // Ratio about 2x: only the total bound can stop it.
        let limits = Limits {
            max_inflated: 1 << 20,
            ..Limits::SPOTIFY
        };
        let gz = gzip(&varied(3 << 20));
        for chunk in [512, 65_536] {
            let (total, _, error) = inflate_in_chunks(&gz, limits, chunk);
            assert!(
                matches!(error, Some(BodyError::InflateLimit { inflated, .. }) if inflated > 1 << 20),
                "{error:?}"
            );
            assert!(total <= 1 << 20, "{total}");
        }
    }

    #[test]
    fn once_refused_always_refused() {
        let limits = Limits {
            max_inflated: 1000,
            ..Limits::SPOTIFY
        };
        let gz = gzip(&varied(10_000));
        let mut inflater = Inflater::new(limits);
        let mut out = Vec::new();
        let error = inflater.inflate(&gz[..gz.len() / 2], false, &mut out);
        assert_eq!(error.expect_err("refused").reason(), "inflate_limit");
        let again = inflater.inflate(&gz[gz.len() / 2..], true, &mut out);
        assert_eq!(again.expect_err("refused").reason(), "inflate_limit");
        assert!(out.len() <= 1000);
    }

    #[test]
    fn corrupt_or_trailing_data_is_corrupt() {
        let mut inflater = Inflater::new(Limits::SPOTIFY);
        let error = inflater.inflate(b"definitely not gzip", true, &mut Vec::new());
        assert_eq!(error.expect_err("corrupt").reason(), "corrupt_gzip");

        let mut gz = gzip(b"{}");
        gz.extend_from_slice(b"more");
        let mut inflater = Inflater::new(Limits::SPOTIFY);
        let error = inflater.inflate(&gz, true, &mut Vec::new());
        assert_eq!(error.expect_err("corrupt").reason(), "corrupt_gzip");

        let gz = gzip(b"{\"a\":1}");
        let mut inflater = Inflater::new(Limits::SPOTIFY);
        let error = inflater.inflate(&gz[..gz.len() - 3], true, &mut Vec::new());
        assert_eq!(error.expect_err("cut short").reason(), "corrupt_gzip");
    }
}
