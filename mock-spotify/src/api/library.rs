//! The user's library since February 2026: `PUT`/`DELETE /v1/me/library` save and remove
//! items of any kind by their Spotify URIs (replacing `/me/tracks`, `/me/albums`, following
//! and the like), and `GET /v1/me/library/contains` checks them.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::auth::Caller;
use super::input::{parse_body, valid_id};
use super::render::{ok, Api};
use crate::catalog::User;
use crate::errors::{bad_request, forbidden};
use crate::http::Params;

/// Spotify takes at most this many URIs per library call.
const MAX_URIS_PER_CALL: usize = 40;

#[derive(Deserialize, Default)]
struct LibraryBody {
    uris: Option<Vec<String>>,
}

impl Api<'_> {
    /// Whether `uri` names something in the catalogue that a library can hold.
    fn known_uri(&self, uri: &str) -> Result<(), Response> {
        let invalid = || bad_request(&format!("Invalid uri: {uri}"));
        let mut parts = uri.splitn(3, ':');
        let (Some("spotify"), Some(kind), Some(id)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        if !valid_id(id) {
            return Err(invalid());
        }
        let known = match kind {
            "track" => self.catalog.tracks.iter().any(|t| t.id == id),
            "album" => self.catalog.album_by_id(id).is_some(),
            "artist" => self.catalog.artist_by_id(id).is_some(),
            "playlist" => self.catalog.playlist_by_id(id).is_some(),
            _ => return Err(invalid()),
        };
        if known {
            Ok(())
        } else {
            Err(bad_request("Payload contains a non-existing ID"))
        }
    }

    /// The URIs of a library call: `?uris=a,b` wins over the body's `{"uris":[..]}`.
    fn library_uris(&self, query: &Params, body: &[u8]) -> Result<Vec<String>, Response> {
        let uris = match query.get("uris") {
            Some(list) => list
                .split(',')
                .map(|u| u.trim().to_string())
                .filter(|u| !u.is_empty())
                .collect(),
            None => parse_body::<LibraryBody>(body)?.uris.unwrap_or_default(),
        };
        if uris.is_empty() {
            return Err(bad_request("Missing required field: uris"));
        }
        if uris.len() > MAX_URIS_PER_CALL {
            return Err(bad_request("Too many ids requested"));
        }
        for uri in &uris {
            self.known_uri(uri)?;
        }
        Ok(uris)
    }

    /// `PUT` saves, `DELETE` removes; 200 with an empty body, as Spotify answers.
    pub(super) fn change_library(
        &self,
        user: &User,
        caller: &Caller,
        method: &Method,
        query: &Params,
        body: &[u8],
    ) -> Result<Response, Response> {
        if !caller.has("user-library-modify") {
            return Err(forbidden("Insufficient client scope"));
        }
        let uris = self.library_uris(query, body)?;
        let mut store = self.app.lock();
        let saved = store.library.entry(user.id.to_string()).or_default();
        for uri in uris {
            if method == Method::PUT {
                saved.insert(uri);
            } else {
                saved.remove(&uri);
            }
        }
        drop(store);
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = StatusCode::OK;
        Ok(resp)
    }

    /// `GET /v1/me/library/contains?uris=a,b` → `[true, false]`.
    pub(super) fn library_contains(
        &self,
        user: &User,
        caller: &Caller,
        query: &Params,
    ) -> Result<Response, Response> {
        if !caller.has("user-library-read") {
            return Err(forbidden("Insufficient client scope"));
        }
        let uris = self.library_uris(query, b"")?;
        let store = self.app.lock();
        let saved = store.library.get(user.id);
        let answer: Vec<bool> = uris
            .iter()
            .map(|u| saved.is_some_and(|s| s.contains(u)))
            .collect();
        drop(store);
        Ok(ok(&json!(answer)))
    }
}
