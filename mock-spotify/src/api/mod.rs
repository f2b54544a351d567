//! The Web API subset under `/v1`, plus the 404 for everything no route claims.
//!
//! This module routes a request and checks who is calling; the rest lives by concern:
//! `auth` (bearer tokens), `middleware` (ETag/304, gzip), `caching` (`Cache-Control`),
//! `render` (Spotify's JSON objects), `input` (parameter and body checks), `browse`,
//! `player`, `playlists` and `library` (the endpoints), `time` (timestamps).
//!
//! A development-mode app (the default, as for Spotify's new apps in 2026) serves only the
//! users registered in its dashboard, refuses the paths Spotify retired in February 2026
//! (`/playlists/{id}/tracks`, and the endpoints `Route::retired` names), leaves out the fields
//! Spotify withholds from it (`render`) and caps search at 10; an extended-quota app serves
//! everyone, everything.

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
use self::browse::Several;
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
    /// `/tracks?ids=`, `/albums?ids=`, `/artists?ids=`: several at once.
    Several(Several),
    TopTracks(&'a str),
    Markets,
    NewReleases,
    /// `GET`/`POST /users/{id}/playlists`.
    UserPlaylists(&'a str),
    /// Endpoints of Spotify's the mock has nothing behind (shows, episodes, audiobooks,
    /// chapters, categories): development mode refuses them as Spotify does; otherwise
    /// they are unknown here.
    Unmodelled,
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
            Route::UserPlaylists(_) => method == Method::GET || method == Method::POST,
            Route::Play | Route::Pause => method == Method::PUT,
            _ => method == Method::GET,
        }
    }

    fn needs_user(&self, method: &Method) -> bool {
        match self {
            Route::Me | Route::CurrentlyPlaying | Route::MyPlaylists => true,
            Route::Play | Route::Pause => true,
            Route::Library | Route::LibraryContains => true,
            Route::UserPlaylists(_) => method != Method::GET,
            // Reading a playlist is open to app tokens; changing one is not.
            Route::PlaylistTracks(_) | Route::PlaylistItems(_) => method != Method::GET,
            _ => false,
        }
    }
}

impl Route<'_> {
    /// What a development-mode app is told for an endpoint Spotify removed for it in
    /// February 2026 (the Migration Guide's list). Reports of real apps (docs/mock-spotify.md)
    /// show a 403 in the Web API's error shape; Spotify's exact message is not known, and
    /// clients must not match on it anyway, so it names the replacement where there is one.
    fn retired(&self, method: &Method) -> Option<&'static str> {
        Some(match self {
            Route::PlaylistTracks(_) => {
                "This endpoint is not available to apps in development mode; use \
                 /v1/playlists/{id}/items"
            }
            Route::UserPlaylists(_) if method == Method::POST => {
                "This endpoint is not available to apps in development mode; use \
                 /v1/me/playlists"
            }
            Route::Several(_) => {
                "This endpoint is not available to apps in development mode; get each item \
                 by its id"
            }
            Route::User(_)
            | Route::UserPlaylists(_)
            | Route::TopTracks(_)
            | Route::Markets
            | Route::NewReleases
            | Route::Unmodelled => "This endpoint is not available to apps in development mode",
            _ => return None,
        })
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
        ["users", id, "playlists"] if !id.is_empty() => Route::UserPlaylists(id),
        ["tracks"] => Route::Several(Several::Tracks),
        ["albums"] => Route::Several(Several::Albums),
        ["artists"] => Route::Several(Several::Artists),
        ["artists", id, "top-tracks"] if !id.is_empty() => Route::TopTracks(id),
        ["markets"] => Route::Markets,
        ["browse", "new-releases"] => Route::NewReleases,
        ["browse", "categories", ..] => Route::Unmodelled,
        ["episodes" | "shows" | "audiobooks" | "chapters"] => Route::Unmodelled,
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
    // Each client id has its own window; `QUOTA_EXCEEDED` is its developer account's.
    let client = {
        let store = app.lock();
        crate::state::bearer_of(headers)
            .and_then(|t| store.access.get(t))
            .map(|t| t.client_id.clone())
    };
    if let Some(refused) = app.quota_of(client.as_deref()).admit() {
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
        let other = app
            .client(&caller.client_id)
            .and_then(|c| c.other)
            .map(|i| &app.config.other_clients[i]);
        let known = |u: &str| match other {
            Some(o) => o.registered.iter().any(|r| r == u),
            None => store.registered.contains(u),
        };
        let registered = caller.user.as_deref().is_none_or(known);
        (other.map_or(store.mode, |o| o.mode), registered)
    };
    if mode == AppMode::Development {
        // Every call made with an unregistered user's token, whatever it asks for.
        if !registered {
            return forbidden("User not registered in the Developer Dashboard");
        }
        if let Some(message) = route.retired(method) {
            return forbidden(message);
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
        mode,
    };
    let result = match (route, me) {
        (Route::Search, _) => Ok(api.search(&query)),
        (Route::Track(id), _) => api.track(id),
        (Route::Artist(id), _) => api.artist(id),
        (Route::Album(id), _) => api.album(id),
        (Route::User(id), _) => api.user(id),
        (Route::Several(kind), _) => api.several(kind, &query),
        (Route::TopTracks(id), _) => api.top_tracks(id),
        (Route::Markets, _) => Ok(api.markets()),
        (Route::NewReleases, _) => api.new_releases(&query),
        (Route::UserPlaylists(id), _) if method == Method::GET => api.user_playlists(id, &query),
        // Creating a playlist is not modelled (nor is `POST /me/playlists`).
        (Route::UserPlaylists(_), Some(_)) | (Route::Unmodelled, _) => {
            Err(api_error(StatusCode::NOT_FOUND, "Service not found"))
        }
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
            | Route::Pause
            | Route::UserPlaylists(_),
            None,
        ) => Err(unauthorized("Valid user authentication required")),
    };
    result.unwrap_or_else(|resp| resp)
}
