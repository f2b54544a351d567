//! The Web API's reads: unauthorized shapes and expiry, search paging, currently
//! playing and playlists, gzip, and paging the large playlist.
//!
//! Drives a real MockSpotify over HTTP, the way the gateway and external scripts do.

mod common;

use std::time::Duration;

use mock_spotify::MockConfig;
use reqwest::StatusCode;
use serde_json::{json, Value};

use common::{
    api, api_error, app_token, client, gunzip, header, raw_client, s, start, start_extended,
    start_with, token, user_token, DEMO,
};

#[tokio::test]
async fn api_unauthorized_shapes_and_expiry() {
    let config = MockConfig {
        token_lifetime: Duration::from_millis(300),
        ..MockConfig::default()
    };
    let m = start_with(config).await;
    let (status, headers, body) = api(&m, "/v1/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, api_error(401, "No token provided"));
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json; charset=utf-8")
    );
    let (status, _, body) = api(&m, "/v1/me", Some("bogus")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, api_error(401, "Invalid access token"));
    let (status, _, body) = api(&m, "/v1/nothing-here", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, api_error(404, "Service not found"));

    let body = user_token(&m, "alice", "").await;
    assert_eq!(body["expires_in"], 1);
    let access = s(&body["access_token"]).to_string();
    assert_eq!(api(&m, "/v1/me", Some(&access)).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, _, body) = api(&m, "/v1/me", Some(&access)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, api_error(401, "The access token expired"));
}

#[tokio::test]
async fn search_paging_links() {
    // Extended quota: Spotify's search limits and profiles as before 2026
    // (development mode: development_mode.rs).
    let m = start_extended().await;
    let (_, app) = token(&m, DEMO, &[("grant_type", "client_credentials")]).await;
    let t = s(&app["access_token"]).to_string();
    let base = m.base_url();

    let (status, _, body) = api(&m, "/v1/search?q=abba&type=track", Some(&t)).await;
    assert_eq!(status, StatusCode::OK);
    let page = &body["tracks"];
    assert_eq!(page["total"], 50);
    assert_eq!(page["limit"], 20);
    assert_eq!(page["offset"], 0);
    assert_eq!(
        page["href"],
        format!("{base}/v1/search?query=abba&type=track&offset=0&limit=20")
    );
    assert_eq!(page["previous"], Value::Null);
    assert_eq!(page["items"].as_array().expect("items").len(), 20);
    let first = &page["items"][0];
    assert_eq!(first["name"], "Dancing Queen");
    assert_eq!(first["type"], "track");
    let id = s(&first["id"]).to_string();
    assert_eq!(id.len(), 22);
    assert_eq!(first["uri"], format!("spotify:track:{id}"));
    assert_eq!(first["href"], format!("{base}/v1/tracks/{id}"));
    assert_eq!(first["album"]["release_date_precision"], "year");
    assert_eq!(first["artists"][0]["name"], "ABBA");

    let mut next = page["next"].as_str().map(str::to_string);
    let mut pages = 1;
    let mut last = Value::Null;
    while let Some(url) = next {
        let (status, _, body) = api(&m, &url, Some(&t)).await;
        assert_eq!(status, StatusCode::OK);
        pages += 1;
        next = body["tracks"]["next"].as_str().map(str::to_string);
        last = body["tracks"].clone();
    }
    assert_eq!(pages, 3);
    assert_eq!(last["offset"], 40);
    assert_eq!(last["items"].as_array().expect("items").len(), 10);
    assert_eq!(
        last["previous"],
        format!("{base}/v1/search?query=abba&type=track&offset=20&limit=20")
    );

    // Same IDs on a second server: the catalogue is deterministic.
    let other = start().await;
    let (_, app2) = token(&other, DEMO, &[("grant_type", "client_credentials")]).await;
    let (_, _, again) = api(
        &other,
        "/v1/search?query=abba&type=album,track&limit=1",
        Some(s(&app2["access_token"])),
    )
    .await;
    assert_eq!(again["tracks"]["items"][0]["id"], id.as_str());

    let (status, _, track) = api(&m, &format!("/v1/tracks/{id}"), Some(&t)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(track["name"], "Dancing Queen");
    let artist_id = s(&track["artists"][0]["id"]).to_string();
    let (status, _, artist) = api(&m, &format!("/v1/artists/{artist_id}"), Some(&t)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(artist["name"], "ABBA");
    assert!(artist["followers"]["total"].is_u64());
    let (status, _, body) = api(&m, "/v1/tracks/0000000000000000000000", Some(&t)).await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, api_error(404, "Resource not found"))
    );

    for (query, message) in [
        ("/v1/search?q=abba&type=track&limit=0", "Invalid limit"),
        ("/v1/search?q=abba&type=track&limit=51", "Invalid limit"),
        ("/v1/search?q=abba&type=track&limit=ten", "Invalid limit"),
        ("/v1/search?type=track", "No search query"),
        ("/v1/search?q=abba&type=album", "Bad search type field"),
    ] {
        let (status, _, body) = api(&m, query, Some(&t)).await;
        assert_eq!(
            (status, body),
            (StatusCode::BAD_REQUEST, api_error(400, message)),
            "{query}"
        );
    }
    let (_, _, body) = api(
        &m,
        "/v1/search?q=dancing%20queen&type=track&limit=2",
        Some(&t),
    )
    .await;
    assert_eq!(body["tracks"]["total"], 3);
    assert_eq!(
        body["tracks"]["next"],
        format!("{base}/v1/search?query=dancing+queen&type=track&offset=2&limit=2")
    );
}

#[tokio::test]
async fn currently_playing_and_playlists() {
    // Extended quota: Spotify's search limits and profiles as before 2026
    // (development mode: development_mode.rs).
    let m = start_extended().await;
    let scope = "user-read-currently-playing playlist-read-private";
    let alice = user_token(&m, "alice", scope).await;
    let bob = user_token(&m, "bob", scope).await;
    let (status, _, body) = api(
        &m,
        "/v1/me/player/currently-playing",
        Some(s(&alice["access_token"])),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["is_playing"], true);
    assert_eq!(body["currently_playing_type"], "track");
    assert_eq!(body["item"]["name"], "Dancing Queen");
    assert!(body["progress_ms"].is_u64() && body["timestamp"].is_u64());

    let resp = client()
        .get(format!("{}/v1/me/player/currently-playing", m.base_url()))
        .bearer_auth(s(&bob["access_token"]))
        .send()
        .await
        .expect("bob");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(resp.headers().get("content-type").is_none());
    assert!(resp.bytes().await.expect("body").is_empty());

    let no_scope = user_token(&m, "alice", "").await;
    let (status, _, body) = api(
        &m,
        "/v1/me/player/currently-playing",
        Some(s(&no_scope["access_token"])),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::UNAUTHORIZED,
            api_error(401, "Permissions missing")
        )
    );

    let (_, _, page) = api(
        &m,
        "/v1/me/playlists?limit=2",
        Some(s(&alice["access_token"])),
    )
    .await;
    // Three small playlists and the 1,000-track one.
    assert_eq!(page["total"], 4);
    assert_eq!(page["items"].as_array().expect("items").len(), 2);
    assert_eq!(
        page["next"],
        format!("{}/v1/me/playlists?offset=2&limit=2", m.base_url())
    );
    let playlist = &page["items"][0];
    assert_eq!(playlist["owner"]["id"], "alice");
    assert_eq!(playlist["type"], "playlist");
    let items_href = s(&playlist["items"]["href"]).to_string();
    assert!(items_href.ends_with("/items"), "{items_href}");
    let (status, _, items) = api(&m, &items_href, Some(s(&alice["access_token"]))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(items["total"], playlist["items"]["total"]);
    assert_eq!(items["items"][0]["item"]["name"], "Dancing Queen");

    let (_, _, page) = api(&m, "/v1/me/playlists", Some(s(&bob["access_token"]))).await;
    assert_eq!(page["total"], 1);
    let (status, _, user) = api(&m, "/v1/users/bob", Some(s(&alice["access_token"]))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(user["display_name"], "Bob Baker");
    assert!(user.get("email").is_none() && user.get("country").is_none());
}

#[tokio::test]
async fn gzip_when_the_client_accepts_it() {
    // Extended quota: Spotify's search limits and profiles as before 2026
    // (development mode: development_mode.rs).
    let m = start_extended().await;
    let t = app_token(&m).await;
    let c = raw_client();
    let url = format!("{}/v1/search?q=abba&type=track&limit=50", m.base_url());

    let plain = c.get(&url).bearer_auth(&t).send().await.expect("plain");
    assert_eq!(plain.status(), StatusCode::OK);
    assert_eq!(header(plain.headers(), "content-encoding"), None);
    assert_eq!(header(plain.headers(), "vary"), Some("Accept-Encoding"));
    let plain = plain.bytes().await.expect("body");

    for accept in ["gzip", "br, gzip;q=0.8", "*", "deflate, x-gzip"] {
        let resp = c
            .get(&url)
            .bearer_auth(&t)
            .header("accept-encoding", accept)
            .send()
            .await
            .expect("gzip");
        assert_eq!(resp.status(), StatusCode::OK);
        let headers = resp.headers().clone();
        assert_eq!(
            header(&headers, "content-encoding"),
            Some("gzip"),
            "{accept}"
        );
        assert_eq!(header(&headers, "vary"), Some("Accept-Encoding"));
        assert_eq!(
            header(&headers, "content-type"),
            Some("application/json; charset=utf-8")
        );
        let body = resp.bytes().await.expect("body");
        assert!(
            body.len() < plain.len() / 2,
            "{} vs {}",
            body.len(),
            plain.len()
        );
        assert_eq!(gunzip(&body), plain.as_ref());
    }
    for refuse in ["identity", "gzip;q=0", "*, gzip;q=0", "br"] {
        let resp = c
            .get(&url)
            .bearer_auth(&t)
            .header("accept-encoding", refuse)
            .send()
            .await
            .expect("refused");
        assert_eq!(header(resp.headers(), "content-encoding"), None, "{refuse}");
        assert_eq!(resp.bytes().await.expect("body"), plain);
    }

    // Error JSON is compressed too, and keeps its headers.
    let resp = c
        .get(format!("{}/v1/me", m.base_url()))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("401");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(resp.headers(), "content-encoding"), Some("gzip"));
    assert!(resp.headers().contains_key("www-authenticate"));
    let body: Value =
        serde_json::from_slice(&gunzip(&resp.bytes().await.expect("body"))).expect("json");
    assert_eq!(body, api_error(401, "No token provided"));

    // 204s stay bodiless and unencoded.
    let bob = user_token(&m, "bob", "user-read-currently-playing").await;
    let resp = c
        .get(format!("{}/v1/me/player/currently-playing", m.base_url()))
        .bearer_auth(s(&bob["access_token"]))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("204");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(resp.headers(), "content-encoding"), None);
    assert!(resp.bytes().await.expect("body").is_empty());

    // The accounts service and the test controls never compress.
    let resp = c
        .post(format!("{}/api/token", m.base_url()))
        .basic_auth("demo-client-id", Some("demo-client-secret"))
        .header("accept-encoding", "gzip")
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(resp.headers(), "content-encoding"), None);
    assert!(resp.json::<Value>().await.expect("json")["access_token"].is_string());
    let resp = c
        .get(format!("{}/__mock/stats", m.base_url()))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("stats");
    assert_eq!(header(resp.headers(), "content-encoding"), None);
    assert!(resp.json::<Value>().await.is_ok());
}

#[tokio::test]
async fn large_playlist_pages() {
    let m = start().await;
    let alice = user_token(&m, "alice", "playlist-read-private").await;
    let a = s(&alice["access_token"]).to_string();
    let base = m.base_url();
    let (_, _, mine) = api(&m, "/v1/me/playlists", Some(&a)).await;
    let large = mine["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|p| p["id"] == mock_spotify::LARGE_PLAYLIST_ID)
        .expect("large playlist listed")
        .clone();
    assert_eq!(large["owner"]["id"], "alice");
    assert_eq!(large["items"]["total"], 1000);

    // An app token may read it too; follow `next` to the end.
    let t = app_token(&m).await;
    let id = mock_spotify::LARGE_PLAYLIST_ID;
    let first = format!("{base}/v1/playlists/{id}/items?limit=100");
    let resp = raw_client()
        .get(&first)
        .bearer_auth(&t)
        .send()
        .await
        .expect("page");
    let size = resp.bytes().await.expect("body").len();
    assert!(size > 100 * 1024, "first page is {size} bytes");

    let mut next = Some(first);
    let mut seen = 0;
    let mut pages = 0;
    while let Some(url) = next {
        let (status, _, page) = api(&m, &url, Some(&t)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(page["total"], 1000);
        assert_eq!(page["limit"], 100);
        assert_eq!(page["offset"], seen);
        assert_eq!(
            page["href"],
            format!("{base}/v1/playlists/{id}/items?offset={seen}&limit=100")
        );
        let expected_previous = (seen > 0).then(|| {
            format!(
                "{base}/v1/playlists/{id}/items?offset={}&limit=100",
                seen - 100
            )
        });
        assert_eq!(page["previous"], json!(expected_previous));
        seen += page["items"].as_array().expect("items").len();
        pages += 1;
        next = page["next"].as_str().map(str::to_string);
    }
    assert_eq!((pages, seen), (10, 1000));

    // Deterministic: the catalogue on repeat, the same on every mock.
    let (_, _, head) = api(&m, &format!("/v1/playlists/{id}/items?limit=1"), Some(&t)).await;
    assert_eq!(head["items"][0]["item"]["name"], "Dancing Queen");
    let (_, _, playlist) = api(&m, &format!("/v1/playlists/{id}"), Some(&t)).await;
    assert_eq!(
        playlist["items"]["items"].as_array().expect("items").len(),
        100
    );
    assert_eq!(
        playlist["items"]["next"],
        format!("{base}/v1/playlists/{id}/items?offset=100&limit=100")
    );
    let (status, _, _) = api(&m, &format!("/v1/playlists/{id}/items?limit=101"), Some(&t)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
