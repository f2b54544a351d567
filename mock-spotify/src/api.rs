//! The Web API subset under `/v1`, plus the 404 for everything no route claims.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{json, Value};

use crate::catalog::{self, Album, Artist, Catalog, Playlist, Track, User, MARKETS};
use crate::controls::apply_fault;
use crate::state::{App, Target};
use crate::{json_response, urlencode, Params};

const CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// Spotify's regular error object: `{"error":{"status":N,"message":"..."}}`.
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    json_response(
        status,
        &json!({ "error": { "status": status.as_u16(), "message": message } }),
        CONTENT_TYPE,
    )
}

fn unauthorized(message: &str) -> Response {
    let mut resp = error(StatusCode::UNAUTHORIZED, message);
    // RFC 6750 section 3: the error code is only for a token that was sent and is bad.
    let challenge = match message {
        "Invalid access token" | "The access token expired" => format!(
            "Bearer realm=\"spotify\", error=\"invalid_token\", error_description=\"{message}\""
        ),
        _ => "Bearer realm=\"spotify\"".to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    resp
}

fn ok(value: &Value) -> Response {
    json_response(StatusCode::OK, value, CONTENT_TYPE)
}

/// The API routes the mock knows.
enum Route<'a> {
    Search,
    Track(&'a str),
    Artist(&'a str),
    Album(&'a str),
    Me,
    CurrentlyPlaying,
    MyPlaylists,
    User(&'a str),
    Playlist(&'a str),
    PlaylistTracks(&'a str),
}

impl Route<'_> {
    fn needs_user(&self) -> bool {
        matches!(
            self,
            Route::Me | Route::CurrentlyPlaying | Route::MyPlaylists
        )
    }
}

fn route(path: &str) -> Option<Route<'_>> {
    let segments: Vec<&str> = path.strip_prefix("/v1/")?.split('/').collect();
    Some(match segments.as_slice() {
        ["search"] => Route::Search,
        ["tracks", id] if !id.is_empty() => Route::Track(id),
        ["artists", id] if !id.is_empty() => Route::Artist(id),
        ["albums", id] if !id.is_empty() => Route::Album(id),
        ["me"] => Route::Me,
        ["me", "player", "currently-playing"] => Route::CurrentlyPlaying,
        ["me", "playlists"] => Route::MyPlaylists,
        ["users", id] if !id.is_empty() => Route::User(id),
        ["playlists", id] if !id.is_empty() => Route::Playlist(id),
        ["playlists", id, "tracks"] if !id.is_empty() => Route::PlaylistTracks(id),
        _ => return None,
    })
}

/// Who a valid bearer token speaks for.
struct Caller {
    user: Option<String>,
    scopes: Vec<String>,
}

impl Caller {
    fn has(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

fn authenticate(app: &App, headers: &HeaderMap) -> Result<Caller, Response> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized("No token provided"));
    };
    let bad_scheme = || {
        error(
            StatusCode::BAD_REQUEST,
            "Only valid bearer authentication supported",
        )
    };
    let value = value.to_str().map_err(|_| bad_scheme())?;
    let (scheme, token) = value.trim().split_once(' ').ok_or_else(bad_scheme)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(bad_scheme());
    }
    let store = app.lock();
    let Some(grant) = store.access.get(token) else {
        return Err(unauthorized("Invalid access token"));
    };
    if grant.expires_at <= Instant::now() {
        return Err(unauthorized("The access token expired"));
    }
    Ok(Caller {
        user: grant.user.clone(),
        scopes: grant.scopes.clone(),
    })
}

/// Entry point for every request no other route claimed.
pub(crate) async fn handle(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    if path != "/v1" && !path.starts_with("/v1/") {
        let mut resp = Response::new(Body::from("Not Found\n"));
        *resp.status_mut() = StatusCode::NOT_FOUND;
        return resp;
    }
    let hit = app.arrive(Target::Api, &method, &uri, &headers, Some(&body), None);
    if let Some(resp) = apply_fault(hit, Target::Api).await {
        return resp;
    }
    let Some(route) = route(path) else {
        return error(StatusCode::NOT_FOUND, "Service not found");
    };
    if method != Method::GET {
        return error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed");
    }
    let caller = match authenticate(&app, &headers) {
        Ok(caller) => caller,
        Err(resp) => return resp,
    };
    let me = caller.user.as_deref().and_then(catalog::user);
    if route.needs_user() && me.is_none() {
        return unauthorized("Valid user authentication required");
    }
    let query = Params::parse(uri.query().unwrap_or("").as_bytes());
    let api = Api {
        base: &app.base,
        catalog: catalog::catalog(),
    };
    match (route, me) {
        (Route::Search, _) => api.search(&query),
        (Route::Track(id), _) => api.track(id),
        (Route::Artist(id), _) => api.artist(id),
        (Route::Album(id), _) => api.album(id),
        (Route::User(id), _) => match catalog::user(id) {
            Some(user) => ok(&api.public_user(user)),
            None => error(StatusCode::NOT_FOUND, "Resource not found"),
        },
        (Route::Playlist(id), _) => api.playlist(id),
        (Route::PlaylistTracks(id), _) => api.playlist_tracks(id, &query),
        (Route::Me, Some(user)) => ok(&api.private_user(user, &caller)),
        (Route::CurrentlyPlaying, Some(user)) => api.currently_playing(user, &caller),
        (Route::MyPlaylists, Some(user)) => api.my_playlists(user, &query),
        // needs_user() was checked above.
        (Route::Me | Route::CurrentlyPlaying | Route::MyPlaylists, None) => {
            unauthorized("Valid user authentication required")
        }
    }
}

/// `limit` and `offset` query parameters, validated like Spotify does.
fn paging(query: &Params, max_limit: usize) -> Result<(usize, usize), Response> {
    let limit = match query.get("limit") {
        None => 20,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=max_limit).contains(&n) => n,
            _ => return Err(error(StatusCode::BAD_REQUEST, "Invalid limit")),
        },
    };
    let offset = match query.get("offset") {
        None => 0,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n <= 100_000 => n,
            _ => return Err(error(StatusCode::BAD_REQUEST, "Invalid offset")),
        },
    };
    Ok((limit, offset))
}

/// A paging object; `link(offset)` renders the absolute URL of a page.
fn page(
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

/// Spotify IDs are 22 base62 characters; anything else is rejected before lookup.
fn valid_id(id: &str) -> bool {
    id.len() == 22 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

struct Api<'a> {
    base: &'a str,
    catalog: &'a Catalog,
}

impl Api<'_> {
    fn external(&self, kind: &str, id: &str) -> Value {
        json!({ "spotify": format!("https://open.spotify.com/{kind}/{id}") })
    }

    fn simple_artist(&self, artist: &Artist) -> Value {
        json!({
            "external_urls": self.external("artist", &artist.id),
            "href": format!("{}/v1/artists/{}", self.base, artist.id),
            "id": artist.id,
            "name": artist.name,
            "type": "artist",
            "uri": format!("spotify:artist:{}", artist.id),
        })
    }

    fn full_artist(&self, artist: &Artist) -> Value {
        let mut value = self.simple_artist(artist);
        value["followers"] = json!({ "href": null, "total": artist.followers });
        value["genres"] = json!([]);
        value["images"] = json!([]);
        value["popularity"] = json!(artist.popularity);
        value
    }

    fn simple_album(&self, album: &Album) -> Value {
        json!({
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
        })
    }

    /// A track without its album (Spotify's simplified track object).
    fn simple_track(&self, track: &Track) -> Value {
        json!({
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
        })
    }

    fn full_track(&self, track: &Track) -> Value {
        let mut value = self.simple_track(track);
        value["album"] = self.simple_album(&self.catalog.albums[track.album]);
        value["external_ids"] = json!({});
        value["popularity"] = json!(track.popularity);
        value
    }

    fn public_user(&self, user: &User) -> Value {
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
    fn private_user(&self, user: &User, caller: &Caller) -> Value {
        let mut value = self.public_user(user);
        if caller.has("user-read-email") {
            value["email"] = json!(user.email);
        }
        if caller.has("user-read-private") {
            value["country"] = json!(user.country);
            value["product"] = json!(user.product);
            value["explicit_content"] = json!({ "filter_enabled": false, "filter_locked": false });
        }
        value
    }

    fn owner(&self, owner: &str) -> Value {
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

    fn simple_playlist(&self, playlist: &Playlist) -> Value {
        json!({
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
            "snapshot_id": snapshot_id(playlist),
            "tracks": {
                "href": format!("{}/v1/playlists/{}/tracks", self.base, playlist.id),
                "total": playlist.tracks.len(),
            },
            "type": "playlist",
            "uri": format!("spotify:playlist:{}", playlist.id),
        })
    }

    fn search(&self, query: &Params) -> Response {
        let q = match query.get("q").or_else(|| query.get("query")) {
            Some(q) if !q.trim().is_empty() => q,
            _ => return error(StatusCode::BAD_REQUEST, "No search query"),
        };
        let Some(types) = query.get("type") else {
            return error(StatusCode::BAD_REQUEST, "Missing parameter type");
        };
        if !types.split(',').any(|t| t.trim() == "track") {
            return error(StatusCode::BAD_REQUEST, "Bad search type field");
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

    fn track(&self, id: &str) -> Response {
        if !valid_id(id) {
            return error(StatusCode::BAD_REQUEST, "invalid id");
        }
        match self.catalog.track_by_id(id) {
            Some(track) => ok(&self.full_track(track)),
            None => error(StatusCode::NOT_FOUND, "Resource not found"),
        }
    }

    fn artist(&self, id: &str) -> Response {
        if !valid_id(id) {
            return error(StatusCode::BAD_REQUEST, "invalid id");
        }
        match self.catalog.artist_by_id(id) {
            Some(artist) => ok(&self.full_artist(artist)),
            None => error(StatusCode::NOT_FOUND, "Resource not found"),
        }
    }

    fn album(&self, id: &str) -> Response {
        if !valid_id(id) {
            return error(StatusCode::BAD_REQUEST, "invalid id");
        }
        let Some(album) = self.catalog.album_by_id(id) else {
            return error(StatusCode::NOT_FOUND, "Resource not found");
        };
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
        ok(&value)
    }

    fn currently_playing(&self, user: &User, caller: &Caller) -> Response {
        if !caller.has("user-read-currently-playing") && !caller.has("user-read-playback-state") {
            return unauthorized("Permissions missing");
        }
        let Some(track) = user
            .now_playing
            .and_then(|(artist, title)| self.catalog.find_track(artist, title))
            .map(|i| &self.catalog.tracks[i])
        else {
            // Nothing playing: Spotify answers 204 with no body and no content type.
            let mut resp = Response::new(Body::empty());
            *resp.status_mut() = StatusCode::NO_CONTENT;
            return resp;
        };
        let now = unix_millis();
        ok(&json!({
            "actions": { "disallows": {} },
            "context": null,
            "currently_playing_type": "track",
            "is_playing": true,
            "item": self.full_track(track),
            // The track loops on the wall clock, so the progress moves like a real one.
            "progress_ms": now % track.duration_ms.max(1),
            "timestamp": now,
        }))
    }

    fn my_playlists(&self, user: &User, query: &Params) -> Response {
        let (limit, offset) = match paging(query, 50) {
            Ok(p) => p,
            Err(resp) => return resp,
        };
        let mine: Vec<&Playlist> = self
            .catalog
            .playlists
            .iter()
            .filter(|p| p.owner == user.id)
            .collect();
        let items = mine
            .iter()
            .skip(offset)
            .take(limit)
            .map(|p| self.simple_playlist(p))
            .collect();
        let link = |o: usize| format!("{}/v1/me/playlists?offset={o}&limit={limit}", self.base);
        ok(&page(items, mine.len(), offset, limit, link))
    }

    fn playlist_items(&self, playlist: &Playlist, offset: usize, limit: usize) -> Value {
        let added_by = self.owner(playlist.owner);
        let items = playlist
            .tracks
            .iter()
            .skip(offset)
            .take(limit)
            .map(|&i| {
                json!({
                    "added_at": "2024-01-01T00:00:00Z",
                    "added_by": added_by,
                    "is_local": false,
                    "primary_color": null,
                    "track": self.full_track(&self.catalog.tracks[i]),
                })
            })
            .collect();
        let link = |o: usize| {
            format!(
                "{}/v1/playlists/{}/tracks?offset={o}&limit={limit}",
                self.base, playlist.id
            )
        };
        page(items, playlist.tracks.len(), offset, limit, link)
    }

    fn find_playlist(&self, id: &str) -> Result<&Playlist, Response> {
        if !valid_id(id) {
            return Err(error(StatusCode::BAD_REQUEST, "Invalid playlist Id"));
        }
        self.catalog
            .playlist_by_id(id)
            .ok_or_else(|| error(StatusCode::NOT_FOUND, "Resource not found"))
    }

    fn playlist(&self, id: &str) -> Response {
        let playlist = match self.find_playlist(id) {
            Ok(p) => p,
            Err(resp) => return resp,
        };
        let mut value = self.simple_playlist(playlist);
        value["followers"] = json!({ "href": null, "total": playlist.followers });
        value["tracks"] = self.playlist_items(playlist, 0, 100);
        ok(&value)
    }

    fn playlist_tracks(&self, id: &str, query: &Params) -> Response {
        let playlist = match self.find_playlist(id) {
            Ok(p) => p,
            Err(resp) => return resp,
        };
        match paging(query, 100) {
            Ok((limit, offset)) => ok(&self.playlist_items(playlist, offset, limit)),
            Err(resp) => resp,
        }
    }
}

/// A stable snapshot id: the playlist never changes, so neither does this.
fn snapshot_id(playlist: &Playlist) -> String {
    catalog::base62_id(&format!(
        "snapshot:{}:{}",
        playlist.id,
        playlist.tracks.len()
    ))
}
