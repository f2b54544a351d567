//! The egress listener as a faithful stand-in for api.spotify.com: rate limits, retries,
//! timeouts, paging links (also gzip), bodies and methods, header hygiene, old and new (2026)
//! paths passing untouched, and the rspotify client library. What reached Spotify is read from
//! the mock's request log and stats.
//!
//! Over 700 lines: the stand-in is one feature, and its cases share one setup (a user signed in
//! with every scope the calls need); split, each part would link a test binary of its own.

mod common;

use std::time::Duration;

use common::*;
use rspotify::model::{PlayableId, PlaylistId, SearchResult, SearchType, TrackId};
use rspotify::prelude::*;
use serde_json::{json, Value};

const SCOPES: [&str; 7] = [
    "user-read-private",
    "user-read-email",
    "user-read-currently-playing",
    "playlist-read-private",
    "playlist-modify-public",
    "playlist-modify-private",
    "user-modify-playback-state",
];

/// `stack` with the echo app and the scopes for writes, started; alice logged in. Returns the
/// stack and alice's `X-Gateway-User`, with the mock's counters and log reset after the login.
async fn setup(stack: StackBuilder) -> (Stack, String) {
    let s = stack
        .app(App::Echo)
        .set("spotify.scopes", SCOPES)
        .start()
        .await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    let (_, seen) = via_public(&b, &s.gw, "/app").await;
    let alice = seen["headers"]["x-gateway-user"]
        .as_str()
        .expect("assertion")
        .to_string();
    mock_post(&s.mock, "/__mock/reset", None).await;
    (s, alice)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_is_passed_on_then_answered_locally_until_it_passes() {
    let (s, alice) = setup(Stack::builder()).await;
    s.fault(json!({"target": "api", "status": 429, "retry_after": 1, "times": 1}))
        .await;
    let resp = s.egress_as(&alice, "/v1/me").send().await.expect("call");
    assert_eq!(resp.status(), 429);
    assert_eq!(
        resp.headers()["retry-after"],
        "1",
        "Spotify's Retry-After unchanged"
    );
    assert_eq!(s.api_requests().await, 1);

    let resp = s
        .egress_as(&alice, "/v1/search?q=abba&type=track")
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), 429, "answered locally");
    assert_eq!(resp.headers()["retry-after"], "1");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["status"], 429);
    assert_eq!(
        s.api_requests().await,
        1,
        "nothing sent to Spotify during the cool-down"
    );
    assert_eq!(
        s.metric(
            r#"spotify_gateway_rate_limited_local_total{app="default",reason="rate_limited"}"#
        )
        .await,
        1.0
    );
    assert_eq!(
        s.metric(
            r#"spotify_gateway_spotify_rate_limited_total{app="default",reason="rate_limited"}"#
        )
        .await,
        1.0
    );

    // The cool-down is one second (kept by the gateway's clock): afterwards calls go through
    // again.
    s.gw.advance_clock(Duration::from_millis(1100)).await;
    assert_eq!(
        s.egress_as(&alice, "/v1/me")
            .send()
            .await
            .expect("call")
            .status(),
        200
    );
    assert_eq!(s.api_requests().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_calls_are_retried_and_writes_are_not() {
    let (s, alice) = setup(Stack::builder()).await;
    s.fault(json!({"target": "api", "status": 503, "times": 2}))
        .await;
    let resp = s.egress_as(&alice, "/v1/me").send().await.expect("call");
    assert_eq!(
        resp.status(),
        200,
        "two 503s, then success within max_retries = 2"
    );
    assert_eq!(s.api_requests().await, 3);
    assert_eq!(
        s.metric(r#"spotify_gateway_retries_total{app="default"}"#)
            .await,
        2.0
    );

    // Out of retries: Spotify's last answer is passed on.
    s.fault(json!({"target": "api", "status": 502, "times": 3}))
        .await;
    assert_eq!(
        s.egress_as(&alice, "/v1/me")
            .send()
            .await
            .expect("call")
            .status(),
        502
    );
    assert_eq!(s.api_requests().await, 6);

    // A POST that may have reached Spotify is never sent twice.
    let playlist = alice_playlist(&s, &alice).await;
    let uri = first_track_uri(&s, &alice).await;
    mock_post(&s.mock, "/__mock/reset", None).await;
    s.fault(json!({"target": "api", "status": 503, "times": 1}))
        .await;
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/v1/playlists/{playlist}/items",
            s.gw.egress_url()
        ))
        .header("x-gateway-user", &alice)
        .json(&json!({"uris": [uri]}))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 503);
    assert_eq!(s.api_requests().await, 1, "one POST, not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_failures_are_retried_then_reported() {
    let closed = format!("http://127.0.0.1:{}", free_port());
    let s = Stack::builder()
        .token_lifetime(Duration::from_secs(60))
        .set("spotify.api_url", closed)
        .start()
        .await;
    let resp = reqwest::get(format!("{}/v1/search?q=a&type=track", s.gw.egress_url()))
        .await
        .expect("answer");
    assert_eq!(resp.status(), 502);
    // Spotify could not be reached: the answer says when to try again, as a 503 does.
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("5")
    );
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["status"], 502);
    let metrics = reqwest::get(format!("{}/metrics", s.gw.admin_url()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(r#"spotify_gateway_retries_total{app="default"} 2"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_times_out_gets_504() {
    let (s, alice) = setup(
        Stack::builder()
            .set("egress.read_timeout", "300ms")
            .set("egress.max_retries", 0),
    )
    .await;
    s.fault(json!({"target": "api", "delay_ms": 2000, "times": 1}))
        .await;
    let resp = s.egress_as(&alice, "/v1/me").send().await.expect("call");
    assert_eq!(resp.status(), 504);
    // The connection closes after a failed proxy, and the answer says so: a client must not
    // send its next call on it.
    assert_eq!(resp.headers()["connection"], "close");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["status"], 504);
    // The next call, on a new connection, works.
    let resp = s.egress_as(&alice, "/v1/me").send().await.expect("call");
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_links_lead_back_through_the_gateway_also_when_gzipped() {
    let (s, alice) = setup(Stack::builder()).await;
    let base = format!("{}/v1/", s.gw.egress_url());
    for gzip in [false, true] {
        let mut req = s.egress_as(&alice, "/v1/search?q=abba&type=track&limit=10");
        if gzip {
            req = req.header("accept-encoding", "gzip");
        }
        let resp = req.send().await.expect("search");
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers().get("content-encoding").is_none(),
            "sent decoded"
        );
        let page: Value = resp.json().await.expect("json");
        let next = page["tracks"]["next"].as_str().expect("next");
        assert!(next.starts_with(&base), "{next}");
        assert!(page["tracks"]["href"]
            .as_str()
            .unwrap_or("")
            .starts_with(&base));
        assert!(
            !page.to_string().contains(&s.mock.base_url()),
            "no link left to Spotify"
        );
        if gzip {
            let seen = s.last_api_request().await;
            assert_eq!(
                seen["headers"]["accept-encoding"], "gzip",
                "Spotify may compress"
            );
        }
        // Following `next` stays on the gateway and gives page two.
        let second: Value = reqwest::Client::new()
            .get(next)
            .header("x-gateway-user", &alice)
            .send()
            .await
            .expect("next")
            .json()
            .await
            .expect("json");
        assert_eq!(second["tracks"]["offset"], 10);
        assert!(second["tracks"]["previous"]
            .as_str()
            .unwrap_or("")
            .starts_with(&base));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_listing_streams_with_every_link_rewritten() {
    let (s, alice) = setup(Stack::builder()).await;
    let playlists: Value = s
        .egress_as(&alice, "/v1/me/playlists?limit=50")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let big = playlists["items"]
        .as_array()
        .expect("items")
        .iter()
        .max_by_key(|p| p["items"]["total"].as_u64().unwrap_or(0))
        .expect("a playlist")
        .clone();
    assert!(big["items"]["total"].as_u64().unwrap_or(0) >= 1000, "{big}");
    let id = big["id"].as_str().expect("id");
    for gzip in [false, true] {
        let mut req = s.egress_as(
            &alice,
            &format!("/v1/playlists/{id}/items?limit=100&offset=0"),
        );
        if gzip {
            req = req.header("accept-encoding", "gzip");
        }
        let resp = req.send().await.expect("tracks");
        assert_eq!(resp.status(), 200);
        let length = content_length(&resp);
        let text = resp.text().await.expect("body");
        assert!(text.len() > 100_000, "{} bytes", text.len());
        if gzip {
            // Decompressed on the way: the length is known only at the end.
            assert_eq!(length, None, "a decompressed body is chunked");
        } else {
            // The egress base is as long as the mock's: rewritten in place, length kept.
            assert_eq!(
                length,
                Some(text.len()),
                "Content-Length is the body's length"
            );
        }
        assert!(
            !text.contains(&s.mock.base_url()),
            "a link still points at Spotify"
        );
        let page: Value = serde_json::from_str(&text).expect("valid JSON after rewriting");
        assert_eq!(page["items"].as_array().map(Vec::len), Some(100));
    }
}

fn content_length(resp: &reqwest::Response) -> Option<usize> {
    resp.headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The first page of alice's largest playlist (over 100 KB, full of links) via the egress.
async fn large_page(s: &Stack, alice: &str) -> reqwest::Response {
    let id = mock_spotify::LARGE_PLAYLIST_ID;
    let resp = s
        .egress_as(
            alice,
            &format!("/v1/playlists/{id}/items?limit=100&offset=0"),
        )
        .send()
        .await
        .expect("tracks");
    assert_eq!(resp.status(), 200);
    resp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_to_a_shorter_base_keep_the_length_and_to_a_longer_one_go_chunked() {
    for (base, keeps_length) in [
        ("http://gw:8081", true),
        (
            "http://spotify-gateway.team-a.svc.cluster.local:8081",
            false,
        ),
    ] {
        let (s, alice) = setup(Stack::builder().set("egress.public_base_url", base)).await;
        let resp = large_page(&s, &alice).await;
        let length = content_length(&resp);
        let chunked = resp
            .headers()
            .get("transfer-encoding")
            .is_some_and(|v| v == "chunked");
        let text = resp.text().await.expect("body");
        let page: Value = serde_json::from_str(&text).expect("valid JSON after rewriting");
        assert!(
            !text.contains(&s.mock.base_url()),
            "a link still points at Spotify"
        );
        let next = page["next"].as_str().expect("a next link");
        assert!(next.starts_with(&format!("{base}/v1/")), "{next}");
        let first_track = page["items"][0]["item"]["href"].as_str().expect("href");
        assert!(
            first_track.starts_with(&format!("{base}/v1/tracks/")),
            "{first_track}"
        );
        if keeps_length {
            assert_eq!(length, Some(text.len()), "{base}: length kept");
            assert!(!chunked, "{base}");
            // Each shortened link is made up for with spaces after its string.
            let pad = " ".repeat(s.mock.base_url().len() - base.len());
            assert!(text.contains(&format!("\"{pad},")), "{base}");
        } else {
            assert_eq!(length, None, "{base}: the body grew, its length is unknown");
            assert!(chunked, "{base}");
        }
    }
}

async fn alice_playlist(s: &Stack, alice: &str) -> String {
    let playlists: Value = s
        .egress_as(alice, "/v1/me/playlists")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    playlists["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|p| p["owner"]["id"] == "alice")
        .and_then(|p| p["id"].as_str())
        .expect("alice owns a playlist")
        .to_string()
}

async fn first_track_uri(s: &Stack, alice: &str) -> String {
    let found: Value = s
        .egress_as(alice, "/v1/search?q=queen&type=track&limit=1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    found["tracks"]["items"][0]["uri"]
        .as_str()
        .expect("uri")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_pass_intact_with_content_length_or_chunked() {
    let (s, alice) = setup(Stack::builder()).await;
    let playlist = alice_playlist(&s, &alice).await;
    let uri = first_track_uri(&s, &alice).await;
    let body = json!({"uris": [uri], "position": 0}).to_string();
    let url = format!("{}/v1/playlists/{playlist}/items", s.gw.egress_url());

    let resp = reqwest::Client::new()
        .post(&url)
        .header("x-gateway-user", &alice)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 201);
    let seen = s.last_api_request().await;
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["body"], body.as_str());

    // The same body, chunked.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.as_bytes().chunks(7).map(|c| Ok(c.to_vec())).collect();
    let resp = reqwest::Client::new()
        .post(&url)
        .header("x-gateway-user", &alice)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .expect("post chunked");
    assert_eq!(resp.status(), 201);
    let seen = s.last_api_request().await;
    assert_eq!(seen["body"], body.as_str());

    // PUT with 204 and no body.
    let resp = reqwest::Client::new()
        .put(format!("{}/v1/me/player/play", s.gw.egress_url()))
        .header("x-gateway-user", &alice)
        .json(&json!({"uris": [uri]}))
        .send()
        .await
        .expect("play");
    assert_eq!(resp.status(), 204);
    assert!(resp.bytes().await.expect("body").is_empty());
    let playing: Value = s
        .egress_as(&alice, "/v1/me/player/currently-playing")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(playing["item"]["uri"], uri.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_and_client_credentials_never_reach_spotify() {
    let (s, alice) = setup(Stack::builder()).await;
    let resp = s
        .egress_as(&alice, "/v1/me")
        .header("authorization", "Bearer clients-own")
        .header("cookie", "a=b")
        .header("proxy-authorization", "Basic eA==")
        .header("connection", "keep-alive, x-secret-hop")
        .header("x-secret-hop", "1")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("x-spotify-user-id", "bob")
        .header("x-request-id", "req-123")
        .send()
        .await
        .expect("call");
    // An X-Spotify-User-Id beside a valid assertion: the assertion decides.
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "req-123");
    let me: Value = resp.json().await.expect("json");
    assert_eq!(me["id"], "alice");
    let seen = s.last_api_request().await;
    let headers = seen["headers"].as_object().expect("headers");
    for gone in [
        "cookie",
        "proxy-authorization",
        "x-secret-hop",
        "keep-alive",
        "te",
        "x-spotify-user-id",
        "x-gateway-user",
    ] {
        assert!(
            !headers.contains_key(gone),
            "{gone} reached Spotify: {seen}"
        );
    }
    assert_ne!(seen["headers"]["authorization"], "Bearer clients-own");
    assert_eq!(seen["headers"]["x-request-id"], "req-123");
    let mock_host = s.mock.base_url().trim_start_matches("http://").to_string();
    assert_eq!(seen["headers"]["host"], mock_host);

    // Without a request id the gateway makes one and returns it.
    let resp = s.egress_as(&alice, "/v1/me").send().await.expect("call");
    let id = resp.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_string();
    assert_eq!(id.len(), 32);
    assert_eq!(
        s.last_api_request().await["headers"]["x-request-id"],
        id.as_str()
    );
}

/// rspotify, pointed at the egress listener with `api_base_url` and holding no Spotify
/// token: its "token" is the gateway's assertion for Alice, which the gateway swaps for her
/// real token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rspotify_works_through_the_gateway() {
    // rspotify 0.15's models require the fields Spotify withholds from development-mode apps
    // (a track's `popularity`): it parses an extended-quota app's answers only.
    let (s, alice) =
        setup(Stack::builder().mock_config(|c| c.mode = mock_spotify::AppMode::ExtendedQuota))
            .await;
    let config = rspotify::Config {
        api_base_url: format!("{}/v1/", s.gw.egress_url()),
        token_refreshing: false,
        pagination_chunks: 2,
        ..Default::default()
    };
    let token = rspotify::Token {
        access_token: alice.clone(),
        expires_at: Some(chrono::Utc::now() + chrono::Duration::minutes(5)),
        ..Default::default()
    };
    let spotify = rspotify::AuthCodeSpotify::from_token_with_config(
        token,
        rspotify::Credentials::default(),
        rspotify::OAuth::default(),
        config,
    );

    let me = spotify.current_user().await.expect("current_user");
    assert_eq!(me.id.id(), "alice");
    assert_eq!(me.display_name.as_deref(), Some("Alice Andersson"));

    let result = spotify
        .search("abba", SearchType::Track, None, None, Some(20), None)
        .await
        .expect("search");
    let SearchResult::Tracks(page) = result else {
        panic!("expected tracks");
    };
    assert_eq!(page.items.len(), 20);
    let next = page.next.expect("a next page");
    assert!(next.starts_with(&s.gw.egress_url()), "{next}");
    // Follow the pages as offsets, as rspotify does, to the end.
    let mut offset = 20;
    let mut seen = page.items.len();
    while offset < page.total {
        let SearchResult::Tracks(more) = spotify
            .search(
                "abba",
                SearchType::Track,
                None,
                None,
                Some(20),
                Some(offset),
            )
            .await
            .expect("next page")
        else {
            panic!("expected tracks");
        };
        seen += more.items.len();
        offset += 20;
    }
    assert_eq!(seen as u32, page.total);

    use futures::TryStreamExt;
    let playlists: Vec<_> = spotify
        .current_user_playlists()
        .try_collect()
        .await
        .expect("playlists, two per page");
    assert!(playlists.len() >= 3, "{}", playlists.len());
    let mine = playlists
        .iter()
        .find(|p| p.owner.id.id() == "alice")
        .expect("alice owns a playlist");

    let track_uri = first_track_uri(&s, &alice).await;
    let track = TrackId::from_uri(&track_uri).expect("track id");
    let playlist = PlaylistId::from_id(mine.id.id()).expect("playlist id");
    // rspotify 0.15 knows only the pre-2026 `/tracks` paths, which a development-mode app
    // is refused (Spotify's 403 and its body pass through the gateway); its generic call
    // reaches `/items`, as Spotify's February 2026 changelog has it.
    mock_post(&s.mock, "/__mock/app", Some(json!({"mode": "development"}))).await;
    let old = spotify
        .playlist_add_items(playlist.clone(), [PlayableId::Track(track)], None)
        .await
        .expect_err("the old path is refused");
    let rspotify::ClientError::Http(http) = old else {
        panic!("expected Spotify's status: {old:?}");
    };
    let rspotify::http::HttpError::StatusCode(resp) = *http else {
        panic!("expected Spotify's status");
    };
    assert_eq!(resp.status(), 403);
    let added: Value = serde_json::from_str(
        &spotify
            .api_post(
                &format!("playlists/{}/items", playlist.id()),
                &json!({ "uris": [track_uri] }),
            )
            .await
            .expect("add a track at /items"),
    )
    .expect("json");
    assert!(!added["snapshot_id"].as_str().unwrap_or("").is_empty());
    let items: Value = serde_json::from_str(
        &spotify
            .api_get(
                &format!("playlists/{}/items", playlist.id()),
                &std::collections::HashMap::from([("limit", "50")]),
            )
            .await
            .expect("items"),
    )
    .expect("json");
    assert!(items["items"]
        .as_array()
        .expect("items")
        .iter()
        .any(|i| i["item"]["uri"] == track_uri.as_str()));
    let seen = s.last_api_request().await;
    assert_eq!(seen["method"], "GET");
    assert!(seen["path"].as_str().unwrap_or("").contains("/items"));
    let seen = mock_requests(&s.mock)
        .await
        .into_iter()
        .rev()
        .find(|r| r["method"] == "POST")
        .expect("the POST reached the mock");
    assert!(seen["body"].as_str().unwrap_or("").contains(&track_uri));
    assert_ne!(
        seen["headers"]["authorization"],
        format!("Bearer {}", alice).as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_modified_passes_as_it_is() {
    let (s, alice) = setup(Stack::builder()).await;
    let first = s
        .egress_as(&alice, "/v1/me/playlists")
        .send()
        .await
        .expect("first");
    assert_eq!(first.status(), 200);
    let etag = first.headers()["etag"].to_str().expect("etag").to_string();
    let again = s
        .egress_as(&alice, "/v1/me/playlists")
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("conditional");
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag.as_str());
    assert!(again.headers().get("transfer-encoding").is_none());
    assert!(again.bytes().await.expect("body").is_empty());
    let seen = s.last_api_request().await;
    assert_eq!(
        seen["headers"]["if-none-match"],
        etag.as_str(),
        "passed on to Spotify"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_and_new_paths_pass_the_egress_untouched() {
    let s = Stack::builder()
        .app(App::Echo)
        .edit(|doc| {
            let scopes = doc["spotify"]["scopes"].as_array_mut().expect("scopes");
            scopes.push("user-library-modify");
            scopes.push("user-library-read");
        })
        .start()
        .await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    let alice = s.assertion(&b).await;
    let mine: Value = s
        .egress_get_as(&alice, "/v1/me/playlists")
        .await
        .json()
        .await
        .expect("json");
    let id = mine["items"][0]["id"].as_str().expect("id").to_string();
    let s = &s;
    let sent_path = |path: String| async move { s.last_api_request().await["path"] == path };

    let items = format!("/v1/playlists/{id}/items?limit=2&offset=1");
    let resp = s.egress_get_as(&alice, &items).await;
    assert_eq!(resp.status(), 200);
    let page: Value = resp.json().await.expect("json");
    assert!(page["items"][0]["item"]["uri"].is_string(), "{page}");
    assert!(sent_path(items).await, "the path reached Spotify as sent");

    // Development mode: Spotify's 403 for the old path passes through with its body.
    let tracks = format!("/v1/playlists/{id}/tracks?limit=2");
    let resp = s.egress_get_as(&alice, &tracks).await;
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["status"], 403);
    assert!(sent_path(tracks.clone()).await);
    // An extended-quota app still gets the old path, as it was.
    mock_post(
        &s.mock,
        "/__mock/app",
        Some(json!({"mode": "extended_quota"})),
    )
    .await;
    let resp = s.egress_get_as(&alice, &tracks).await;
    assert_eq!(resp.status(), 200);
    let page: Value = resp.json().await.expect("json");
    assert!(page["items"][0]["track"]["uri"].is_string(), "{page}");
    assert!(sent_path(tracks).await);

    // The library, by URI.
    let uri = page["items"][0]["track"]["uri"]
        .as_str()
        .expect("uri")
        .to_string();
    let resp = reqwest::Client::new()
        .put(format!("{}/v1/me/library", s.gw.egress_url()))
        .header("x-gateway-user", &alice)
        .json(&json!({ "uris": [uri] }))
        .send()
        .await
        .expect("put");
    assert_eq!(resp.status(), 200);
    let seen = s.last_api_request().await;
    assert_eq!(
        (seen["method"].as_str(), seen["path"].as_str()),
        (Some("PUT"), Some("/v1/me/library"))
    );
    let contains = format!("/v1/me/library/contains?uris={uri}");
    let saved: Value = s
        .egress_get_as(&alice, &contains)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(saved, json!([true]));
}
