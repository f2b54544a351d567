//! `Cache-Control` on Web API answers, as api.spotify.com sends it: catalogue objects
//! (tracks, albums, artists) `public, max-age=7200`; search `public, max-age=60` (short);
//! playlists `public, max-age=0` with their `ETag` (revalidate every time); everything about
//! the user, and every error, `private, max-age=0`. A `304 Not Modified` carries the same.
//!
//! `POST /__mock/cache` with `{"max_age":2}` sets the catalogue and search `max-age` (for
//! tests that want to see an answer go stale); `{"user_max_age":60}` keeps the user's own
//! answers fresh that long (`private, max-age=60`, as a cache must still keep them apart by
//! token); `{"vary":"X-Thing"}` adds field names to every answer's `Vary` (for tests of how a
//! cache honours it). Each control sets all three; what it leaves out, and `/__mock/reset`,
//! put Spotify's back.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, PoisonError};

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;

const CATALOGUE_MAX_AGE: u64 = 7200;
const SEARCH_MAX_AGE: u64 = 60;

/// The overrides: the catalogue's and the user's `max-age` (negative: none) and the field
/// names added to `Vary`.
#[derive(Debug)]
pub(crate) struct CacheHeaders {
    max_age: AtomicI64,
    user_max_age: AtomicI64,
    vary: Mutex<Option<HeaderValue>>,
}

impl Default for CacheHeaders {
    fn default() -> Self {
        CacheHeaders {
            max_age: AtomicI64::new(-1),
            user_max_age: AtomicI64::new(-1),
            vary: Mutex::new(None),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Control {
    max_age: Option<u32>,
    #[serde(default)]
    user_max_age: Option<u32>,
    #[serde(default)]
    vary: Option<String>,
}

impl CacheHeaders {
    /// Applies the control's JSON; the message of the 400 on a bad one.
    pub(crate) fn control(&self, body: &[u8]) -> Result<(), String> {
        let c: Control = serde_json::from_slice(body).map_err(|e| {
            format!(
                "invalid cache JSON ({e}); expected {{\"max_age\":2|null, \"user_max_age\":60, \
                 \"vary\":\"X-Thing\"}}"
            )
        })?;
        let vary = match c.vary {
            Some(v) => Some(HeaderValue::from_str(&v).map_err(|_| format!("invalid vary {v:?}"))?),
            None => None,
        };
        self.max_age
            .store(c.max_age.map_or(-1, i64::from), Ordering::Relaxed);
        self.user_max_age
            .store(c.user_max_age.map_or(-1, i64::from), Ordering::Relaxed);
        *self.vary.lock().unwrap_or_else(PoisonError::into_inner) = vary;
        Ok(())
    }

    pub(crate) fn reset(&self) {
        self.max_age.store(-1, Ordering::Relaxed);
        self.user_max_age.store(-1, Ordering::Relaxed);
        *self.vary.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    fn max_age(&self, spotify: u64) -> u64 {
        u64::try_from(self.max_age.load(Ordering::Relaxed)).unwrap_or(spotify)
    }

    fn user_max_age(&self) -> u64 {
        u64::try_from(self.user_max_age.load(Ordering::Relaxed)).unwrap_or(0)
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
            _ => format!("private, max-age={}", self.user_max_age()),
        };
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(header::CACHE_CONTROL, v);
        }
        let vary = self
            .vary
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(vary) = vary {
            resp.headers_mut().append(header::VARY, vary);
        }
        resp
    }
}
