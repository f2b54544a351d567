//! The read-only lookups of the catalogue: search, tracks, artists, albums and user
//! profiles.

use axum::response::Response;
use serde_json::json;

use super::input::{paging, valid_id};
use super::render::{ok, page, Api};
use crate::catalog;
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
        let (limit, offset) = match paging(query, 50) {
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

/// A catalogue object by its ID: 400 for a malformed ID, 404 for an unknown one.
fn lookup<T>(id: &str, find: impl FnOnce(&str) -> Option<T>) -> Result<T, Response> {
    if !valid_id(id) {
        return Err(bad_request("invalid id"));
    }
    find(id).ok_or_else(resource_not_found)
}
