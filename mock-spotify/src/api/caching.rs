//! `Cache-Control` on Web API answers, as api.spotify.com sends it: catalogue objects
//! (tracks, albums, artists) `public, max-age=7200`; search `public, max-age=60` (short);
//! playlists `public, max-age=0` with their `ETag` (revalidate every time); everything about
//! the user, and every error, `private, max-age=0`. A `304 Not Modified` carries the same.
//!
//! `POST /__mock/cache` with `{"max_age":2}` sets the catalogue and search `max-age` (for
//! tests that want to see an answer go stale); `{"max_age":null}` or `/__mock/reset` puts
//! Spotify's back.

use std::sync::atomic::{AtomicI64, Ordering};

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;

const CATALOGUE_MAX_AGE: u64 = 7200;
const SEARCH_MAX_AGE: u64 = 60;

/// The `max-age` override; negative: none.
#[derive(Debug)]
pub(crate) struct CacheHeaders(AtomicI64);

impl Default for CacheHeaders {
    fn default() -> Self {
        CacheHeaders(AtomicI64::new(-1))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Control {
    max_age: Option<u32>,
}

impl CacheHeaders {
    /// Applies the control's JSON; the message of the 400 on a bad one.
    pub(crate) fn control(&self, body: &[u8]) -> Result<(), String> {
        let c: Control = serde_json::from_slice(body)
            .map_err(|e| format!("invalid cache JSON ({e}); expected {{\"max_age\":2|null}}"))?;
        self.0
            .store(c.max_age.map_or(-1, i64::from), Ordering::Relaxed);
        Ok(())
    }

    pub(crate) fn reset(&self) {
        self.0.store(-1, Ordering::Relaxed);
    }

    fn max_age(&self, spotify: u64) -> u64 {
        u64::try_from(self.0.load(Ordering::Relaxed)).unwrap_or(spotify)
    }

    /// Sets `Cache-Control` on the answer to `method path`.
    pub(crate) fn apply(&self, method: &Method, path: &str, mut resp: Response) -> Response {
        let ok = matches!(resp.status(), StatusCode::OK | StatusCode::NOT_MODIFIED);
        let rest = path.strip_prefix("/v1/").unwrap_or("");
        let first = rest.split('/').next().unwrap_or("");
        let value = match first {
            _ if !ok || method != Method::GET => "private, max-age=0".to_string(),
            "tracks" | "albums" | "artists" => {
                format!("public, max-age={}", self.max_age(CATALOGUE_MAX_AGE))
            }
            "search" => format!("public, max-age={}", self.max_age(SEARCH_MAX_AGE)),
            "playlists" => "public, max-age=0".to_string(),
            _ => "private, max-age=0".to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(header::CACHE_CONTROL, v);
        }
        resp
    }
}
