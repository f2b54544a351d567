//! `Cache-Control` as api.spotify.com sends it: catalogue objects public for two hours,
//! search briefly, playlists revalidated by `ETag` (304), the user's own data private;
//! `POST /__mock/cache` shortens the catalogue's `max-age`, keeps the user's answers fresh
//! and adds to `Vary`.

mod common;

use reqwest::StatusCode;
use serde_json::json;

use common::{app_token, client, header, start, user_token};

async fn get(
    m: &mock_spotify::MockSpotify,
    path: &str,
    token: &str,
    etag: Option<&str>,
) -> reqwest::Response {
    let mut req = client()
        .get(format!("{}{path}", m.base_url()))
        .bearer_auth(token);
    if let Some(tag) = etag {
        req = req.header("if-none-match", tag);
    }
    req.send().await.expect("api")
}

#[tokio::test]
async fn cache_control_follows_spotify_and_304_answers_a_matching_etag() {
    let m = start().await;
    let app = app_token(&m).await;
    let search = get(&m, "/v1/search?q=abba&type=track", &app, None).await;
    assert_eq!(
        header(search.headers(), "cache-control"),
        Some("public, max-age=60")
    );
    let page: serde_json::Value = search.json().await.expect("json");
    let id = page["tracks"]["items"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let track = get(&m, &format!("/v1/tracks/{id}"), &app, None).await;
    assert_eq!(
        header(track.headers(), "cache-control"),
        Some("public, max-age=7200")
    );
    let tag = header(track.headers(), "etag").expect("etag").to_string();
    let again = get(&m, &format!("/v1/tracks/{id}"), &app, Some(&tag)).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(
        header(again.headers(), "cache-control"),
        Some("public, max-age=7200")
    );

    let alice = user_token(&m, "alice", "").await;
    let me = get(
        &m,
        "/v1/me",
        alice["access_token"].as_str().expect("token"),
        None,
    )
    .await;
    assert_eq!(
        header(me.headers(), "cache-control"),
        Some("private, max-age=0")
    );
    let missing = get(&m, "/v1/tracks/0000000000000000000000", &app, None).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        header(missing.headers(), "cache-control"),
        Some("private, max-age=0")
    );

    let url = format!("{}/__mock/cache", m.base_url());
    let resp = client()
        .post(&url)
        .json(&json!({"max_age": 2}))
        .send()
        .await;
    assert!(resp.expect("control").status().is_success());
    let track = get(&m, &format!("/v1/tracks/{id}"), &app, None).await;
    assert_eq!(
        header(track.headers(), "cache-control"),
        Some("public, max-age=2")
    );
    let bad = client().post(&url).json(&json!({"ttl": 2})).send().await;
    assert_eq!(bad.expect("control").status(), StatusCode::BAD_REQUEST);

    let resp = client()
        .post(&url)
        .json(&json!({"user_max_age": 60, "vary": "X-Thing"}))
        .send()
        .await;
    assert!(resp.expect("control").status().is_success());
    let me = get(
        &m,
        "/v1/me",
        alice["access_token"].as_str().expect("token"),
        None,
    )
    .await;
    assert_eq!(
        header(me.headers(), "cache-control"),
        Some("private, max-age=60")
    );
    let vary: Vec<_> = me.headers().get_all("vary").iter().collect();
    assert_eq!(vary, ["X-Thing", "Accept-Encoding"]);
    let track = get(&m, &format!("/v1/tracks/{id}"), &app, None).await;
    assert_eq!(
        header(track.headers(), "cache-control"),
        Some("public, max-age=7200"),
        "what the control leaves out is Spotify's again"
    );
}
