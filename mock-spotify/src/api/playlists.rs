//! The playlist endpoints: reading a playlist and its items, the caller's own
//! playlists, and adding and removing tracks (which bump the snapshot id).

use std::collections::BTreeSet;

use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::input::{paging, parse_body, track_index, valid_id};
use super::render::{ok, page, snapshot_id, Api, Entries};
use super::time::{rfc3339, unix_secs, SEEDED_ADDED_AT};
use crate::catalog::{self, Playlist, User};
use crate::errors::{bad_request, forbidden, resource_not_found};
use crate::http::{json_response, Params, JSON_UTF8};
use crate::state::PlaylistEntry;

/// Spotify takes at most this many items per add/remove call.
const MAX_ITEMS_PER_CALL: usize = 100;

/// A playlist's state, copied out of the lock so rendering happens without it.
struct PlaylistView {
    /// Only the requested page of entries.
    entries: Vec<PlaylistEntry>,
    total: usize,
    version: u64,
}

#[derive(Deserialize, Default)]
struct AddTracksBody {
    uris: Option<Vec<String>>,
    position: Option<i64>,
}

#[derive(Deserialize, Default)]
struct RemoveTracksBody {
    /// `items` since February 2026; `tracks` before.
    items: Option<Vec<RemoveTrack>>,
    tracks: Option<Vec<RemoveTrack>>,
}

#[derive(Deserialize)]
struct RemoveTrack {
    uri: String,
    /// Remove only these occurrences (each must hold `uri`), not all of them.
    positions: Option<Vec<usize>>,
}

impl Api<'_> {
    /// Entries `offset..offset + limit` of a playlist, its length and version.
    fn view(
        &self,
        playlist: &Playlist,
        offset: usize,
        limit: usize,
    ) -> Result<PlaylistView, Response> {
        let store = self.app.lock();
        let state = store
            .playlists
            .get(&playlist.id)
            .ok_or_else(resource_not_found)?;
        Ok(PlaylistView {
            entries: state
                .entries
                .iter()
                .skip(offset)
                .take(limit)
                .copied()
                .collect(),
            total: state.entries.len(),
            version: state.version,
        })
    }

    pub(super) fn my_playlists(&self, user: &User, query: &Params) -> Result<Response, Response> {
        self.playlists_of(user.id, false, query, "/v1/me/playlists")
    }

    /// `GET /v1/users/{id}/playlists`: the user's public playlists (extended quota only).
    pub(super) fn user_playlists(&self, id: &str, query: &Params) -> Result<Response, Response> {
        let user = catalog::user(id).ok_or_else(resource_not_found)?;
        let path = format!("/v1/users/{}/playlists", user.id);
        self.playlists_of(user.id, true, query, &path)
    }

    fn playlists_of(
        &self,
        owner: &str,
        public_only: bool,
        query: &Params,
        path: &str,
    ) -> Result<Response, Response> {
        let (limit, offset) = paging(query, 50)?;
        let mine: Vec<&Playlist> = self
            .catalog
            .playlists
            .iter()
            .filter(|p| p.owner == owner && (p.public || !public_only))
            .collect();
        let mut items = Vec::new();
        for playlist in mine.iter().skip(offset).take(limit) {
            let view = self.view(playlist, 0, 0)?;
            items.push(self.simple_playlist(playlist, view.total, view.version));
        }
        let link = |o: usize| format!("{}{path}?offset={o}&limit={limit}", self.base);
        Ok(ok(&page(items, mine.len(), offset, limit, link)))
    }

    fn playlist_items(
        &self,
        playlist: &Playlist,
        view: &PlaylistView,
        offset: usize,
        limit: usize,
        entries: Entries,
    ) -> Value {
        let (path, key) = entries.names();
        let added_by = self.owner(playlist.owner);
        let items = view
            .entries
            .iter()
            .map(|entry| {
                json!({
                    "added_at": entry.added_at.map_or_else(|| SEEDED_ADDED_AT.to_string(), rfc3339),
                    "added_by": added_by,
                    "is_local": false,
                    "primary_color": null,
                    key: self.full_track(&self.catalog.tracks[entry.track]),
                })
            })
            .collect();
        let link = |o: usize| {
            format!(
                "{}/v1/playlists/{}/{path}?offset={o}&limit={limit}",
                self.base, playlist.id
            )
        };
        page(items, view.total, offset, limit, link)
    }

    fn find_playlist(&self, id: &str) -> Result<&Playlist, Response> {
        if !valid_id(id) {
            return Err(bad_request("Invalid playlist Id"));
        }
        self.catalog
            .playlist_by_id(id)
            .ok_or_else(resource_not_found)
    }

    pub(super) fn playlist(&self, id: &str) -> Result<Response, Response> {
        let playlist = self.find_playlist(id)?;
        let view = self.view(playlist, 0, 100)?;
        let mut value = self.simple_playlist(playlist, view.total, view.version);
        value["followers"] = json!({ "href": null, "total": playlist.followers });
        // Since February 2026 the entries come as `items`; `tracks` keeps only its link
        // and total (as in the simplified object).
        value["items"] = self.playlist_items(playlist, &view, 0, 100, Entries::Items);
        Ok(ok(&value))
    }

    /// `GET /v1/playlists/{id}/items` (or the old `/tracks`, shaped as it was).
    pub(super) fn playlist_tracks(
        &self,
        id: &str,
        query: &Params,
        entries: Entries,
    ) -> Result<Response, Response> {
        let playlist = self.find_playlist(id)?;
        let (limit, offset) = paging(query, 100)?;
        let view = self.view(playlist, offset, limit)?;
        Ok(ok(
            &self.playlist_items(playlist, &view, offset, limit, entries)
        ))
    }

    /// The playlist `id` if `caller` may change it: that takes the scope for its
    /// visibility, and ownership. `action` completes Spotify's refusal, "You cannot
    /// {action} a playlist you don't own."
    fn modifiable(
        &self,
        id: &str,
        user: &User,
        caller: &Caller,
        action: &str,
    ) -> Result<&Playlist, Response> {
        let playlist = self.find_playlist(id)?;
        let scope = if playlist.public {
            "playlist-modify-public"
        } else {
            "playlist-modify-private"
        };
        if !caller.has(scope) {
            return Err(forbidden("Insufficient client scope"));
        }
        if playlist.owner != user.id {
            return Err(forbidden(&format!(
                "You cannot {action} a playlist you don't own."
            )));
        }
        Ok(playlist)
    }

    /// `POST /v1/playlists/{id}/tracks` → 201 `{"snapshot_id"}`.
    pub(super) fn add_tracks(
        &self,
        id: &str,
        user: &User,
        caller: &Caller,
        query: &Params,
        body: &[u8],
    ) -> Result<Response, Response> {
        let playlist = self.modifiable(id, user, caller, "add tracks to")?;
        let body: AddTracksBody = parse_body(body)?;
        // URIs in the query win over those in the body, as Spotify documents.
        let uris: Vec<String> = match query.get("uris") {
            Some(list) if list.trim().is_empty() => Vec::new(),
            Some(list) => list.split(',').map(|u| u.trim().to_string()).collect(),
            None => body.uris.unwrap_or_default(),
        };
        check_item_count(uris.len())?;
        let tracks = uris
            .iter()
            .map(|uri| track_index(self.catalog, uri))
            .collect::<Result<Vec<_>, _>>()?;
        let position = match query.get("position") {
            Some(p) => Some(
                p.parse::<i64>()
                    .map_err(|_| bad_request("Invalid position"))?,
            ),
            None => body.position,
        };
        let added_at = Some(unix_secs());
        let mut store = self.app.lock();
        let state = store
            .playlists
            .get_mut(&playlist.id)
            .ok_or_else(resource_not_found)?;
        let at = match position {
            None => state.entries.len(),
            Some(p) => usize::try_from(p)
                .ok()
                .filter(|&p| p <= state.entries.len())
                .ok_or_else(|| bad_request("Index out of bounds"))?,
        };
        state.entries.splice(
            at..at,
            tracks
                .into_iter()
                .map(|track| PlaylistEntry { track, added_at }),
        );
        state.version += 1;
        let snapshot = snapshot_id(&playlist.id, state.version);
        drop(store);
        Ok(json_response(
            StatusCode::CREATED,
            &json!({ "snapshot_id": snapshot }),
            JSON_UTF8,
        ))
    }

    /// `DELETE /v1/playlists/{id}/tracks` → 200 `{"snapshot_id"}`; every occurrence of
    /// each URI goes, unless `positions` names which.
    pub(super) fn remove_tracks(
        &self,
        id: &str,
        user: &User,
        caller: &Caller,
        body: &[u8],
    ) -> Result<Response, Response> {
        let playlist = self.modifiable(id, user, caller, "remove tracks from")?;
        let body: RemoveTracksBody = parse_body(body)?;
        let items = body
            .items
            .or(body.tracks)
            .ok_or_else(|| bad_request("Missing required field: items"))?;
        check_item_count(items.len())?;
        let mut targets = Vec::with_capacity(items.len());
        for item in &items {
            targets.push((
                track_index(self.catalog, &item.uri)?,
                item.positions.as_deref(),
            ));
        }
        let mut store = self.app.lock();
        let state = store
            .playlists
            .get_mut(&playlist.id)
            .ok_or_else(resource_not_found)?;
        let mut doomed = BTreeSet::new();
        for (track, positions) in targets {
            match positions {
                Some(positions) => {
                    for &p in positions {
                        if state.entries.get(p).map(|e| e.track) != Some(track) {
                            return Err(bad_request(
                                "Could not remove tracks, please check parameters.",
                            ));
                        }
                        doomed.insert(p);
                    }
                }
                None => doomed.extend(
                    state
                        .entries
                        .iter()
                        .enumerate()
                        .filter(|(_, e)| e.track == track)
                        .map(|(i, _)| i),
                ),
            }
        }
        let mut index = 0;
        state.entries.retain(|_| {
            let keep = !doomed.contains(&index);
            index += 1;
            keep
        });
        state.version += 1;
        let snapshot = snapshot_id(&playlist.id, state.version);
        drop(store);
        Ok(ok(&json!({ "snapshot_id": snapshot })))
    }
}

/// An add or remove call names at least one item and at most `MAX_ITEMS_PER_CALL`.
fn check_item_count(count: usize) -> Result<(), Response> {
    if count == 0 {
        return Err(bad_request("No uris provided"));
    }
    if count > MAX_ITEMS_PER_CALL {
        return Err(bad_request("Too many ids requested"));
    }
    Ok(())
}
