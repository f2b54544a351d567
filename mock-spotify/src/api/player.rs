//! The player endpoints: `GET /v1/me/player/currently-playing` and
//! `PUT /v1/me/player/play` / `pause`, over each user's playback in the store.

use std::time::Instant;

use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{unauthorized, Caller};
use super::input::{parse_body, track_index, valid_id};
use super::render::{no_content, ok, Api};
use super::time::unix_millis;
use crate::catalog::User;
use crate::errors::{bad_request, forbidden, player_error, resource_not_found};
use crate::state::Playback;

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

impl Api<'_> {
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

    pub(super) fn currently_playing(&self, user: &User, caller: &Caller) -> Response {
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
        match kind {
            "playlist" => {
                let store = self.app.lock();
                let state = store.playlists.get(id).ok_or_else(resource_not_found)?;
                Ok(state.entries.iter().map(|e| e.track).collect())
            }
            "album" => Ok(self
                .catalog
                .album_by_id(id)
                .ok_or_else(resource_not_found)?
                .tracks
                .clone()),
            "artist" => {
                let artist = self
                    .catalog
                    .artists
                    .iter()
                    .position(|a| a.id == id)
                    .ok_or_else(resource_not_found)?;
                Ok((0..self.catalog.tracks.len())
                    .filter(|&i| self.catalog.tracks[i].artist == artist)
                    .collect())
            }
            _ => Err(invalid()),
        }
    }

    /// `PUT /v1/me/player/play`: start `uris` or a context, or resume when neither.
    pub(super) fn play(
        &self,
        user: &User,
        caller: &Caller,
        body: &[u8],
    ) -> Result<Response, Response> {
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
    pub(super) fn pause(&self, user: &User, caller: &Caller) -> Result<Response, Response> {
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
