//! The read-only lookups of the catalogue: search, tracks, artists, albums and user
//! profiles; and those Spotify removed for development-mode apps in February 2026 (several
//! at once, an artist's top tracks, markets, new releases), which `Route::retired` refuses
//! them and an extended-quota app still gets.

use axum::response::Response;
use serde_json::json;

use super::input::{paging, paging_with, valid_id};
use super::render::{ok, page, Api};
use crate::catalog::{self, MARKETS};
use crate::errors::{bad_request, resource_not_found};
use crate::http::{urlencode, Params};

impl Api<'_> {
    pub(super) fn search(&self, query: &Params) -> Response {
        let q = match query.get("q").or_else(|| query.get("query")) {
            Some(q) if !q.trim().is_empty() => q,
            _ => return bad_request("No search query"),
        };
        let Some(types) = query.get("type") else {
            return bad_request("Missing parameter type");
        };
        if !types.split(',').any(|t| t.trim() == "track") {
            return bad_request("Bad search type field");
        }
        // Development mode since February 2026: at most 10, 5 unless asked (a 400 past it,
        // "Invalid limit", as real apps report).
        let (default_limit, max_limit) = if self.development() {
            (5, 10)
        } else {
            (20, 50)
        };
        let (limit, offset) = match paging_with(query, default_limit, max_limit) {
            Ok(p) => p,
            Err(resp) => return resp,
        };
        let matches = self.catalog.search_tracks(q);
        let items = matches
            .iter()
            .skip(offset)
            .take(limit)
            .map(|&i| self.full_track(&self.catalog.tracks[i]))
            .collect();
        let encoded = urlencode(q);
        let link = |o: usize| {
            format!(
                "{}/v1/search?query={encoded}&type=track&offset={o}&limit={limit}",
                self.base
            )
        };
        ok(&json!({ "tracks": page(items, matches.len(), offset, limit, link) }))
    }

    pub(super) fn track(&self, id: &str) -> Result<Response, Response> {
        let track = lookup(id, |id| self.catalog.track_by_id(id))?;
        Ok(ok(&self.full_track(track)))
    }

    pub(super) fn artist(&self, id: &str) -> Result<Response, Response> {
        let artist = lookup(id, |id| self.catalog.artist_by_id(id))?;
        Ok(ok(&self.full_artist(artist)))
    }

    pub(super) fn album(&self, id: &str) -> Result<Response, Response> {
        let album = lookup(id, |id| self.catalog.album_by_id(id))?;
        let mut value = self.simple_album(album);
        let items = album
            .tracks
            .iter()
            .map(|&i| self.simple_track(&self.catalog.tracks[i]))
            .collect();
        let total = album.tracks.len();
        let link = |o: usize| {
            format!(
                "{}/v1/albums/{}/tracks?offset={o}&limit=50",
                self.base, album.id
            )
        };
        value["copyrights"] = json!([]);
        value["external_ids"] = json!({});
        value["genres"] = json!([]);
        value["label"] = json!("Mock Records");
        value["popularity"] = json!(self.catalog.artists[album.artist].popularity);
        value["tracks"] = page(items, total, 0, 50, link);
        Ok(ok(&value))
    }

    /// `/v1/users/{id}`: user ids are not base62, so there is no id check.
    pub(super) fn user(&self, id: &str) -> Result<Response, Response> {
        let user = catalog::user(id).ok_or_else(resource_not_found)?;
        Ok(ok(&self.public_user(user)))
    }
}

/// What `/tracks?ids=`, `/albums?ids=` and `/artists?ids=` return.
#[derive(Clone, Copy)]
pub(super) enum Several {
    Tracks,
    Albums,
    Artists,
}

impl Several {
    /// The answer's key, and the most ids Spotify takes at once.
    fn key_and_max(self) -> (&'static str, usize) {
        match self {
            Several::Tracks => ("tracks", 50),
            Several::Albums => ("albums", 20),
            Several::Artists => ("artists", 50),
        }
    }
}

impl Api<'_> {
    /// Several objects by `ids=` (comma-separated); an unknown id is `null` in its place.
    pub(super) fn several(&self, kind: Several, query: &Params) -> Result<Response, Response> {
        let (key, max) = kind.key_and_max();
        let ids: Vec<&str> = match query.get("ids") {
            Some(ids) if !ids.is_empty() => ids.split(',').collect(),
            _ => return Err(bad_request("invalid request")),
        };
        if ids.len() > max {
            return Err(bad_request("Too many ids requested"));
        }
        let mut items = Vec::with_capacity(ids.len());
        for id in ids {
            if !valid_id(id) {
                return Err(bad_request("invalid id"));
            }
            let c = self.catalog;
            items.push(match kind {
                Several::Tracks => c.track_by_id(id).map(|t| self.full_track(t)),
                Several::Albums => c.album_by_id(id).map(|a| self.simple_album(a)),
                Several::Artists => c.artist_by_id(id).map(|a| self.full_artist(a)),
            });
        }
        Ok(ok(&json!({ key: items })))
    }

    /// An artist's ten most popular tracks.
    pub(super) fn top_tracks(&self, id: &str) -> Result<Response, Response> {
        let artist = lookup(id, |id| {
            self.catalog.artists.iter().position(|a| a.id == id)
        })?;
        let mut tracks: Vec<_> = self
            .catalog
            .tracks
            .iter()
            .filter(|t| t.artist == artist)
            .collect();
        tracks.sort_by_key(|t| std::cmp::Reverse(t.popularity));
        let items: Vec<_> = tracks.iter().take(10).map(|t| self.full_track(t)).collect();
        Ok(ok(&json!({ "tracks": items })))
    }

    pub(super) fn markets(&self) -> Response {
        ok(&json!({ "markets": MARKETS }))
    }

    /// The catalogue's albums, newest first.
    pub(super) fn new_releases(&self, query: &Params) -> Result<Response, Response> {
        let (limit, offset) = paging(query, 50)?;
        let mut albums: Vec<_> = self.catalog.albums.iter().collect();
        albums.sort_by_key(|a| std::cmp::Reverse(a.year));
        let items = albums
            .iter()
            .skip(offset)
            .take(limit)
            .map(|a| self.simple_album(a))
            .collect();
        let link = |o: usize| {
            format!(
                "{}/v1/browse/new-releases?offset={o}&limit={limit}",
                self.base
            )
        };
        Ok(ok(
            &json!({ "albums": page(items, albums.len(), offset, limit, link) }),
        ))
    }
}

/// A catalogue object by its ID: 400 for a malformed ID, 404 for an unknown one.
fn lookup<T>(id: &str, find: impl FnOnce(&str) -> Option<T>) -> Result<T, Response> {
    if !valid_id(id) {
        return Err(bad_request("invalid id"));
    }
    find(id).ok_or_else(resource_not_found)
}
