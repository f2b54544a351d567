//! The player endpoints: play, pause, resume and what currently-playing then reports.
//!
//! Drives a real MockSpotify over HTTP, the way the gateway and external scripts do.

mod common;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use common::{api, api_error, app_token, call, header, s, start, track_id, user_token};

#[tokio::test]
async fn player_play_and_pause() {
    use reqwest::Method;
    let m = start().await;
    let scope = "user-modify-playback-state user-read-currently-playing";
    let alice = user_token(&m, "alice", scope).await;
    let a = s(&alice["access_token"]).to_string();
    let playing = || api(&m, "/v1/me/player/currently-playing", Some(&a));

    let karma = track_id(&m, &a, "karma police").await;
    let halo = track_id(&m, &a, "beyonce halo").await;
    let body = json!({
        "uris": [format!("spotify:track:{karma}"), format!("spotify:track:{halo}")],
        "position_ms": 1000,
    })
    .to_string();
    let (status, headers, resp) =
        call(&m, Method::PUT, "/v1/me/player/play", Some(&a), Some(&body)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(resp, Value::Null);
    assert_eq!(header(&headers, "content-type"), None);
    let (status, _, now) = playing().await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(now["is_playing"], true);
    assert_eq!(now["item"]["id"], karma.as_str());
    assert_eq!(now["context"], Value::Null);
    assert!(now["progress_ms"].as_u64().expect("progress") >= 1000);

    let (status, _, resp) = call(&m, Method::PUT, "/v1/me/player/pause", Some(&a), None).await;
    assert_eq!((status, resp), (StatusCode::NO_CONTENT, Value::Null));
    let (_, _, paused) = playing().await;
    assert_eq!(paused["is_playing"], false);
    assert_eq!(paused["item"]["id"], karma.as_str());
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(playing().await.2["progress_ms"], paused["progress_ms"]);

    // Pausing a paused player and resuming a playing one fail as on Spotify.
    let restriction = json!({ "error": {
        "status": 403,
        "message": "Player command failed: Restriction violated",
        "reason": "UNKNOWN",
    }});
    let (status, _, resp) = call(&m, Method::PUT, "/v1/me/player/pause", Some(&a), None).await;
    assert_eq!((status, resp), (StatusCode::FORBIDDEN, restriction.clone()));
    let (status, _, _) = call(&m, Method::PUT, "/v1/me/player/play", Some(&a), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(playing().await.2["is_playing"], true);
    let (status, _, resp) = call(&m, Method::PUT, "/v1/me/player/play", Some(&a), Some("{}")).await;
    assert_eq!((status, resp), (StatusCode::FORBIDDEN, restriction));

    // A context with an offset.
    let (_, _, mine) = api(&m, "/v1/me/playlists", Some(&a)).await;
    let road_trip = s(&mine["items"][2]["uri"]).to_string();
    let body = json!({ "context_uri": road_trip, "offset": { "position": 2 } }).to_string();
    let (status, _, _) = call(&m, Method::PUT, "/v1/me/player/play", Some(&a), Some(&body)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, _, now) = playing().await;
    assert_eq!(now["item"]["name"], "Bohemian Rhapsody");
    assert_eq!(now["context"]["type"], "playlist");
    assert_eq!(now["context"]["uri"], road_trip.as_str());

    // The default for a user who never touched the player: the catalogue's track.
    let (status, _, _) = call(&m, Method::PUT, "/v1/me/player/pause", Some(&a), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let other = start().await;
    let fresh = user_token(&other, "alice", scope).await;
    let (_, _, now) = api(
        &other,
        "/v1/me/player/currently-playing",
        Some(s(&fresh["access_token"])),
    )
    .await;
    assert_eq!(now["item"]["name"], "Dancing Queen");
    assert_eq!(now["is_playing"], true);

    for (body, status, message) in [
        ("{not json", 400, "Error parsing JSON."),
        (
            "{\"uris\":[\"spotify:track:nope\"]}",
            400,
            "Invalid track uri: spotify:track:nope",
        ),
        (
            "{\"context_uri\":\"spotify:show:0000000000000000000000\"}",
            400,
            "Invalid context uri",
        ),
        (
            "{\"context_uri\":\"spotify:album:0000000000000000000000\"}",
            404,
            "Resource not found",
        ),
    ] {
        let (got, _, resp) =
            call(&m, Method::PUT, "/v1/me/player/play", Some(&a), Some(body)).await;
        assert_eq!(
            (got.as_u16(), resp),
            (status, api_error(status, message)),
            "{body}"
        );
    }

    // Premium only, the scope, a user.
    let bob = user_token(&m, "bob", scope).await;
    for path in ["/v1/me/player/play", "/v1/me/player/pause"] {
        let (status, _, resp) =
            call(&m, Method::PUT, path, Some(s(&bob["access_token"])), None).await;
        assert_eq!(
            (status, resp),
            (
                StatusCode::FORBIDDEN,
                json!({ "error": {
                    "status": 403,
                    "message": "Player command failed: Premium required",
                    "reason": "PREMIUM_REQUIRED",
                }})
            ),
            "{path}"
        );
    }
    let reader = user_token(&m, "alice", "user-read-currently-playing").await;
    let (status, _, resp) = call(
        &m,
        Method::PUT,
        "/v1/me/player/pause",
        Some(s(&reader["access_token"])),
        None,
    )
    .await;
    assert_eq!(
        (status, resp),
        (
            StatusCode::FORBIDDEN,
            api_error(403, "Insufficient client scope")
        )
    );
    let app = app_token(&m).await;
    let (status, _, resp) = call(&m, Method::PUT, "/v1/me/player/play", Some(&app), None).await;
    assert_eq!(
        (status, resp),
        (
            StatusCode::UNAUTHORIZED,
            api_error(401, "Valid user authentication required")
        )
    );
    let (status, _, _) = call(&m, Method::GET, "/v1/me/player/play", Some(&a), None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}
