//! Spotify as it is in 2026: `account_id`, `/playlists/{id}/items`, `/me/library`, refresh
//! tokens that end six months after the original authorization (aged by `/__mock/age`), and
//! development mode's registered users and retired paths (`/__mock/app`).
//!
//! Drives a real MockSpotify over HTTP, the way the gateway and external scripts do.

mod common;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use mock_spotify::MockSpotify;

use common::{
    api, api_error, app_token, call, client, oauth_error, s, start, token, track_id, user_token,
    DEMO,
};

/// `POST /__mock/{path}` with an optional JSON body: status and body.
async fn control(m: &MockSpotify, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = client().post(format!("{}/__mock/{path}", m.base_url()));
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("control");
    let status = resp.status();
    (status, resp.json().await.expect("json"))
}

async fn app_state(m: &MockSpotify) -> Value {
    client()
        .get(format!("{}/__mock/app", m.base_url()))
        .send()
        .await
        .expect("app")
        .json()
        .await
        .expect("json")
}

async fn refresh(m: &MockSpotify, refresh_token: &str) -> (StatusCode, Value) {
    token(
        m,
        DEMO,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

#[tokio::test]
async fn me_carries_a_stable_account_id() {
    let m = start().await;
    let alice = user_token(&m, "alice", "").await;
    let (status, _, me) = api(&m, "/v1/me", Some(s(&alice["access_token"]))).await;
    assert_eq!(status, StatusCode::OK);
    let account = s(&me["account_id"]).to_string();
    assert_ne!(account, "alice", "pseudonymous, not the user id");
    assert_eq!(me["id"], "alice");
    // The same on another mock: stable.
    let other = start().await;
    let again = user_token(&other, "alice", "").await;
    let (_, _, me2) = api(&other, "/v1/me", Some(s(&again["access_token"]))).await;
    assert_eq!(me2["account_id"], account.as_str());
    let bob = user_token(&m, "bob", "").await;
    let (_, _, bob_me) = api(&m, "/v1/me", Some(s(&bob["access_token"]))).await;
    assert_ne!(bob_me["account_id"], account.as_str());
}

#[tokio::test]
async fn playlist_items_replace_tracks_which_only_extended_quota_apps_still_get() {
    let m = start().await;
    let alice = user_token(&m, "alice", "playlist-read-private").await;
    let a = s(&alice["access_token"]).to_string();
    let (_, _, mine) = api(&m, "/v1/me/playlists", Some(&a)).await;
    let kitchen = &mine["items"][0];
    let id = s(&kitchen["id"]).to_string();
    assert_eq!(kitchen["items"]["total"], 8);
    let (status, _, items) = api(&m, &format!("/v1/playlists/{id}/items?limit=2"), Some(&a)).await;
    assert_eq!(status, StatusCode::OK, "{items}");
    assert_eq!(items["items"][0]["item"]["type"], "track");
    assert!(items["items"][0].get("track").is_none());
    assert!(s(&items["next"]).contains(&format!("/v1/playlists/{id}/items?offset=2")));

    // Development mode (the default): the old path is refused, for app tokens too.
    let old = format!("/v1/playlists/{id}/tracks");
    let (status, _, body) = api(&m, &old, Some(&a)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _, _) = api(&m, &old, Some(&app_token(&m).await)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, state) = control(&m, "app", Some(json!({"mode": "extended_quota"}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(state["mode"], "extended_quota");
    let (status, _, tracks) = api(&m, &format!("{old}?limit=2"), Some(&a)).await;
    assert_eq!(status, StatusCode::OK);
    // Compared with `/items` in the same mode (development mode withholds some fields).
    let (_, _, items) = api(&m, &format!("/v1/playlists/{id}/items?limit=2"), Some(&a)).await;
    assert_eq!(tracks["items"][0]["track"], items["items"][0]["item"]);
}

/// `GET /v1/me/library/contains?uris=...` as `token`.
async fn contains(m: &MockSpotify, token: &str, uris: &str) -> Value {
    let path = format!("/v1/me/library/contains?uris={uris}");
    let (status, _, body) = api(m, &path, Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn the_library_saves_and_removes_by_uri() {
    let m = start().await;
    let alice = user_token(&m, "alice", "user-library-modify user-library-read").await;
    let a = s(&alice["access_token"]).to_string();
    let karma = format!("spotify:track:{}", track_id(&m, &a, "karma police").await);
    let halo = format!("spotify:track:{}", track_id(&m, &a, "beyonce halo").await);
    let both = format!("{karma},{halo}");
    assert_eq!(contains(&m, &a, &both).await, json!([false, false]));
    let body = json!({ "uris": [karma] }).to_string();
    let (status, _, saved) = call(&m, Method::PUT, "/v1/me/library", Some(&a), Some(&body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(saved, Value::Null, "empty body");
    assert_eq!(contains(&m, &a, &both).await, json!([true, false]));

    // Bad input changes nothing.
    for (bad, message) in [
        (
            json!({ "uris": [halo, "spotify:track:short"] }),
            "Invalid uri: spotify:track:short",
        ),
        (json!({ "uris": [] }), "Missing required field: uris"),
        (
            json!({ "uris": ["spotify:track:0000000000000000000000"] }),
            "Payload contains a non-existing ID",
        ),
    ] {
        let (status, _, body) = call(
            &m,
            Method::PUT,
            "/v1/me/library",
            Some(&a),
            Some(&bad.to_string()),
        )
        .await;
        assert_eq!(
            (status, body),
            (StatusCode::BAD_REQUEST, api_error(400, message))
        );
    }
    assert_eq!(contains(&m, &a, &both).await, json!([true, false]));

    let (status, _, _) = call(&m, Method::DELETE, "/v1/me/library", Some(&a), Some(&body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(contains(&m, &a, &both).await, json!([false, false]));

    // Saving takes user-library-modify.
    let reader = user_token(&m, "alice", "user-library-read").await;
    let (status, _, body) = call(
        &m,
        Method::PUT,
        "/v1/me/library",
        Some(s(&reader["access_token"])),
        Some(&body),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::FORBIDDEN,
            api_error(403, "Insufficient client scope")
        )
    );
}

#[tokio::test]
async fn a_refresh_token_ends_six_months_after_the_authorization_whatever_the_refreshes() {
    let m = start().await;
    let alice = user_token(&m, "alice", "").await;
    let first = s(&alice["refresh_token"]).to_string();
    let (status, aged) = control(&m, "age?user=alice&days=100", None).await;
    assert_eq!(status, StatusCode::OK, "{aged}");
    assert_eq!(aged["aged_refresh_tokens"], 1);
    assert_eq!(aged["authorization_age_days"], 100);
    // Aging by days expires the hour-long access token too.
    let (status, _, _) = api(&m, "/v1/me", Some(s(&alice["access_token"]))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, fresh) = refresh(&m, &first).await;
    assert_eq!(status, StatusCode::OK, "{fresh}");
    // Refreshing did not start the six months again.
    control(&m, "age?user=alice&days=82", None).await;
    assert_eq!(refresh(&m, &first).await.0, StatusCode::OK, "day 182");
    control(&m, "age?user=alice&days=1", None).await;
    assert_eq!(
        refresh(&m, &first).await,
        (
            StatusCode::BAD_REQUEST,
            oauth_error("invalid_grant", "Refresh token expired")
        )
    );
    // A new login is a new authorization.
    let again = user_token(&m, "alice", "").await;
    assert_eq!(
        refresh(&m, s(&again["refresh_token"])).await.0,
        StatusCode::OK
    );
    // Bob was never aged.
    let bob = user_token(&m, "bob", "").await;
    assert_eq!(
        refresh(&m, s(&bob["refresh_token"])).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn pkce_rotation_keeps_the_original_authorization_time() {
    use common::VERIFIER;
    let m = start().await;
    let code = common::code_for(&m, "alice", "", true).await;
    let (status, grant) = token(
        &m,
        None,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", common::REDIRECT),
            ("client_id", "demo-client-id"),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{grant}");
    let pkce_refresh = |rt: String| {
        let m = &m;
        async move {
            token(
                m,
                None,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &rt),
                    ("client_id", "demo-client-id"),
                ],
            )
            .await
        }
    };
    control(&m, "age?user=alice&days=180", None).await;
    let (status, rotated) = pkce_refresh(s(&grant["refresh_token"]).to_string()).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    control(&m, "age?user=alice&days=3", None).await;
    let (status, body) = pkce_refresh(s(&rotated["refresh_token"]).to_string()).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            oauth_error("invalid_grant", "Refresh token expired")
        )
    );
}

#[tokio::test]
async fn age_control_refuses_bad_input() {
    let m = start().await;
    let alice = user_token(&m, "alice", "").await;
    for (path, status) in [
        ("age?user=alice", StatusCode::BAD_REQUEST),
        ("age?user=alice&days=-1", StatusCode::BAD_REQUEST),
        ("age?user=alice&days=3651", StatusCode::BAD_REQUEST),
        ("age?user=alice&days=x", StatusCode::BAD_REQUEST),
        ("age?days=1", StatusCode::BAD_REQUEST),
        ("age?user=mallory&days=1", StatusCode::NOT_FOUND),
    ] {
        assert_eq!(control(&m, path, None).await.0, status, "{path}");
    }
    // Nothing was aged: the access token still works.
    let (status, _, _) = api(&m, "/v1/me", Some(s(&alice["access_token"]))).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn development_mode_serves_only_registered_users() {
    let m = start().await;
    assert_eq!(
        app_state(&m).await,
        json!({"mode": "development", "registered": ["alice", "bob"]})
    );
    // carol is not registered: she can log in, but no API call works for her.
    let carol = user_token(&m, "carol", "user-read-private").await;
    let c = s(&carol["access_token"]).to_string();
    let refused = (
        StatusCode::FORBIDDEN,
        api_error(403, "User not registered in the Developer Dashboard"),
    );
    for path in ["/v1/me", "/v1/search?q=abba&type=track", "/v1/me/playlists"] {
        let (status, _, body) = api(&m, path, Some(&c)).await;
        assert_eq!((status, body), refused, "{path}");
    }
    // The app token and registered users are unaffected.
    assert_eq!(
        api(
            &m,
            "/v1/search?q=abba&type=track",
            Some(&app_token(&m).await)
        )
        .await
        .0,
        StatusCode::OK
    );

    // Bad registrations change nothing.
    let (status, _) = control(&m, "app", Some(json!({"registered": ["alice", "mallory"]}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = control(&m, "app", Some(json!({"mode": "sandbox"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let six = json!({"registered": ["alice", "bob", "carol", "alice", "bob", "carol"]});
    let (status, _) = control(&m, "app", Some(six)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "at most 5 users");
    assert_eq!(app_state(&m).await["registered"], json!(["alice", "bob"]));

    let (status, state) = control(&m, "app", Some(json!({"registered": ["carol"]}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(state["registered"], json!(["carol"]));
    let (status, _, me) = api(&m, "/v1/me", Some(&c)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["display_name"], "Carol Chen");
    let alice = user_token(&m, "alice", "").await;
    let (status, _, _) = api(&m, "/v1/me", Some(s(&alice["access_token"]))).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "alice is no longer registered"
    );

    // Extended quota serves everyone.
    control(&m, "app", Some(json!({"mode": "extended_quota"}))).await;
    let (status, _, _) = api(&m, "/v1/me", Some(s(&alice["access_token"]))).await;
    assert_eq!(status, StatusCode::OK);
}
