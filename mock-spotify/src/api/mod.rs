//! The Web API subset under `/v1`, plus the 404 for everything no route claims.
//!
//! This module routes a request and checks who is calling; the rest lives by concern:
//! `auth` (bearer tokens), `middleware` (ETag/304, gzip), `caching` (`Cache-Control`),
//! `render` (Spotify's JSON objects), `input` (parameter and body checks), `browse`,
//! `player`, `playlists` and `library` (the endpoints), `time` (timestamps).
//!
//! A development-mode app (the default, as for Spotify's new apps in 2026) serves only the
//! users registered in its dashboard, and refuses the paths Spotify retired in February 2026
//! (`/playlists/{id}/tracks`); an extended-quota app serves everyone on both.

mod auth;
mod browse;
pub(crate) mod caching;
mod input;
mod library;
mod middleware;
mod player;
mod playlists;
mod render;
mod time;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;

use self::auth::{authenticate, unauthorized};
use self::middleware::{compress, conditional};
use self::render::{ok, Api, Entries};
use crate::catalog;
use crate::config::AppMode;
use crate::errors::{api_error, forbidden};
use crate::faults::{apply_fault, Target};
use crate::http::Params;
use crate::state::App;

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
    /// The pre-2026 path of a playlist's entries (`track` in each).
    PlaylistTracks(&'a str),
    /// Since February 2026: `/playlists/{id}/items`, `item` in each entry.
    PlaylistItems(&'a str),
    /// `PUT`/`DELETE /me/library` with `uris` (February 2026).
    Library,
    LibraryContains,
    Play,
    Pause,
}

impl Route<'_> {
    fn allows(&self, method: &Method) -> bool {
        match self {
            Route::PlaylistTracks(_) | Route::PlaylistItems(_) => {
                method == Method::GET || method == Method::POST || method == Method::DELETE
            }
            Route::Library => method == Method::PUT || method == Method::DELETE,
            Route::Play | Route::Pause => method == Method::PUT,
            _ => method == Method::GET,
        }
    }

    fn needs_user(&self, method: &Method) -> bool {
        match self {
            Route::Me | Route::CurrentlyPlaying | Route::MyPlaylists => true,
            Route::Play | Route::Pause => true,
            Route::Library | Route::LibraryContains => true,
            // Reading a playlist is open to app tokens; changing one is not.
            Route::PlaylistTracks(_) | Route::PlaylistItems(_) => method != Method::GET,
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
        ["me", "library"] => Route::Library,
        ["me", "library", "contains"] => Route::LibraryContains,
        ["users", id] if !id.is_empty() => Route::User(id),
        ["playlists", id] if !id.is_empty() => Route::Playlist(id),
        ["playlists", id, "tracks"] if !id.is_empty() => Route::PlaylistTracks(id),
        ["playlists", id, "items"] if !id.is_empty() => Route::PlaylistItems(id),
        _ => return None,
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
    let resp = app.cache_headers.apply(&method, path, resp);
    compress(resp, &headers).await
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
    if let Some(refused) = app.quota.admit() {
        return refused;
    }
    let Some(route) = route(uri.path()) else {
        return api_error(StatusCode::NOT_FOUND, "Service not found");
    };
    if !route.allows(method) {
        return api_error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed");
    }
    let caller = match authenticate(app, headers) {
        Ok(caller) => caller,
        Err(resp) => return resp,
    };
    let (mode, registered) = {
        let store = app.lock();
        let registered = caller
            .user
            .as_deref()
            .is_none_or(|u| store.registered.contains(u));
        (store.mode, registered)
    };
    if mode == AppMode::Development {
        // Every call made with an unregistered user's token, whatever it asks for.
        if !registered {
            return forbidden("User not registered in the Developer Dashboard");
        }
        if matches!(route, Route::PlaylistTracks(_)) {
            return forbidden(
                "This endpoint is not available to apps in development mode; use \
                 /v1/playlists/{id}/items",
            );
        }
    }
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
        (Route::Track(id), _) => api.track(id),
        (Route::Artist(id), _) => api.artist(id),
        (Route::Album(id), _) => api.album(id),
        (Route::User(id), _) => api.user(id),
        (Route::Playlist(id), _) => api.playlist(id),
        (Route::PlaylistTracks(id), _) if method == Method::GET => {
            api.playlist_tracks(id, &query, Entries::Tracks)
        }
        (Route::PlaylistItems(id), _) if method == Method::GET => {
            api.playlist_tracks(id, &query, Entries::Items)
        }
        (Route::PlaylistTracks(id) | Route::PlaylistItems(id), Some(user))
            if method == Method::POST =>
        {
            api.add_tracks(id, user, &caller, &query, body)
        }
        // allows() leaves DELETE as the only other method.
        (Route::PlaylistTracks(id) | Route::PlaylistItems(id), Some(user)) => {
            api.remove_tracks(id, user, &caller, body)
        }
        (Route::Library, Some(user)) => api.change_library(user, &caller, method, &query, body),
        (Route::LibraryContains, Some(user)) => api.library_contains(user, &caller, &query),
        (Route::Me, Some(user)) => Ok(ok(&api.private_user(user, &caller))),
        (Route::CurrentlyPlaying, Some(user)) => Ok(api.currently_playing(user, &caller)),
        (Route::MyPlaylists, Some(user)) => api.my_playlists(user, &query),
        (Route::Play, Some(user)) => api.play(user, &caller, body),
        (Route::Pause, Some(user)) => api.pause(user, &caller),
        // needs_user() was checked above.
        (
            Route::PlaylistTracks(_)
            | Route::PlaylistItems(_)
            | Route::Library
            | Route::LibraryContains
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
