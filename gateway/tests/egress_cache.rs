// Over 600 lines: coalescing, the cache and revalidation share one stack setup and one reading of
// the mock's request log; they are one feature seen from three sides.
//! Spending fewer calls: identical GETs in flight at once go to Spotify once (coalescing),
//! and the answers Spotify marks cacheable are served from a small cache, revalidated with
//! `If-None-Match` once stale; never one user's answer to another, nor one token's answer to
//! another token (two sessions of a user can hold different scopes), nor an answer in an
//! encoding its caller did not accept, nor to a call its `Vary` does not admit. A full cache
//! takes about its configured size in memory. What reached Spotify is read from the mock's
//! stats and request log.

mod common;

use std::io::Read as _;
use std::time::Duration;

use common::*;
use futures::StreamExt as _;
use serde_json::{json, Value};

const SEARCH: &str = "/v1/search?q=abba&type=track&limit=5";

fn cache_metric(result: &str) -> String {
    format!("spotify_gateway_answer_cache_total{{app=\"default\",result=\"{result}\"}}")
}

/// A GET on the egress listener from a client of its own: status, `Cache-Status`, body.
async fn get(s: &Stack, path: &str, user: Option<&str>) -> (u16, String, Value) {
    egress_answer(&s.gw, path, user).await
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

/// The answer to a GET as a client sees it.
#[derive(Debug)]
struct Got {
    status: u16,
    /// `Content-Encoding`.
    encoding: Option<String>,
    cache_status: String,
    /// The JSON body, gunzipped when it came gzipped.
    body: Value,
}

/// A GET of `url` with these headers (and `Authorization: Bearer {bearer}` when given).
async fn fetch(url: &str, bearer: Option<&str>, headers: &[(&str, &str)]) -> Got {
    let mut req = reqwest::Client::new().get(url);
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req.send().await.expect("an answer");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().expect("ascii").to_string())
    };
    let (status, encoding) = (resp.status().as_u16(), header("content-encoding"));
    let cache_status = header("cache-status").unwrap_or_default();
    let bytes = resp.bytes().await.expect("body");
    let mut text = String::new();
    if encoding.as_deref() == Some("gzip") {
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .expect("valid gzip");
    } else {
        text = String::from_utf8(bytes.to_vec()).expect("a plain body");
    }
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Got {
        status,
        encoding,
        cache_status,
        body,
    }
}

/// `Accept-Encoding` as clients send it (`None`: no header): gzip named, under `*`, under
/// another name, refused; identity refused, with or without something the API has.
const ENCODINGS: [Option<&str>; 13] = [
    None,
    Some("*"),
    Some("gzip"),
    Some("x-gzip"),
    Some("br"),
    Some(""),
    Some("identity"),
    Some("gzip;q=0"),
    Some("br, gzip;q=0"),
    Some("*;q=0"),
    Some("identity;q=0"),
    Some("gzip, identity;q=0"),
    Some("br, identity;q=0"),
];

fn accepting(accept: Option<&str>) -> Vec<(&str, &str)> {
    accept.map(|a| ("accept-encoding", a)).into_iter().collect()
}

/// The gateway leaves Spotify's links alone (`egress.public_base_url` is `spotify.api_url`):
/// Spotify's gzip answers pass as they are, not inflated on the way.
fn no_link_rewriting(stack: StackBuilder) -> StackBuilder {
    stack.edit(|doc| doc["egress"]["public_base_url"] = doc["spotify"]["api_url"].clone())
}

/// The app token, from the mock itself.
async fn app_token(mock: &MockSpotify) -> String {
    let resp = reqwest::Client::new()
        .post(format!("{}/api/token", mock.base_url()))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token");
    let token: Value = resp.json().await.expect("token JSON");
    token["access_token"].as_str().expect("a token").to_string()
}

/// What Spotify itself answers `path` for each of [`ENCODINGS`] (then the mock's counters
/// reset): the origin's rule is what a client must get through the gateway.
async fn spotify_answers(s: &Stack, path: &str) -> Vec<Got> {
    let token = app_token(&s.mock).await;
    let mut answers = Vec::new();
    for accept in ENCODINGS {
        let url = format!("{}{path}", s.mock.base_url());
        let got = fetch(&url, Some(&token), &accepting(accept)).await;
        assert_eq!(got.status, 200, "{got:?}");
        answers.push(got);
    }
    assert!(
        answers.iter().any(|a| a.encoding.is_some())
            && answers.iter().any(|a| a.encoding.is_none()),
        "Spotify gzips for some and not for others: {answers:?}"
    );
    mock_post(&s.mock, "/__mock/reset", None).await;
    answers
}

/// Two track ids from the catalogue (then the mock's counters reset).
async fn two_tracks(s: &Stack) -> [String; 2] {
    let (status, _, page) = get(s, SEARCH, None).await;
    assert_eq!(status, 200, "{page}");
    let id = |i: usize| {
        page["tracks"]["items"][i]["id"]
            .as_str()
            .expect("id")
            .to_string()
    };
    mock_post(&s.mock, "/__mock/reset", None).await;
    [id(0), id(1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_answer_goes_only_to_calls_that_accept_its_encoding() {
    let s = no_link_rewriting(Stack::builder()).start().await;
    let forward: Vec<usize> = (0..ENCODINGS.len()).collect();
    let backward: Vec<usize> = forward.iter().rev().copied().collect();
    // Each order on a track of its own: whichever encoding comes first, the others must not
    // get its answer.
    for (track, order) in two_tracks(&s).await.iter().zip([forward, backward]) {
        let path = format!("/v1/tracks/{track}");
        let spotify = spotify_answers(&s, &path).await;
        let url = format!("{}{path}", s.gw.egress_url());
        for round in ["first", "again, from the cache"] {
            for &i in &order {
                let got = fetch(&url, None, &accepting(ENCODINGS[i])).await;
                assert_eq!(got.status, 200, "{got:?}");
                assert_eq!(
                    got.encoding, spotify[i].encoding,
                    "Accept-Encoding {:?} ({round}): {}",
                    ENCODINGS[i], got.cache_status
                );
                assert_eq!(got.body, spotify[i].body);
                if round != "first" {
                    assert!(got.cache_status.contains("hit"), "{}", got.cache_status);
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coalesced_answer_goes_only_to_calls_that_accept_its_encoding() {
    let s = no_link_rewriting(Stack::builder().set("egress.cache_size", 0))
        .start()
        .await;
    let [track, _] = two_tracks(&s).await;
    let path = format!("/v1/tracks/{track}");
    let spotify = spotify_answers(&s, &path).await;
    let url = format!("{}{path}", s.gw.egress_url());
    s.fault(json!({"target": "api", "delay_ms": 2000, "times": 1}))
        .await;
    let leader = tokio::spawn({
        let url = url.clone();
        async move { fetch(&url, None, &[("accept-encoding", "*")]).await }
    });
    wait_for_calls(&s, 1).await;
    let followers = ENCODINGS.map(|accept| {
        let url = url.clone();
        async move { fetch(&url, None, &accepting(accept)).await }
    });
    let followers = futures::future::join_all(followers).await;
    assert_eq!(
        leader.await.expect("task").encoding.as_deref(),
        Some("gzip")
    );
    for (i, got) in followers.iter().enumerate() {
        assert_eq!(got.status, 200, "{got:?}");
        assert_eq!(
            got.encoding, spotify[i].encoding,
            "Accept-Encoding {:?}: {}",
            ENCODINGS[i], got.cache_status
        );
        assert_eq!(got.body, spotify[i].body);
    }
    assert_eq!(
        followers[1].cache_status, "spotify-gateway; fwd=miss; collapsed",
        "the same Accept-Encoding as the leader's still shares its answer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_varies_on_a_header_goes_only_to_calls_that_send_it_alike() {
    let s = Stack::builder().start().await;
    let [first, second] = two_tracks(&s).await;
    mock_post(&s.mock, "/__mock/cache", Some(json!({"vary": "X-Thing"}))).await;
    let url = format!("{}/v1/tracks/{first}", s.gw.egress_url());
    let thing = |v: &'static str| [("x-thing", v)];
    assert_eq!(
        fetch(&url, None, &thing("a")).await.cache_status,
        "spotify-gateway; fwd=miss"
    );
    assert_eq!(
        fetch(&url, None, &thing("b")).await.cache_status,
        "spotify-gateway; fwd=miss",
        "another X-Thing: a call of its own"
    );
    assert!(fetch(&url, None, &thing("b"))
        .await
        .cache_status
        .contains("hit"));
    assert_eq!(
        fetch(&url, None, &[]).await.cache_status,
        "spotify-gateway; fwd=miss",
        "no X-Thing: a call of its own"
    );
    assert_eq!(s.api_requests().await, 3);

    // `Vary: *`: shared with no one, in flight or later.
    mock_post(&s.mock, "/__mock/cache", Some(json!({"vary": "*"}))).await;
    let url = format!("{}/v1/tracks/{second}", s.gw.egress_url());
    s.fault(json!({"target": "api", "delay_ms": 2000, "times": 1}))
        .await;
    let leader = tokio::spawn({
        let url = url.clone();
        async move { fetch(&url, None, &[]).await }
    });
    wait_for_calls(&s, 4).await;
    let follower = fetch(&url, None, &[]).await;
    assert_eq!(leader.await.expect("task").status, 200);
    assert_eq!(follower.status, 200);
    assert_eq!(follower.cache_status, "spotify-gateway; fwd=miss");
    let later = fetch(&url, None, &[]).await;
    assert_eq!(later.cache_status, "spotify-gateway; fwd=miss");
    assert_eq!(s.api_requests().await, 6);
}

const PLAYING: &str = "/v1/me/player/currently-playing";

/// Writes `config`, sends SIGHUP and waits until the gateway has logged the reload.
async fn reload(s: &Stack, config: &GatewayConfig) {
    s.gw.write_config(config);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(s.gw.pid(), libc::SIGHUP) };
    s.gw.wait_until(
        Duration::from_secs(5),
        "the reload to be logged",
        || async { s.gw.log().contains("config reloaded") },
    )
    .await;
}

/// alice signs in twice: with the template's scopes (her e-mail, what she is playing), then,
/// after a SIGHUP narrowed `spotify.scopes`, without those two. Her wide and her narrow
/// session's assertions.
async fn alice_wide_and_narrow(s: &Stack) -> (String, String) {
    let wide = browser();
    login(&wide, &s.gw, "alice", "/").await;
    let narrowed = s.gw.config().set(
        "spotify.scopes",
        ["user-read-private", "playlist-read-private"],
    );
    reload(s, &narrowed).await;
    let narrow = browser();
    login(&narrow, &s.gw, "alice", "/").await;
    let scopes = |seen: Value| {
        seen["headers"]["x-spotify-scopes"]
            .as_str()
            .map(str::to_string)
    };
    let (_, seen) = via_public(&narrow, &s.gw, "/app").await;
    assert_eq!(
        scopes(seen).as_deref(),
        Some("user-read-private playlist-read-private")
    );
    (s.assertion(&wide).await, s.assertion(&narrow).await)
}

/// What alice's session gets for `path` when its scopes decide: her e-mail on `/v1/me` only
/// when wide, the player only when wide (401 otherwise, as Spotify says).
fn assert_own_answer(path: &str, wide: bool, got: &Got) {
    if path.starts_with("/v1/me/player") {
        let expected = if wide { 200 } else { 401 };
        assert_eq!(got.status, expected, "wide={wide}: {got:?}");
        assert_eq!(got.body["item"].is_object(), wide, "{got:?}");
    } else {
        assert_eq!(got.status, 200, "{got:?}");
        assert_eq!(got.body["id"], "alice");
        assert_eq!(got.body["email"].is_string(), wide, "wide={wide}: {got:?}");
    }
}

/// A GET on the egress listener as the session `assertion` names.
async fn as_session(s: &Stack, assertion: &str, path: &str) -> Got {
    let url = format!("{}{path}", s.gw.egress_url());
    fetch(&url, None, &[("x-gateway-user", assertion)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_never_gets_an_answer_in_flight_for_other_scopes() {
    // Extended quota: `/v1/me` differs by scope (the e-mail) only there; development mode
    // withholds it from everyone.
    let s = Stack::builder()
        .app(App::Echo)
        .mock_config(|c| c.mode = mock_spotify::AppMode::ExtendedQuota)
        .start()
        .await;
    let (wide, narrow) = alice_wide_and_narrow(&s).await;
    let sessions = [(&wide, true), (&narrow, false)];
    for path in ["/v1/me", PLAYING] {
        for (assertion, is_wide) in sessions {
            assert_own_answer(path, is_wide, &as_session(&s, assertion, path).await);
        }
    }
    // Each leads once with the other following, on each path.
    for (leader, follower) in [(sessions[0], sessions[1]), (sessions[1], sessions[0])] {
        for path in ["/v1/me", PLAYING] {
            let before = s.api_requests().await;
            s.fault(json!({"target": "api", "delay_ms": 2000, "times": 1}))
                .await;
            let leading = tokio::spawn({
                let url = format!("{}{path}", s.gw.egress_url());
                let assertion = leader.0.clone();
                async move { fetch(&url, None, &[("x-gateway-user", &assertion)]).await }
            });
            wait_for_calls(&s, before + 1).await;
            let followed = as_session(&s, follower.0, path).await;
            assert_own_answer(path, leader.1, &leading.await.expect("task"));
            assert_own_answer(path, follower.1, &followed);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_never_gets_a_cached_answer_for_other_scopes() {
    // Extended quota: `/v1/me` differs by scope (the e-mail) only there; development mode
    // withholds it from everyone.
    let s = Stack::builder()
        .app(App::Echo)
        .mock_config(|c| c.mode = mock_spotify::AppMode::ExtendedQuota)
        .start()
        .await;
    let (wide, narrow) = alice_wide_and_narrow(&s).await;
    // The user's answers stay fresh a minute (Spotify's are `max-age=0`, revalidated).
    mock_post(&s.mock, "/__mock/cache", Some(json!({"user_max_age": 60}))).await;
    let sessions = [(&wide, true), (&narrow, false)];
    // Each order on a target of its own (the query string tells them apart).
    for (order, (first, second)) in [(sessions[0], sessions[1]), (sessions[1], sessions[0])]
        .into_iter()
        .enumerate()
    {
        for base in ["/v1/me", PLAYING] {
            let path = format!("{base}?order={order}");
            for (assertion, is_wide) in [first, second, first, second] {
                assert_own_answer(&path, is_wide, &as_session(&s, assertion, &path).await);
            }
        }
    }
    // The cache was used: each session's own answer again, from it.
    let me = as_session(&s, &wide, "/v1/me?order=0").await;
    assert!(me.cache_status.contains("hit"), "{}", me.cache_status);
    assert_own_answer("/v1/me", true, &me);
}

/// The gateway's resident memory now (`VmRSS`), in bytes.
fn resident_memory(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kib * 1024
}

/// `egress.cache_size` by default.
const CACHE_SIZE: u64 = 4 << 20;
/// What else may grow while the calls pass (the allocator's pages for the calls themselves,
/// connection buffers, the log), measured with the cache off: about 0.25 MiB for 30,000
/// small answers, 1 MiB for 600 answers of 200 KB.
const SLACK: u64 = 3 << 19;

/// Sends GETs of `urls` (paths on the egress listener), 8 at a time, with or without
/// `Cache-Control: no-cache` (a call of its own, never stored).
async fn send_all(s: &Stack, urls: impl Iterator<Item = String>, no_cache: bool) {
    let calls = urls.map(|path| {
        let mut req = s.http.get(format!("{}{path}", s.gw.egress_url()));
        if no_cache {
            req = req.header("cache-control", "no-cache");
        }
        async move {
            let resp = req.send().await.expect("egress answers");
            assert_eq!(resp.status(), 200);
            resp.bytes().await.expect("body");
        }
    });
    futures::stream::iter(calls)
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
}

/// Fills the default cache many times over with the answers to `urls(n)` for `n` in
/// `0..count` (all distinct), after `warm_up` calls that store nothing; asserts that the
/// gateway's resident memory grew by at most 1.25 times the cache's size, plus `SLACK`,
/// while the cache, by its own count, is full.
async fn memory_of_a_full_cache(urls: impl Fn(usize) -> String, count: usize, warm_up: usize) {
    let s = Stack::builder().start().await;
    send_all(&s, (0..warm_up).map(&urls), true).await;
    let before = resident_memory(s.gw.pid());
    send_all(&s, (0..count).map(&urls), false).await;
    let after = resident_memory(s.gw.pid());
    let entries = s.metric("spotify_gateway_answer_cache_entries").await;
    let weighed = s.metric("spotify_gateway_answer_cache_bytes").await;
    let growth = after.saturating_sub(before);
    eprintln!(
        "{count} answers: RSS {} KiB -> {} KiB (+{} KiB, {:.2} x the cache's size); the cache \
         holds {entries} answers weighing {} KiB ({:.0} bytes each)",
        before >> 10,
        after >> 10,
        growth >> 10,
        growth as f64 / CACHE_SIZE as f64,
        weighed as u64 >> 10,
        weighed / entries.max(1.0)
    );
    assert!(
        weighed >= 0.9 * CACHE_SIZE as f64 && weighed <= CACHE_SIZE as f64,
        "the cache is full, within its size: {weighed}"
    );
    assert!(
        growth <= CACHE_SIZE * 5 / 4 + SLACK,
        "RSS grew by {growth} bytes for a {CACHE_SIZE}-byte cache"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_cache_of_small_answers_takes_about_its_size_in_memory() {
    // A track is about 1.5 KB of JSON: 30,000 distinct URLs (a query string of their own).
    let track = mock_spotify::generated_track_ids()[0];
    memory_of_a_full_cache(|n| format!("/v1/tracks/{track}?n={n}"), 30_000, 3_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_cache_of_large_answers_takes_about_its_size_in_memory() {
    // A page of 100 playlist items is about 200 KB: 600 distinct pages.
    let id = mock_spotify::LARGE_PLAYLIST_ID;
    let page = |n: usize| {
        format!(
            "/v1/playlists/{id}/items?limit=100&offset={}&n={n}",
            n % 900
        )
    };
    memory_of_a_full_cache(page, 600, 200).await;
}
