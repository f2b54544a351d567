//! Adding and removing playlist tracks through the Web API.
//!
//! Drives a real MockSpotify over HTTP, the way the gateway and external scripts do.

mod common;

use reqwest::StatusCode;
use serde_json::json;

use common::{api, api_error, app_token, call, client, header, s, start, track_id, user_token};

#[tokio::test]
async fn add_and_remove_playlist_tracks() {
    use reqwest::Method;
    let m = start().await;
    let scope = "playlist-modify-public playlist-read-private";
    let alice = user_token(&m, "alice", scope).await;
    let a = s(&alice["access_token"]).to_string();
    let (_, _, mine) = api(&m, "/v1/me/playlists", Some(&a)).await;
    let kitchen = &mine["items"][0];
    assert_eq!(kitchen["name"], "Dancing in the Kitchen");
    let id = s(&kitchen["id"]).to_string();
    let before = s(&kitchen["snapshot_id"]).to_string();
    assert_eq!(kitchen["items"]["total"], 8);
    let path = format!("/v1/playlists/{id}/items");

    let karma = track_id(&m, &a, "karma police").await;
    let halo = track_id(&m, &a, "beyonce halo").await;
    let body =
        json!({ "uris": [format!("spotify:track:{karma}"), format!("spotify:track:{halo}")] });
    let (status, headers, created) =
        call(&m, Method::POST, &path, Some(&a), Some(&body.to_string())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/json; charset=utf-8")
    );
    let after_add = s(&created["snapshot_id"]).to_string();
    assert_ne!(after_add, before);
    assert_eq!(created.as_object().expect("object").len(), 1);

    let (_, _, items) = api(&m, &format!("{path}?offset=8"), Some(&a)).await;
    assert_eq!(items["total"], 10);
    assert_eq!(items["items"][0]["item"]["id"], karma.as_str());
    assert_eq!(items["items"][1]["item"]["name"], "Halo");
    assert_eq!(items["items"][0]["added_by"]["id"], "alice");
    assert_ne!(items["items"][0]["added_at"], "2024-01-01T00:00:00Z");
    assert!(s(&items["items"][0]["added_at"]).ends_with('Z'));
    let (_, _, playlist) = api(&m, &format!("/v1/playlists/{id}"), Some(&a)).await;
    assert_eq!(playlist["items"]["total"], 10);
    assert_eq!(playlist["snapshot_id"], after_add.as_str());
    let (_, _, mine) = api(&m, "/v1/me/playlists", Some(&a)).await;
    assert_eq!(mine["items"][0]["items"]["total"], 10);

    // Query URIs (comma-separated) win over the body; position inserts.
    let (status, _, created) = call(
        &m,
        Method::POST,
        &format!("{path}?position=0&uris=spotify%3Atrack%3A{halo},spotify%3Atrack%3A{halo}"),
        Some(&a),
        Some(&json!({ "uris": [format!("spotify:track:{karma}")] }).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (_, _, items) = api(&m, &format!("{path}?limit=3"), Some(&a)).await;
    assert_eq!(items["total"], 12);
    assert_eq!(items["items"][0]["item"]["name"], "Halo");
    assert_eq!(items["items"][1]["item"]["name"], "Halo");
    assert_eq!(items["items"][2]["item"]["name"], "Dancing Queen");
    let (status, _, _) = call(
        &m,
        Method::POST,
        &path,
        Some(&a),
        Some(&json!({ "uris": [format!("spotify:track:{karma}")], "position": 1 }).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, _, items) = api(&m, &format!("{path}?limit=2"), Some(&a)).await;
    assert_eq!(items["total"], 13);
    assert_eq!(items["items"][1]["item"]["id"], karma.as_str());

    // Bad requests leave the playlist alone.
    let many: Vec<String> = (0..101).map(|_| format!("spotify:track:{karma}")).collect();
    for (body, message) in [
        ("{not json".to_string(), "Error parsing JSON.".to_string()),
        (
            json!({ "uris": "spotify:track:x" }).to_string(),
            "Error parsing JSON.".to_string(),
        ),
        ("{}".to_string(), "No uris provided".to_string()),
        (
            json!({ "uris": [] }).to_string(),
            "No uris provided".to_string(),
        ),
        (
            json!({ "uris": ["spotify:track:short"] }).to_string(),
            "Invalid track uri: spotify:track:short".to_string(),
        ),
        (
            json!({ "uris": [format!("spotify:album:{karma}")] }).to_string(),
            format!("Invalid track uri: spotify:album:{karma}"),
        ),
        (
            json!({ "uris": [karma.clone()] }).to_string(),
            format!("Invalid track uri: {karma}"),
        ),
        (
            json!({ "uris": ["spotify:track:0000000000000000000000"] }).to_string(),
            "Payload contains a non-existing ID".to_string(),
        ),
        (
            json!({ "uris": many }).to_string(),
            "Too many ids requested".to_string(),
        ),
        (
            json!({ "uris": [format!("spotify:track:{karma}")], "position": 14 }).to_string(),
            "Index out of bounds".to_string(),
        ),
        (
            json!({ "uris": [format!("spotify:track:{karma}")], "position": -1 }).to_string(),
            "Index out of bounds".to_string(),
        ),
    ] {
        let (status, _, resp) = call(&m, Method::POST, &path, Some(&a), Some(&body)).await;
        assert_eq!(
            (status, resp),
            (StatusCode::BAD_REQUEST, api_error(400, &message)),
            "{body}"
        );
    }
    let (status, _, resp) = call(&m, Method::POST, &path, Some(&a), None).await;
    assert_eq!(
        (status, resp),
        (StatusCode::BAD_REQUEST, api_error(400, "No uris provided"))
    );

    // Who may change it.
    let one = json!({ "uris": [format!("spotify:track:{karma}")] }).to_string();
    let no_scope = user_token(&m, "alice", "playlist-modify-private").await;
    let (status, _, resp) = call(
        &m,
        Method::POST,
        &path,
        Some(s(&no_scope["access_token"])),
        Some(&one),
    )
    .await;
    assert_eq!(
        (status, resp),
        (
            StatusCode::FORBIDDEN,
            api_error(403, "Insufficient client scope")
        )
    );
    let bob = user_token(&m, "bob", scope).await;
    let (status, _, resp) = call(
        &m,
        Method::POST,
        &path,
        Some(s(&bob["access_token"])),
        Some(&one),
    )
    .await;
    assert_eq!(
        (status, resp),
        (
            StatusCode::FORBIDDEN,
            api_error(403, "You cannot add tracks to a playlist you don't own.")
        )
    );
    let app = app_token(&m).await;
    let (status, _, resp) = call(&m, Method::POST, &path, Some(&app), Some(&one)).await;
    assert_eq!(
        (status, resp),
        (
            StatusCode::UNAUTHORIZED,
            api_error(401, "Valid user authentication required")
        )
    );
    let (status, _, resp) = call(&m, Method::POST, &path, None, Some(&one)).await;
    assert_eq!(
        (status, resp),
        (
            StatusCode::UNAUTHORIZED,
            api_error(401, "No token provided")
        )
    );
    let (status, _, _) = call(
        &m,
        Method::POST,
        "/v1/playlists/0000000000000000000000/items",
        Some(&a),
        Some(&one),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = call(&m, Method::PATCH, &path, Some(&a), Some(&one)).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (_, _, items) = api(&m, &path, Some(&a)).await;
    assert_eq!(items["total"], 13);

    // Remove: every occurrence of a URI, or just the given positions.
    let (status, _, removed) = call(
        &m,
        Method::DELETE,
        &path,
        Some(&a),
        Some(&json!({ "tracks": [{ "uri": format!("spotify:track:{halo}") }] }).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{removed}");
    let after_remove = s(&removed["snapshot_id"]).to_string();
    assert_ne!(after_remove, after_add);
    let (_, _, items) = api(&m, &format!("{path}?limit=100"), Some(&a)).await;
    assert_eq!(items["total"], 10);
    let names: Vec<&str> = items["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| s(&i["item"]["name"]))
        .collect();
    assert!(!names.contains(&"Halo"), "{names:?}");
    assert_eq!(names.iter().filter(|n| **n == "Karma Police").count(), 2);
    assert_eq!(names[0], "Karma Police");

    let (status, _, resp) = call(
        &m,
        Method::DELETE,
        &path,
        Some(&a),
        Some(
            &json!({ "tracks": [{ "uri": format!("spotify:track:{karma}"), "positions": [1] }] })
                .to_string(),
        ),
    )
    .await;
    assert_eq!(
        (status, resp),
        (
            StatusCode::BAD_REQUEST,
            api_error(400, "Could not remove tracks, please check parameters.")
        )
    );
    let (status, _, _) = call(
        &m,
        Method::DELETE,
        &path,
        Some(&a),
        Some(
            &json!({ "tracks": [{ "uri": format!("spotify:track:{karma}"), "positions": [0] }] })
                .to_string(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, _, items) = api(&m, &format!("{path}?limit=100"), Some(&a)).await;
    assert_eq!(items["total"], 9);
    assert_eq!(items["items"][8]["item"]["id"], karma.as_str());

    for (body, message) in [
        ("{not json", "Error parsing JSON."),
        ("{}", "Missing required field: items"),
        (
            "{\"tracks\":[{\"uri\":\"spotify:track:bad\"}]}",
            "Invalid track uri: spotify:track:bad",
        ),
    ] {
        let (status, _, resp) = call(&m, Method::DELETE, &path, Some(&a), Some(body)).await;
        assert_eq!(
            (status, resp),
            (StatusCode::BAD_REQUEST, api_error(400, message)),
            "{body}"
        );
    }
    let (status, _, resp) = call(
        &m,
        Method::DELETE,
        &path,
        Some(s(&bob["access_token"])),
        Some(&json!({ "tracks": [{ "uri": format!("spotify:track:{karma}") }] }).to_string()),
    )
    .await;
    assert_eq!(
        (status, resp),
        (
            StatusCode::FORBIDDEN,
            api_error(
                403,
                "You cannot remove tracks from a playlist you don't own."
            )
        )
    );

    // A reset clears controls, not playlists; another mock has its own playlists.
    let resp = client()
        .post(format!("{}/__mock/reset", m.base_url()))
        .send()
        .await
        .expect("reset");
    assert!(resp.status().is_success());
    let (_, _, items) = api(&m, &path, Some(&a)).await;
    assert_eq!(items["total"], 9);
    let other = start().await;
    let (_, _, items) = api(&other, &path, Some(&app_token(&other).await)).await;
    assert_eq!(items["total"], 8);
}
