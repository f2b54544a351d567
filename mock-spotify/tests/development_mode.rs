//! What a development-mode app gets since February 2026 (Spotify's Migration Guide), and an
//! extended-quota app still gets: the fields withheld, search's limit, the removed endpoints;
//! the mode set at start (`MockConfig::mode`) and by `POST /__mock/app`.
//!
//! Drives a real MockSpotify over HTTP, the way the gateway and external scripts do.

mod common;

use reqwest::StatusCode;
use serde_json::{json, Value};

use mock_spotify::MockSpotify;

use common::{
    api, api_error, app_token, call, client, s, start, start_extended, track_id, user_token,
};

const PRIVATE: &str = "user-read-email user-read-private playlist-read-private";

/// `/v1/me`, an artist, a track (and its album), and alice's first playlist, as `token` sees them.
async fn objects(m: &MockSpotify, token: &str) -> (Value, Value, Value, Value) {
    let (status, _, me) = api(m, "/v1/me", Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    let id = track_id(m, token, "dancing queen").await;
    let (_, _, track) = api(m, &format!("/v1/tracks/{id}"), Some(token)).await;
    let artist_id = s(&track["artists"][0]["id"]).to_string();
    let (_, _, artist) = api(m, &format!("/v1/artists/{artist_id}"), Some(token)).await;
    let (_, _, mine) = api(m, "/v1/me/playlists", Some(token)).await;
    (me, artist, track, mine["items"][0].clone())
}

#[tokio::test]
async fn development_mode_withholds_the_fields_spotify_removed() {
    let m = start().await;
    let alice = user_token(&m, "alice", PRIVATE).await;
    let (me, artist, track, playlist) = objects(&m, s(&alice["access_token"])).await;
    for field in [
        "country",
        "email",
        "explicit_content",
        "followers",
        "product",
    ] {
        assert!(me.get(field).is_none(), "/v1/me {field}: {me}");
    }
    assert_eq!(me["id"], "alice");
    assert!(me["account_id"].is_string());
    for field in ["followers", "popularity"] {
        assert!(artist.get(field).is_none(), "artist {field}: {artist}");
    }
    assert_eq!(artist["name"], "ABBA");
    for field in ["available_markets", "popularity"] {
        assert!(track.get(field).is_none(), "track {field}: {track}");
        assert!(track["album"].get(field).is_none(), "album {field}");
    }
    assert!(playlist.get("tracks").is_none(), "{playlist}");
    assert!(playlist["items"]["href"].is_string());
    assert!(playlist["items"]["total"].is_u64());

    // Switched to extended quota at run time: everything, as before.
    let resp = client()
        .post(format!("{}/__mock/app", m.base_url()))
        .json(&json!({"mode": "extended_quota"}))
        .send()
        .await
        .expect("control");
    assert_eq!(resp.status(), StatusCode::OK);
    let (me, artist, track, playlist) = objects(&m, s(&alice["access_token"])).await;
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(me["country"], "SE");
    assert_eq!(me["product"], "premium");
    assert!(me["followers"]["total"].is_u64());
    assert!(me["explicit_content"].is_object());
    assert!(artist["followers"]["total"].is_u64() && artist["popularity"].is_u64());
    assert!(track["available_markets"].is_array() && track["popularity"].is_u64());
    assert!(track["album"]["available_markets"].is_array());
    assert_eq!(playlist["tracks"]["total"], playlist["items"]["total"]);
}

#[tokio::test]
async fn development_mode_searches_ten_at_most_five_unless_asked() {
    let m = start().await;
    let t = app_token(&m).await;
    let (status, _, body) = api(&m, "/v1/search?q=abba&type=track", Some(&t)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["tracks"]["limit"], 5);
    assert_eq!(body["tracks"]["items"].as_array().expect("items").len(), 5);
    let (status, _, body) = api(&m, "/v1/search?q=abba&type=track&limit=10", Some(&t)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["tracks"]["items"].as_array().expect("items").len(), 10);
    let (status, _, body) = api(&m, "/v1/search?q=abba&type=track&limit=11", Some(&t)).await;
    assert_eq!(
        (status, body),
        (StatusCode::BAD_REQUEST, api_error(400, "Invalid limit"))
    );

    let m = start_extended().await;
    let t = app_token(&m).await;
    let (status, _, body) = api(&m, "/v1/search?q=abba&type=track&limit=11", Some(&t)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["tracks"]["limit"], 11);
    let (_, _, body) = api(&m, "/v1/search?q=abba&type=track", Some(&t)).await;
    assert_eq!(body["tracks"]["limit"], 20);
}

/// Every endpoint the Migration Guide removes for development-mode apps, as one example call
/// (method, path) each.
fn removed(track: &str, album: &str, artist: &str) -> Vec<(reqwest::Method, String)> {
    use reqwest::Method;
    vec![
        (Method::GET, format!("/v1/tracks?ids={track}")),
        (Method::GET, format!("/v1/albums?ids={album}")),
        (Method::GET, format!("/v1/artists?ids={artist}")),
        (Method::GET, format!("/v1/artists/{artist}/top-tracks")),
        (Method::GET, "/v1/markets".into()),
        (Method::GET, "/v1/browse/new-releases".into()),
        (Method::GET, "/v1/browse/categories".into()),
        (Method::GET, "/v1/browse/categories/pop".into()),
        (Method::GET, "/v1/episodes?ids=x".into()),
        (Method::GET, "/v1/shows?ids=x".into()),
        (Method::GET, "/v1/audiobooks?ids=x".into()),
        (Method::GET, "/v1/chapters?ids=x".into()),
        (Method::GET, "/v1/users/bob".into()),
        (Method::GET, "/v1/users/bob/playlists".into()),
        (Method::POST, "/v1/users/alice/playlists".into()),
    ]
}

#[tokio::test]
async fn development_mode_refuses_the_removed_endpoints_extended_quota_serves_them() {
    let m = start().await;
    let alice = user_token(&m, "alice", PRIVATE).await;
    let a = s(&alice["access_token"]).to_string();
    let track = track_id(&m, &a, "dancing queen").await;
    let (_, _, t) = api(&m, &format!("/v1/tracks/{track}"), Some(&a)).await;
    let album = s(&t["album"]["id"]).to_string();
    let artist = s(&t["artists"][0]["id"]).to_string();
    for (method, path) in removed(&track, &album, &artist) {
        let (status, _, body) = call(&m, method.clone(), &path, Some(&a), Some("{}")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
        assert_eq!(body["error"]["status"], 403, "{method} {path}");
        assert!(body["error"]["message"].is_string());
    }

    let m = start_extended().await;
    let alice = user_token(&m, "alice", PRIVATE).await;
    let a = s(&alice["access_token"]).to_string();
    let (_, _, several) = api(&m, &format!("/v1/tracks?ids={track},{track}"), Some(&a)).await;
    assert_eq!(several["tracks"][1]["id"], track.as_str());
    let (_, _, several) = api(&m, &format!("/v1/albums?ids={album}"), Some(&a)).await;
    assert_eq!(several["albums"][0]["id"], album.as_str());
    let (_, _, several) = api(&m, &format!("/v1/artists?ids={artist}"), Some(&a)).await;
    assert_eq!(several["artists"][0]["name"], "ABBA");
    let (status, _, top) = api(&m, &format!("/v1/artists/{artist}/top-tracks"), Some(&a)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(top["tracks"].as_array().expect("tracks").len(), 10);
    let (_, _, markets) = api(&m, "/v1/markets", Some(&a)).await;
    assert!(markets["markets"]
        .as_array()
        .expect("markets")
        .contains(&json!("SE")));
    let (status, _, releases) = api(&m, "/v1/browse/new-releases?limit=2", Some(&a)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        releases["albums"]["items"]
            .as_array()
            .expect("albums")
            .len(),
        2
    );
    let (status, _, bob) = api(&m, "/v1/users/bob", Some(&a)).await;
    assert_eq!((status, &bob["id"]), (StatusCode::OK, &json!("bob")));
    let (status, _, lists) = api(&m, "/v1/users/alice/playlists", Some(&a)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(lists["total"].as_u64().expect("total") >= 1);
    // What the mock has nothing behind stays unknown here, as before.
    let (status, _, _) = api(&m, "/v1/shows?ids=x", Some(&a)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_mode_is_set_at_start() {
    let m = start_extended().await;
    let state: Value = client()
        .get(format!("{}/__mock/app", m.base_url()))
        .send()
        .await
        .expect("app")
        .json()
        .await
        .expect("json");
    assert_eq!(state["mode"], "extended_quota");
    let new = start().await;
    let state: Value = client()
        .get(format!("{}/__mock/app", new.base_url()))
        .send()
        .await
        .expect("app")
        .json()
        .await
        .expect("json");
    assert_eq!(state["mode"], "development", "a new app's mode");
}
