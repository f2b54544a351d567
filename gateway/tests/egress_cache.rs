//! Spending fewer calls: identical GETs in flight at once go to Spotify once (coalescing),
//! and the answers Spotify marks cacheable are served from a small cache, revalidated with
//! `If-None-Match` once stale; never one user's answer to another. What reached Spotify is
//! read from the mock's stats and request log.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const SEARCH: &str = "/v1/search?q=abba&type=track&limit=5";

fn cache_metric(result: &str) -> String {
    format!("spotify_gateway_answer_cache_total{{result=\"{result}\"}}")
}

/// A GET on the egress listener from a client of its own: status, `Cache-Status`, body.
async fn get(s: &Stack, path: &str, user: Option<&str>) -> (u16, String, Value) {
    let mut req = reqwest::Client::new().get(format!("{}{path}", s.gw.egress_url()));
    if let Some(assertion) = user {
        req = req.header("x-gateway-user", assertion);
    }
    let resp = req.send().await.expect("egress answers");
    let status = resp.status().as_u16();
    let cache_status = resp
        .headers()
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (
        status,
        cache_status,
        resp.json().await.unwrap_or(Value::Null),
    )
}

/// A track id from the catalogue, found with one search (then the mock's counters reset).
async fn a_track(s: &Stack) -> String {
    let (status, _, page) = get(s, SEARCH, None).await;
    assert_eq!(status, 200, "{page}");
    let id = page["tracks"]["items"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    mock_post(&s.mock, "/__mock/reset", None).await;
    id
}

/// Waits until the mock has seen `n` API requests (the first call is in flight).
async fn wait_for_calls(s: &Stack, n: u64) {
    wait_until(
        Duration::from_secs(5),
        format!("{n} call(s) at the mock"),
        || async { s.api_requests().await >= n },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_gets_in_flight_go_to_spotify_once() {
    let s = Stack::builder().set("egress.cache_size", 0).start().await;
    a_track(&s).await;
    s.fault(json!({"target": "api", "delay_ms": 1000, "times": 1}))
        .await;
    let first = tokio::spawn({
        let url = format!("{}{SEARCH}", s.gw.egress_url());
        async move { reqwest::get(url).await.expect("call").status().as_u16() }
    });
    wait_for_calls(&s, 1).await;
    let others = (0..9).map(|_| get(&s, SEARCH, None));
    let answers = futures::future::join_all(others).await;
    assert_eq!(first.await.expect("task"), 200);
    for (status, cache_status, body) in &answers {
        assert_eq!(*status, 200);
        assert_eq!(cache_status, "spotify-gateway; fwd=miss; collapsed");
        assert_eq!(body, &answers[0].2, "every caller gets the same answer");
    }
    assert_eq!(s.api_requests().await, 1, "one call reached Spotify");
    assert_eq!(s.metric(&cache_metric("coalesced")).await, 9.0);
    // A different query is a different call.
    assert_eq!(
        get(&s, "/v1/search?q=abba&type=track&limit=6", None)
            .await
            .0,
        200
    );
    assert_eq!(s.api_requests().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_gives_up_does_not_cancel_the_others() {
    let s = Stack::builder().set("egress.cache_size", 0).start().await;
    a_track(&s).await;
    s.fault(json!({"target": "api", "delay_ms": 1500, "times": 1}))
        .await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .expect("client");
    let gave_up = tokio::spawn({
        let url = format!("{}{SEARCH}", s.gw.egress_url());
        async move { impatient.get(url).send().await.is_err() }
    });
    wait_for_calls(&s, 1).await;
    let others = (0..5).map(|_| get(&s, SEARCH, None));
    let answers = futures::future::join_all(others).await;
    assert!(gave_up.await.expect("task"), "the first caller gave up");
    for (status, _, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert!(body["tracks"]["items"].is_array(), "{body}");
    }
    // At most one more call: by the follower that took the lead if the first call was cut.
    let calls = s.api_requests().await;
    eprintln!("{calls} call(s) reached Spotify");
    assert!(calls <= 2, "{calls} calls reached Spotify");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cacheable_answers_are_served_from_the_cache_and_revalidated_when_stale() {
    let s = Stack::builder().start().await;
    let id = a_track(&s).await;
    let track = format!("/v1/tracks/{id}");
    let (status, cache_status, first) = get(&s, &track, None).await;
    assert_eq!(
        (status, cache_status.as_str()),
        (200, "spotify-gateway; fwd=miss")
    );
    let (status, cache_status, second) = get(&s, &track, None).await;
    assert_eq!(status, 200);
    assert!(
        cache_status.starts_with("spotify-gateway; hit; ttl="),
        "{cache_status}"
    );
    assert_eq!(first, second);
    assert_eq!(s.api_requests().await, 1);
    assert_eq!(s.metric(&cache_metric("hit")).await, 1.0);

    // Playlists are `max-age=0` with an ETag: every call asks Spotify, which answers 304.
    let playlist = format!("/v1/playlists/{}", mock_spotify::LARGE_PLAYLIST_ID);
    assert_eq!(get(&s, &playlist, None).await.0, 200);
    let (status, cache_status, body) = get(&s, &playlist, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(cache_status, "spotify-gateway; fwd=stale; fwd-status=304");
    assert!(body["id"].is_string(), "the cached body: {body}");
    let asked = s.last_api_request().await;
    assert!(asked["headers"]["if-none-match"].is_string(), "{asked}");
    assert_eq!(s.api_requests().await, 3);
    assert_eq!(s.metric(&cache_metric("revalidated")).await, 1.0);
    // Written after Spotify's 304, where pingora does not keep the client's connection: the
    // answer says so, so the client does not send its next call on it.
    let resp = s
        .http
        .get(format!("{}{playlist}", s.gw.egress_url()))
        .send()
        .await
        .expect("revalidated");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["connection"], "close");

    // A short max-age goes stale, and the stale answer is revalidated.
    mock_post(&s.mock, "/__mock/cache", Some(json!({"max_age": 1}))).await;
    let search = "/v1/search?q=abba&type=track&limit=7";
    assert_eq!(get(&s, search, None).await.1, "spotify-gateway; fwd=miss");
    wait_until(Duration::from_secs(5), "the answer to go stale", || async {
        let (status, cache_status, _) = get(&s, search, None).await;
        assert_eq!(status, 200);
        cache_status == "spotify-gateway; fwd=stale; fwd-status=304"
    })
    .await;
    assert_eq!(s.api_requests().await, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_answer_is_never_served_to_another_user() {
    let s = Stack::builder().app(App::Echo).start().await;
    let id = a_track(&s).await;
    let track = format!("/v1/tracks/{id}");
    let mut assertions = Vec::new();
    for user in ["alice", "bob"] {
        let b = browser();
        login(&b, &s.gw, user, "/").await;
        assertions.push(s.assertion(&b).await);
    }
    mock_post(&s.mock, "/__mock/reset", None).await;
    let (alice, bob) = (&assertions[0], &assertions[1]);
    assert_eq!(
        get(&s, &track, Some(alice)).await.1,
        "spotify-gateway; fwd=miss"
    );
    assert_eq!(
        get(&s, &track, Some(bob)).await.1,
        "spotify-gateway; fwd=miss"
    );
    assert_eq!(
        get(&s, &track, None).await.1,
        "spotify-gateway; fwd=miss",
        "the app's own"
    );
    assert!(get(&s, &track, Some(alice)).await.1.contains("hit"));
    assert_eq!(s.api_requests().await, 3);

    // `/v1/me` is `private, max-age=0` with an ETag: revalidated for its user, each user
    // getting their own.
    let (_, _, me) = get(&s, "/v1/me", Some(alice)).await;
    assert_eq!(me["id"], "alice");
    let (_, cache_status, me) = get(&s, "/v1/me", Some(bob)).await;
    assert_eq!(me["id"], "bob");
    assert_eq!(cache_status, "spotify-gateway; fwd=miss");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_cache_and_coalescing_off_every_call_goes_to_spotify() {
    let s = Stack::builder()
        .set("egress.cache_size", 0)
        .set("egress.coalesce", false)
        .start()
        .await;
    let id = a_track(&s).await;
    for _ in 0..3 {
        let (status, cache_status, _) = get(&s, &format!("/v1/tracks/{id}"), None).await;
        assert_eq!((status, cache_status.as_str()), (200, ""));
    }
    assert_eq!(s.api_requests().await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_cool_down_fresh_cached_answers_are_still_served() {
    let s = Stack::builder().start().await;
    let id = a_track(&s).await;
    let track = format!("/v1/tracks/{id}");
    assert_eq!(get(&s, &track, None).await.0, 200);
    s.fault(json!({"target": "api", "status": 429, "retry_after": 30, "times": 1}))
        .await;
    let uncached = "/v1/search?q=abba&type=track&limit=8";
    assert_eq!(get(&s, uncached, None).await.0, 429, "Spotify's 429");
    let (status, cache_status, _) = get(&s, &track, None).await;
    assert_eq!(status, 200, "from the cache, Spotify untouched");
    assert!(cache_status.contains("hit"), "{cache_status}");
    let (status, _, body) = get(&s, "/v1/search?q=abba&type=track&limit=9", None).await;
    assert_eq!(status, 429, "nothing cached for it: {body}");
    assert_eq!(s.api_requests().await, 2);
}
