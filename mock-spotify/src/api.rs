//! The Web API subset under `/v1`, plus the 404 for everything no route claims.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Digest as _;

use crate::catalog::{self, Album, Artist, Catalog, Playlist, Track, User, MARKETS};
use crate::controls::apply_fault;
use crate::state::{App, Playback, PlaylistEntry, Target};
use crate::{json_response, urlencode, Params};

/// Spotify takes at most this many items per add/remove call.
const MAX_ITEMS_PER_CALL: usize = 100;
/// `added_at` of the seeded playlist tracks.
const SEEDED_ADDED_AT: &str = "2024-01-01T00:00:00Z";

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

fn bad_request(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, message)
}

fn forbidden(message: &str) -> Response {
    error(StatusCode::FORBIDDEN, message)
}

/// Player errors carry a `reason` next to the message, as Spotify's do.
fn player_error(status: StatusCode, message: &str, reason: &str) -> Response {
    json_response(
        status,
        &json!({ "error": { "status": status.as_u16(), "message": message, "reason": reason } }),
        CONTENT_TYPE,
    )
}

fn no_content() -> Response {
    // Spotify's 204s have no body and no content type.
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

/// A JSON body, or 400 "Error parsing JSON."; an empty body counts as `{}`.
fn parse_body<T: Default + for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|_| bad_request("Error parsing JSON."))
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
    Play,
    Pause,
}

impl Route<'_> {
    fn allows(&self, method: &Method) -> bool {
        match self {
            Route::PlaylistTracks(_) => {
                method == Method::GET || method == Method::POST || method == Method::DELETE
            }
            Route::Play | Route::Pause => method == Method::PUT,
            _ => method == Method::GET,
        }
    }

    fn needs_user(&self, method: &Method) -> bool {
        match self {
            Route::Me | Route::CurrentlyPlaying | Route::MyPlaylists => true,
            Route::Play | Route::Pause => true,
            // Reading a playlist is open to app tokens; changing one is not.
            Route::PlaylistTracks(_) => method != Method::GET,
            _ => false,
        }
    }
}

fn route(path: &str) -> Option<Route<'_>> {
    // api.spotify.com accepts one trailing slash (rspotify sends `me/`, `search/`...).
    let rest = path.strip_prefix("/v1/")?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let segments: Vec<&str> = rest.split('/').collect();
    Some(match segments.as_slice() {
        ["search"] => Route::Search,
        ["tracks", id] if !id.is_empty() => Route::Track(id),
        ["artists", id] if !id.is_empty() => Route::Artist(id),
        ["albums", id] if !id.is_empty() => Route::Album(id),
        ["me"] => Route::Me,
        ["me", "player", "currently-playing"] => Route::CurrentlyPlaying,
        ["me", "player", "play"] => Route::Play,
        ["me", "player", "pause"] => Route::Pause,
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
    let resp = serve(&app, &method, &uri, &headers, &body).await;
    let resp = if method == Method::GET {
        conditional(resp, &headers).await
    } else {
        resp
    };
    compress(resp, &headers).await
}

/// Entity tags on successful JSON reads, and `304 Not Modified` for a matching
/// `If-None-Match` (RFC 9110 §13.1.2), as api.spotify.com does for cacheable resources.
async fn conditional(resp: Response, request: &HeaderMap) -> Response {
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if resp.status() != StatusCode::OK || !is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    // Bodies here are built in memory, so collecting them cannot fail or grow.
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "Server error");
    };
    let digest = sha2::Sha256::digest(&bytes);
    let tag: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    let etag = format!("\"{tag}\"");
    let matches = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/") == etag
        });
    if let Ok(value) = HeaderValue::from_str(&etag) {
        parts.headers.insert(header::ETAG, value);
    }
    if matches {
        parts.status = StatusCode::NOT_MODIFIED;
        parts.headers.remove(header::CONTENT_TYPE);
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::empty());
    }
    Response::from_parts(parts, Body::from(bytes))
}

async fn serve(
    app: &App,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let hit = app.arrive(Target::Api, method, uri, headers, Some(body), None);
    if let Some(resp) = apply_fault(hit, Target::Api).await {
        return resp;
    }
    let Some(route) = route(uri.path()) else {
        return error(StatusCode::NOT_FOUND, "Service not found");
    };
    if !route.allows(method) {
        return error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed");
    }
    let caller = match authenticate(app, headers) {
        Ok(caller) => caller,
        Err(resp) => return resp,
    };
    let me = caller.user.as_deref().and_then(catalog::user);
    if route.needs_user(method) && me.is_none() {
        return unauthorized("Valid user authentication required");
    }
    let query = Params::parse(uri.query().unwrap_or("").as_bytes());
    let api = Api {
        app,
        base: &app.base,
        catalog: catalog::catalog(),
    };
    let result = match (route, me) {
        (Route::Search, _) => Ok(api.search(&query)),
        (Route::Track(id), _) => Ok(api.track(id)),
        (Route::Artist(id), _) => Ok(api.artist(id)),
        (Route::Album(id), _) => Ok(api.album(id)),
        (Route::User(id), _) => Ok(match catalog::user(id) {
            Some(user) => ok(&api.public_user(user)),
            None => error(StatusCode::NOT_FOUND, "Resource not found"),
        }),
        (Route::Playlist(id), _) => api.playlist(id),
        (Route::PlaylistTracks(id), _) if method == Method::GET => api.playlist_tracks(id, &query),
        (Route::PlaylistTracks(id), Some(user)) if method == Method::POST => {
            api.add_tracks(id, user, &caller, &query, body)
        }
        // allows() leaves DELETE as the only other method.
        (Route::PlaylistTracks(id), Some(user)) => api.remove_tracks(id, user, &caller, body),
        (Route::Me, Some(user)) => Ok(ok(&api.private_user(user, &caller))),
        (Route::CurrentlyPlaying, Some(user)) => Ok(api.currently_playing(user, &caller)),
        (Route::MyPlaylists, Some(user)) => api.my_playlists(user, &query),
        (Route::Play, Some(user)) => api.play(user, &caller, body),
        (Route::Pause, Some(user)) => api.pause(user, &caller),
        // needs_user() was checked above.
        (
            Route::PlaylistTracks(_)
            | Route::Me
            | Route::CurrentlyPlaying
            | Route::MyPlaylists
            | Route::Play
            | Route::Pause,
            None,
        ) => Err(unauthorized("Valid user authentication required")),
    };
    result.unwrap_or_else(|resp| resp)
}

/// gzip-compresses a JSON response when the request allows it, as api.spotify.com
/// does. 204s and other bodiless answers pass untouched.
async fn compress(resp: Response, request: &HeaderMap) -> Response {
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json || resp.headers().contains_key(header::CONTENT_ENCODING) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    // Caches must keep the compressed and the plain representation apart.
    parts
        .headers
        .append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if !accepts_gzip(request) {
        return Response::from_parts(parts, body);
    }
    // Bodies here are built in memory, so collecting them cannot fail or grow.
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "Server error");
    };
    let mut encoder = GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4 + 64),
        Compression::default(),
    );
    match encoder.write_all(&bytes).and_then(|()| encoder.finish()) {
        Ok(gzipped) => {
            parts
                .headers
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(gzipped))
        }
        Err(_) => Response::from_parts(parts, Body::from(bytes)),
    }
}

/// Whether `Accept-Encoding` admits gzip (RFC 9110 section 12.5.3): named with q > 0,
/// or covered by `*` with q > 0 and not named with q = 0.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut any = None;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut params = item.split(';');
            let coding = params.next().unwrap_or("").trim();
            let q = params
                .find_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    // An unreadable weight counts as "not acceptable".
                    k.trim()
                        .eq_ignore_ascii_case("q")
                        .then(|| v.trim().parse::<f32>().unwrap_or(0.0))
                })
                .unwrap_or(1.0);
            if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                gzip = Some(q > 0.0);
            } else if coding == "*" {
                any = Some(q > 0.0);
            }
        }
    }
    gzip.or(any).unwrap_or(false)
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

fn unix_secs() -> u64 {
    unix_millis() / 1000
}

/// Unix seconds as RFC 3339 UTC (`2024-01-01T00:00:00Z`), as Spotify's `added_at`.
fn rfc3339(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (no negatives here).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `spotify:track:<id>` → the track's catalogue index. A malformed URI and an unknown
/// ID fail the way Spotify fails them.
fn track_index(catalog: &Catalog, uri: &str) -> Result<usize, Response> {
    let id = uri
        .strip_prefix("spotify:track:")
        .filter(|id| valid_id(id))
        .ok_or_else(|| bad_request(&format!("Invalid track uri: {uri}")))?;
    catalog
        .tracks
        .iter()
        .position(|t| t.id == id)
        .ok_or_else(|| bad_request("Payload contains a non-existing ID"))
}

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
    tracks: Option<Vec<RemoveTrack>>,
}

#[derive(Deserialize)]
struct RemoveTrack {
    uri: String,
    /// Remove only these occurrences (each must hold `uri`), not all of them.
    positions: Option<Vec<usize>>,
}

#[derive(Deserialize, Default)]
struct PlayBody {
    context_uri: Option<String>,
    uris: Option<Vec<String>>,
    offset: Option<PlayOffset>,
    position_ms: Option<u64>,
}

#[derive(Deserialize)]
struct PlayOffset {
    position: Option<usize>,
    uri: Option<String>,
}

struct Api<'a> {
    app: &'a App,
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

    fn simple_playlist(&self, playlist: &Playlist, total: usize, version: u64) -> Value {
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
            "snapshot_id": snapshot_id(&playlist.id, version),
            "tracks": {
                "href": format!("{}/v1/playlists/{}/tracks", self.base, playlist.id),
                "total": total,
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

    /// The catalogue's default for a user who never used the player endpoints: their
    /// `now_playing` track, looping on the wall clock so progress moves like a real one.
    fn default_playback(&self, user: &User) -> Option<Playback> {
        let track = user
            .now_playing
            .and_then(|(artist, title)| self.catalog.find_track(artist, title))?;
        let duration = self.catalog.tracks[track].duration_ms.max(1);
        Some(Playback {
            track,
            context: None,
            is_playing: true,
            position_ms: unix_millis() % duration,
            since: Instant::now(),
        })
    }

    fn current_playback(&self, user: &User) -> Option<Playback> {
        let stored = self.app.lock().playback.get(user.id).cloned();
        stored.or_else(|| self.default_playback(user))
    }

    /// The `context` object of a playback started from `spotify:<kind>:<id>`.
    fn context(&self, uri: &str) -> Value {
        let mut parts = uri.splitn(3, ':').skip(1);
        match (parts.next(), parts.next()) {
            (Some(kind), Some(id)) => json!({
                "external_urls": self.external(kind, id),
                "href": format!("{}/v1/{kind}s/{id}", self.base),
                "type": kind,
                "uri": uri,
            }),
            _ => Value::Null,
        }
    }

    fn currently_playing(&self, user: &User, caller: &Caller) -> Response {
        if !caller.has("user-read-currently-playing") && !caller.has("user-read-playback-state") {
            return unauthorized("Permissions missing");
        }
        let Some(playback) = self.current_playback(user) else {
            return no_content();
        };
        let track = &self.catalog.tracks[playback.track];
        // Spotify lists what the player cannot do right now.
        let disallows = if playback.is_playing {
            json!({ "resuming": true })
        } else {
            json!({ "pausing": true })
        };
        ok(&json!({
            "actions": { "disallows": disallows },
            "context": playback.context.as_deref().map_or(Value::Null, |uri| self.context(uri)),
            "currently_playing_type": "track",
            "is_playing": playback.is_playing,
            "item": self.full_track(track),
            "progress_ms": playback.progress_ms(track.duration_ms),
            "timestamp": unix_millis(),
        }))
    }

    /// The player endpoints need the scope, then a premium account.
    fn check_player(&self, user: &User, caller: &Caller) -> Result<(), Response> {
        if !caller.has("user-modify-playback-state") {
            return Err(forbidden("Insufficient client scope"));
        }
        if user.product != "premium" {
            return Err(player_error(
                StatusCode::FORBIDDEN,
                "Player command failed: Premium required",
                "PREMIUM_REQUIRED",
            ));
        }
        Ok(())
    }

    /// The tracks a `context_uri` plays, in order.
    fn context_tracks(&self, uri: &str) -> Result<Vec<usize>, Response> {
        let invalid = || bad_request("Invalid context uri");
        let mut parts = uri.splitn(3, ':');
        let (Some("spotify"), Some(kind), Some(id)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        if !valid_id(id) {
            return Err(invalid());
        }
        let not_found = || error(StatusCode::NOT_FOUND, "Resource not found");
        match kind {
            "playlist" => {
                let store = self.app.lock();
                let state = store.playlists.get(id).ok_or_else(not_found)?;
                Ok(state.entries.iter().map(|e| e.track).collect())
            }
            "album" => Ok(self
                .catalog
                .album_by_id(id)
                .ok_or_else(not_found)?
                .tracks
                .clone()),
            "artist" => {
                let artist = self
                    .catalog
                    .artists
                    .iter()
                    .position(|a| a.id == id)
                    .ok_or_else(not_found)?;
                Ok((0..self.catalog.tracks.len())
                    .filter(|&i| self.catalog.tracks[i].artist == artist)
                    .collect())
            }
            _ => Err(invalid()),
        }
    }

    /// `PUT /v1/me/player/play`: start `uris` or a context, or resume when neither.
    fn play(&self, user: &User, caller: &Caller, body: &[u8]) -> Result<Response, Response> {
        self.check_player(user, caller)?;
        let body: PlayBody = parse_body(body)?;
        let queue = match (&body.context_uri, &body.uris) {
            (Some(_), Some(_)) => {
                return Err(bad_request("Only one of context_uri and uris may be given"))
            }
            (Some(context), None) => Some((self.context_tracks(context)?, Some(context.clone()))),
            (None, Some(uris)) if uris.is_empty() => return Err(bad_request("No uris provided")),
            (None, Some(uris)) => Some((
                uris.iter()
                    .map(|uri| track_index(self.catalog, uri))
                    .collect::<Result<Vec<_>, _>>()?,
                None,
            )),
            (None, None) => None,
        };
        let now = Instant::now();
        let Some((tracks, context)) = queue else {
            return self.resume(user, body.position_ms, now);
        };
        let start = match &body.offset {
            None => 0,
            Some(PlayOffset {
                position: Some(p), ..
            }) => *p,
            Some(PlayOffset { uri: Some(uri), .. }) => {
                let wanted = track_index(self.catalog, uri)?;
                tracks
                    .iter()
                    .position(|&t| t == wanted)
                    .ok_or_else(|| bad_request("Invalid offset"))?
            }
            Some(_) => return Err(bad_request("Invalid offset")),
        };
        let Some(&track) = tracks.get(start) else {
            return Err(if tracks.is_empty() {
                restriction_violated()
            } else {
                bad_request("Invalid offset")
            });
        };
        self.app.lock().playback.insert(
            user.id.to_string(),
            Playback {
                track,
                context,
                is_playing: true,
                position_ms: body.position_ms.unwrap_or(0),
                since: now,
            },
        );
        Ok(no_content())
    }

    /// Play without a body resumes; resuming a playing player is refused like Spotify
    /// refuses it.
    fn resume(
        &self,
        user: &User,
        position_ms: Option<u64>,
        now: Instant,
    ) -> Result<Response, Response> {
        let mut playback = self.current_playback(user).ok_or_else(no_active_device)?;
        if playback.is_playing && position_ms.is_none() {
            return Err(restriction_violated());
        }
        if let Some(position) = position_ms {
            playback.position_ms = position;
        }
        playback.is_playing = true;
        playback.since = now;
        self.app
            .lock()
            .playback
            .insert(user.id.to_string(), playback);
        Ok(no_content())
    }

    /// `PUT /v1/me/player/pause`.
    fn pause(&self, user: &User, caller: &Caller) -> Result<Response, Response> {
        self.check_player(user, caller)?;
        let mut playback = self.current_playback(user).ok_or_else(no_active_device)?;
        if !playback.is_playing {
            return Err(restriction_violated());
        }
        let duration = self.catalog.tracks[playback.track].duration_ms;
        playback.position_ms = playback.progress_ms(duration);
        playback.is_playing = false;
        playback.since = Instant::now();
        self.app
            .lock()
            .playback
            .insert(user.id.to_string(), playback);
        Ok(no_content())
    }

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
            .ok_or_else(|| error(StatusCode::NOT_FOUND, "Resource not found"))?;
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

    fn my_playlists(&self, user: &User, query: &Params) -> Result<Response, Response> {
        let (limit, offset) = paging(query, 50)?;
        let mine: Vec<&Playlist> = self
            .catalog
            .playlists
            .iter()
            .filter(|p| p.owner == user.id)
            .collect();
        let mut items = Vec::new();
        for playlist in mine.iter().skip(offset).take(limit) {
            let view = self.view(playlist, 0, 0)?;
            items.push(self.simple_playlist(playlist, view.total, view.version));
        }
        let link = |o: usize| format!("{}/v1/me/playlists?offset={o}&limit={limit}", self.base);
        Ok(ok(&page(items, mine.len(), offset, limit, link)))
    }

    fn playlist_items(
        &self,
        playlist: &Playlist,
        view: &PlaylistView,
        offset: usize,
        limit: usize,
    ) -> Value {
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
                    "track": self.full_track(&self.catalog.tracks[entry.track]),
                })
            })
            .collect();
        let link = |o: usize| {
            format!(
                "{}/v1/playlists/{}/tracks?offset={o}&limit={limit}",
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
            .ok_or_else(|| error(StatusCode::NOT_FOUND, "Resource not found"))
    }

    fn playlist(&self, id: &str) -> Result<Response, Response> {
        let playlist = self.find_playlist(id)?;
        let view = self.view(playlist, 0, 100)?;
        let mut value = self.simple_playlist(playlist, view.total, view.version);
        value["followers"] = json!({ "href": null, "total": playlist.followers });
        value["tracks"] = self.playlist_items(playlist, &view, 0, 100);
        Ok(ok(&value))
    }

    fn playlist_tracks(&self, id: &str, query: &Params) -> Result<Response, Response> {
        let playlist = self.find_playlist(id)?;
        let (limit, offset) = paging(query, 100)?;
        let view = self.view(playlist, offset, limit)?;
        Ok(ok(&self.playlist_items(playlist, &view, offset, limit)))
    }

    /// Changing a playlist takes the scope for its visibility, and ownership.
    fn check_modify(
        &self,
        playlist: &Playlist,
        user: &User,
        caller: &Caller,
        not_owner: &str,
    ) -> Result<(), Response> {
        let scope = if playlist.public {
            "playlist-modify-public"
        } else {
            "playlist-modify-private"
        };
        if !caller.has(scope) {
            return Err(forbidden("Insufficient client scope"));
        }
        if playlist.owner != user.id {
            return Err(forbidden(not_owner));
        }
        Ok(())
    }

    /// `POST /v1/playlists/{id}/tracks` → 201 `{"snapshot_id"}`.
    fn add_tracks(
        &self,
        id: &str,
        user: &User,
        caller: &Caller,
        query: &Params,
        body: &[u8],
    ) -> Result<Response, Response> {
        let playlist = self.find_playlist(id)?;
        self.check_modify(
            playlist,
            user,
            caller,
            "You cannot add tracks to a playlist you don't own.",
        )?;
        let body: AddTracksBody = parse_body(body)?;
        // URIs in the query win over those in the body, as Spotify documents.
        let uris: Vec<String> = match query.get("uris") {
            Some(list) if list.trim().is_empty() => Vec::new(),
            Some(list) => list.split(',').map(|u| u.trim().to_string()).collect(),
            None => body.uris.unwrap_or_default(),
        };
        if uris.is_empty() {
            return Err(bad_request("No uris provided"));
        }
        if uris.len() > MAX_ITEMS_PER_CALL {
            return Err(bad_request("Too many ids requested"));
        }
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
            .ok_or_else(|| error(StatusCode::NOT_FOUND, "Resource not found"))?;
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
            CONTENT_TYPE,
        ))
    }

    /// `DELETE /v1/playlists/{id}/tracks` → 200 `{"snapshot_id"}`; every occurrence of
    /// each URI goes, unless `positions` names which.
    fn remove_tracks(
        &self,
        id: &str,
        user: &User,
        caller: &Caller,
        body: &[u8],
    ) -> Result<Response, Response> {
        let playlist = self.find_playlist(id)?;
        self.check_modify(
            playlist,
            user,
            caller,
            "You cannot remove tracks from a playlist you don't own.",
        )?;
        let body: RemoveTracksBody = parse_body(body)?;
        let items = body
            .tracks
            .ok_or_else(|| bad_request("Missing required field: tracks"))?;
        if items.is_empty() {
            return Err(bad_request("No uris provided"));
        }
        if items.len() > MAX_ITEMS_PER_CALL {
            return Err(bad_request("Too many ids requested"));
        }
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
            .ok_or_else(|| error(StatusCode::NOT_FOUND, "Resource not found"))?;
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

fn no_active_device() -> Response {
    player_error(
        StatusCode::NOT_FOUND,
        "Player command failed: No active device found",
        "NO_ACTIVE_DEVICE",
    )
}

/// What Spotify answers to pausing a paused player or resuming a playing one.
fn restriction_violated() -> Response {
    player_error(
        StatusCode::FORBIDDEN,
        "Player command failed: Restriction violated",
        "UNKNOWN",
    )
}

/// A snapshot id that changes with every change to the playlist.
fn snapshot_id(playlist_id: &str, version: u64) -> String {
    catalog::base62_id(&format!("snapshot:{playlist_id}:{version}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_704_067_200), SEEDED_ADDED_AT);
        assert_eq!(rfc3339(951_782_400 + 3661), "2000-02-29T01:01:01Z");
        assert_eq!(rfc3339(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn accept_encoding_parsing() {
        let accepts = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_str(value).expect("header"),
            );
            accepts_gzip(&headers)
        };
        assert!(accepts("gzip"));
        assert!(accepts("br, GZIP;q=0.5"));
        assert!(accepts("deflate, *"));
        assert!(accepts("x-gzip"));
        assert!(!accepts("identity"));
        assert!(!accepts("gzip;q=0"));
        assert!(!accepts("*, gzip;q=0.0"));
        assert!(!accepts("br"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
