//! JSON rendering of the catalogue as Spotify's objects: artists, albums, tracks,
//! users, playlists and paging objects; and the 200 and 204 responses that carry them.
//!
//! [`Api`] is what every endpoint works with. Its methods are spread by concern:
//! rendering here, the endpoints in `browse`, `player` and `playlists`.
//!
//! A development-mode app gets the objects without the fields Spotify withholds from it
//! since February 2026 (the Migration Guide): the user's `country`, `email`,
//! `explicit_content`, `followers` and `product`; an album's and a track's
//! `available_markets` and `popularity`; an artist's `followers` and `popularity`; a
//! simplified playlist's `tracks` (only `items` is left).

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::auth::Caller;
use crate::catalog::{self, Album, Artist, Catalog, Playlist, Track, User, MARKETS};
use crate::config::AppMode;
use crate::http::{json_response, JSON_UTF8};
use crate::state::App;

/// How a playlist's entries are served: the pre-2026 `/tracks` path with `track` in each
/// entry, or February 2026's `/items` with `item`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Entries {
    Tracks,
    Items,
}

impl Entries {
    /// The path segment after the playlist id, and the key of each entry's object.
    pub(super) fn names(self) -> (&'static str, &'static str) {
        match self {
            Entries::Tracks => ("tracks", "track"),
            Entries::Items => ("items", "item"),
        }
    }
}

/// One Web API request's view of the mock.
pub(super) struct Api<'a> {
    pub app: &'a App,
    /// `http://ADDR`, for absolute links.
    pub base: &'a str,
    pub catalog: &'a Catalog,
    /// The app's mode when the request arrived: what the objects carry.
    pub mode: AppMode,
}

/// Removes `fields` from a JSON object.
fn without(mut value: Value, fields: &[&str]) -> Value {
    if let Some(map) = value.as_object_mut() {
        for field in fields {
            map.remove(*field);
        }
    }
    value
}

impl Api<'_> {
    /// `value` as this app may see it: `withheld` removed in development mode.
    pub(super) fn for_mode(&self, value: Value, withheld: &[&str]) -> Value {
        match self.mode {
            AppMode::Development => without(value, withheld),
            AppMode::ExtendedQuota => value,
        }
    }

    /// Whether the app is in development mode.
    pub(super) fn development(&self) -> bool {
        self.mode == AppMode::Development
    }

    pub(super) fn external(&self, kind: &str, id: &str) -> Value {
        json!({ "spotify": format!("https://open.spotify.com/{kind}/{id}") })
    }

    pub(super) fn simple_artist(&self, artist: &Artist) -> Value {
        json!({
            "external_urls": self.external("artist", &artist.id),
            "href": format!("{}/v1/artists/{}", self.base, artist.id),
            "id": artist.id,
            "name": artist.name,
            "type": "artist",
            "uri": format!("spotify:artist:{}", artist.id),
        })
    }

    pub(super) fn full_artist(&self, artist: &Artist) -> Value {
        let mut value = self.simple_artist(artist);
        value["followers"] = json!({ "href": null, "total": artist.followers });
        value["genres"] = json!([]);
        value["images"] = json!([]);
        value["popularity"] = json!(artist.popularity);
        self.for_mode(value, &["followers", "popularity"])
    }

    pub(super) fn simple_album(&self, album: &Album) -> Value {
        let value = json!({
            "album_type": "album",
            "artists": [self.simple_artist(&self.catalog.artists[album.artist])],
            "available_markets": MARKETS,
            "external_urls": self.external("album", &album.id),
            "href": format!("{}/v1/albums/{}", self.base, album.id),
            "id": album.id,
            "images": [],
            "name": album.name,
            "release_date": album.year.to_string(),
            "release_date_precision": "year",
            "total_tracks": album.tracks.len(),
            "type": "album",
            "uri": format!("spotify:album:{}", album.id),
        });
        self.for_mode(value, &["available_markets"])
    }

    /// A track without its album (Spotify's simplified track object).
    pub(super) fn simple_track(&self, track: &Track) -> Value {
        let value = json!({
            "artists": [self.simple_artist(&self.catalog.artists[track.artist])],
            "available_markets": MARKETS,
            "disc_number": 1,
            "duration_ms": track.duration_ms,
            "explicit": false,
            "external_urls": self.external("track", &track.id),
            "href": format!("{}/v1/tracks/{}", self.base, track.id),
            "id": track.id,
            "is_local": false,
            "name": track.name,
            "preview_url": null,
            "track_number": track.track_number,
            "type": "track",
            "uri": format!("spotify:track:{}", track.id),
        });
        self.for_mode(value, &["available_markets"])
    }

    pub(super) fn full_track(&self, track: &Track) -> Value {
        let mut value = self.simple_track(track);
        value["album"] = self.simple_album(&self.catalog.albums[track.album]);
        value["external_ids"] = json!({});
        value["popularity"] = json!(track.popularity);
        self.for_mode(value, &["popularity"])
    }

    pub(super) fn public_user(&self, user: &User) -> Value {
        json!({
            "display_name": user.display_name,
            "external_urls": self.external("user", user.id),
            "followers": { "href": null, "total": user.followers },
            "href": format!("{}/v1/users/{}", self.base, user.id),
            "id": user.id,
            "images": [],
            "type": "user",
            "uri": format!("spotify:user:{}", user.id),
        })
    }

    /// `/v1/me`: the private fields appear only with the scopes that grant them.
    pub(super) fn private_user(&self, user: &User, caller: &Caller) -> Value {
        let mut value = self.public_user(user);
        value["account_id"] = json!(user.account_id);
        if caller.has("user-read-email") {
            value["email"] = json!(user.email);
        }
        if caller.has("user-read-private") {
            value["country"] = json!(user.country);
            value["product"] = json!(user.product);
            value["explicit_content"] = json!({ "filter_enabled": false, "filter_locked": false });
        }
        self.for_mode(
            value,
            &[
                "country",
                "email",
                "explicit_content",
                "followers",
                "product",
            ],
        )
    }

    pub(super) fn owner(&self, owner: &str) -> Value {
        match catalog::user(owner) {
            Some(user) => {
                let mut value = self.public_user(user);
                // Spotify's playlist owner object has no followers or images.
                if let Some(map) = value.as_object_mut() {
                    map.remove("followers");
                    map.remove("images");
                }
                value
            }
            None => Value::Null,
        }
    }

    pub(super) fn simple_playlist(&self, playlist: &Playlist, total: usize, version: u64) -> Value {
        let value = json!({
            "collaborative": false,
            "description": playlist.description,
            "external_urls": self.external("playlist", &playlist.id),
            "href": format!("{}/v1/playlists/{}", self.base, playlist.id),
            "id": playlist.id,
            "images": [],
            "name": playlist.name,
            "owner": self.owner(playlist.owner),
            "primary_color": null,
            "public": playlist.public,
            "snapshot_id": snapshot_id(&playlist.id, version),
            "items": {
                "href": format!("{}/v1/playlists/{}/items", self.base, playlist.id),
                "total": total,
            },
            // Beside `items` for the clients of before February 2026.
            "tracks": {
                "href": format!("{}/v1/playlists/{}/tracks", self.base, playlist.id),
                "total": total,
            },
            "type": "playlist",
            "uri": format!("spotify:playlist:{}", playlist.id),
        });
        // Kept for an extended-quota app only.
        self.for_mode(value, &["tracks"])
    }
}

pub(super) fn ok(value: &Value) -> Response {
    json_response(StatusCode::OK, value, JSON_UTF8)
}

pub(super) fn no_content() -> Response {
    // Spotify's 204s have no body and no content type.
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

/// A paging object; `link(offset)` renders the absolute URL of a page.
pub(super) fn page(
    items: Vec<Value>,
    total: usize,
    offset: usize,
    limit: usize,
    link: impl Fn(usize) -> String,
) -> Value {
    json!({
        "href": link(offset),
        "items": items,
        "limit": limit,
        "next": (offset + limit < total).then(|| link(offset + limit)),
        "offset": offset,
        "previous": (offset > 0).then(|| link(offset.saturating_sub(limit))),
        "total": total,
    })
}

/// A snapshot id that changes with every change to the playlist.
pub(super) fn snapshot_id(playlist_id: &str, version: u64) -> String {
    catalog::base62_id(&format!("snapshot:{playlist_id}:{version}"))
}
