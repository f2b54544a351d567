//! The `/__mock/*` controls: expire and revoke, faults (with `Retry-After`, counts, path
//! prefixes, the gzip bomb and the long body), stats, the request log and reset, and dropping
//! the server.
//!
//! Drives a real MockSpotify over HTTP, the way the gateway and external scripts do.

mod common;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use mock_spotify::MockSpotify;

use common::{
    api, api_error, app_token, client, gunzip, header, oauth_error, raw_client, s, start, token,
    user_token, DEMO,
};

/// An app token and alice's access token.
async fn app_and_alice(m: &MockSpotify) -> (String, String) {
    let alice = user_token(m, "alice", "").await;
    (app_token(m).await, s(&alice["access_token"]).to_string())
}

/// `POST /__mock/fault` with `body`.
async fn fault(m: &MockSpotify, body: Value) -> reqwest::Response {
    let url = format!("{}/__mock/fault", m.base_url());
    client().post(url).json(&body).send().await.expect("fault")
}

#[tokio::test]
async fn expire_and_revoke_controls() {
    let m = start().await;
    let c = client();
    let alice = user_token(&m, "alice", "").await;
    let bob = user_token(&m, "bob", "").await;
    let resp = c
        .post(format!("{}/__mock/expire?user=alice", m.base_url()))
        .send()
        .await
        .expect("expire");
    assert_eq!(resp.status(), StatusCode::OK);
    let (status, _, body) = api(&m, "/v1/me", Some(s(&alice["access_token"]))).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::UNAUTHORIZED,
            api_error(401, "The access token expired")
        )
    );
    assert_eq!(
        api(&m, "/v1/me", Some(s(&bob["access_token"]))).await.0,
        StatusCode::OK
    );
    // The refresh token still works after a mere expiry.
    let refresh = s(&alice["refresh_token"]).to_string();
    let (status, fresh) = token(
        &m,
        DEMO,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        api(&m, "/v1/me", Some(s(&fresh["access_token"]))).await.0,
        StatusCode::OK
    );

    let resp = c
        .post(format!("{}/__mock/revoke?user=alice", m.base_url()))
        .send()
        .await
        .expect("revoke");
    assert_eq!(resp.status(), StatusCode::OK);
    let revoked = token(
        &m,
        DEMO,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(
        revoked,
        (
            StatusCode::BAD_REQUEST,
            oauth_error("invalid_grant", "Refresh token revoked")
        )
    );
    assert_eq!(
        api(&m, "/v1/me", Some(s(&fresh["access_token"]))).await.0,
        StatusCode::UNAUTHORIZED
    );

    let resp = c
        .post(format!("{}/__mock/expire?user=mallory", m.base_url()))
        .send()
        .await
        .expect("expire");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(resp.json::<Value>().await.is_ok());
}

#[tokio::test]
async fn faults_with_retry_after_and_times() {
    let m = start().await;
    let c = client();
    let (_, app) = token(&m, DEMO, &[("grant_type", "client_credentials")]).await;
    let t = s(&app["access_token"]).to_string();

    let resp = fault(
        &m,
        json!({"target": "api", "status": 429, "retry_after": 5, "times": 2}),
    )
    .await;
    assert!(resp.status().is_success());
    for _ in 0..2 {
        let (status, headers, body) = api(&m, "/v1/search?q=abba&type=track", Some(&t)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            headers.get("retry-after").and_then(|v| v.to_str().ok()),
            Some("5")
        );
        assert_eq!(body, api_error(429, "API rate limit exceeded"));
    }
    assert_eq!(
        api(&m, "/v1/search?q=abba&type=track", Some(&t)).await.0,
        StatusCode::OK
    );

    fault(&m, json!({"target": "token", "status": 503})).await;
    let (status, body) = token(&m, DEMO, &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, oauth_error("server_error", "Service unavailable"));
    assert_eq!(
        token(&m, DEMO, &[("grant_type", "client_credentials")])
            .await
            .0,
        StatusCode::OK
    );

    // Delay only: served normally, late.
    fault(&m, json!({"target": "api", "delay_ms": 300})).await;
    let started = Instant::now();
    assert_eq!(
        api(&m, "/v1/search?q=abba&type=track", Some(&t)).await.0,
        StatusCode::OK
    );
    assert!(started.elapsed() >= Duration::from_millis(300));

    // A newer fault replaces the older one.
    fault(&m, json!({"target": "api", "status": 500, "times": 5})).await;
    fault(&m, json!({"target": "api", "status": 502, "times": 1})).await;
    assert_eq!(api(&m, "/v1/me", Some(&t)).await.0, StatusCode::BAD_GATEWAY);
    assert_eq!(
        api(&m, "/v1/search?q=abba&type=track", Some(&t)).await.0,
        StatusCode::OK
    );

    let resp = fault(&m, json!({"target": "nowhere", "status": 503})).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(s(&resp.json::<Value>().await.expect("json")["error"]).contains("target"));
    let resp = c
        .post(format!("{}/__mock/fault", m.base_url()))
        .body("{not json")
        .send()
        .await
        .expect("fault");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn stats_request_log_and_reset() {
    let m = start().await;
    let c = client();
    let stats = || {
        let c = c.clone();
        let url = format!("{}/__mock/stats", m.base_url());
        async move {
            c.get(url)
                .send()
                .await
                .expect("stats")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    let (_, app) = token(&m, DEMO, &[("grant_type", "client_credentials")]).await;
    token(
        &m,
        Some(("demo-client-id", "wrong")),
        &[("grant_type", "client_credentials")],
    )
    .await;
    let alice = user_token(&m, "alice", "").await;
    token(
        &m,
        DEMO,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", s(&alice["refresh_token"])),
        ],
    )
    .await;
    token(&m, DEMO, &[("grant_type", "password")]).await;
    api(&m, "/v1/me", Some(s(&alice["access_token"]))).await;
    api(&m, "/v1/unknown", None).await;
    let resp = c
        .put(format!("{}/v1/me/player/play", m.base_url()))
        .bearer_auth(s(&app["access_token"]))
        .body("{\"uris\":[]}")
        .send()
        .await
        .expect("put");
    // A player command needs a user, not an app token.
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let mut got = stats().await;
    let wire = got
        .as_object_mut()
        .and_then(|o| o.remove("connections"))
        .expect("connection counters");
    let quota = got
        .as_object_mut()
        .and_then(|o| o.remove("quota"))
        .expect("quota counters (tests/quota.rs)");
    assert_eq!(quota["seen"], 3, "{quota}");
    let by_client = got
        .as_object_mut()
        .and_then(|o| o.remove("quota_by_client"))
        .expect("each client's window");
    assert_eq!(by_client["demo-client-id"]["seen"], 3, "{by_client}");
    assert_eq!(
        got,
        json!({
            "token_requests": {"client_credentials": 2, "authorization_code": 1, "refresh_token": 1},
            "api_requests": 3,
        })
    );
    // Every request to Spotify's endpoints so far came over plain HTTP/1.1; controls such
    // as this one are not counted.
    // 2 client-credentials, the login (authorize, code exchange), refresh, password, 3 API.
    assert_eq!(wire["requests_by_version"]["HTTP/1.1"], 9, "{wire}");
    assert_eq!(wire["requests_by_version"]["HTTP/2.0"], 0);
    assert_eq!(wire["tls_handshakes"], 0);

    let log: Value = c
        .get(format!("{}/__mock/requests", m.base_url()))
        .send()
        .await
        .expect("log")
        .json()
        .await
        .expect("json");
    let log = log.as_array().expect("array");
    assert_eq!(log.len(), 8);
    assert_eq!(log[0]["target"], "token");
    assert_eq!(log[0]["method"], "POST");
    assert_eq!(log[0]["path"], "/api/token");
    assert!(s(&log[0]["headers"]["authorization"]).starts_with("Basic "));
    // Token request bodies are logged as sent, refresh tokens included.
    assert_eq!(log[0]["body"], "grant_type=client_credentials");
    assert_eq!(log[0]["body_bytes"], "grant_type=client_credentials".len());
    let refresh = s(&log[3]["body"]);
    assert!(refresh.contains("grant_type=refresh_token"), "{refresh}");
    assert!(
        refresh.contains(
            &form_urlencoded::byte_serialize(s(&alice["refresh_token"]).as_bytes())
                .collect::<String>()
        ),
        "{refresh}"
    );
    let me = &log[5];
    assert_eq!(me["target"], "api");
    assert_eq!(me["path"], "/v1/me");
    assert_eq!(
        me["headers"]["authorization"],
        format!("Bearer {}", s(&alice["access_token"]))
    );
    assert_eq!(me["body"], Value::Null);
    assert_eq!(me["body_bytes"], 0);
    assert_eq!(log[7]["method"], "PUT");
    assert_eq!(log[7]["body"], "{\"uris\":[]}");

    let resp = c
        .post(format!("{}/__mock/reset", m.base_url()))
        .send()
        .await
        .expect("reset");
    assert!(resp.status().is_success());
    assert_eq!(
        stats().await,
        json!({
            "token_requests": {"client_credentials": 0, "authorization_code": 0, "refresh_token": 0},
            "api_requests": 0,
            "connections": {
                "tls_handshakes": 0,
                "tls_handshakes_h2": 0,
                "tls_resumed": 0,
                "requests_by_version": {"HTTP/1.1": 0, "HTTP/2.0": 0},
            },
            "quota": {
                "budget_per_30s": null,
                "in_window": 0,
                "quota_exceeded_on": false,
                "seen": 0,
                "allowed": 0,
                "refused": {"rate_limited": 0, "quota_exceeded": 0},
            },
            "quota_by_client": {"demo-client-id": {
                "budget_per_30s": null,
                "in_window": 0,
                "quota_exceeded_on": false,
                "seen": 0,
                "allowed": 0,
                "refused": {"rate_limited": 0, "quota_exceeded": 0},
            }},
        })
    );
    let log: Value = c
        .get(format!("{}/__mock/requests", m.base_url()))
        .send()
        .await
        .expect("log")
        .json()
        .await
        .expect("json");
    assert_eq!(log, json!([]));
    // Tokens survive a reset.
    assert_eq!(
        api(&m, "/v1/me", Some(s(&alice["access_token"]))).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn drop_stops_serving() {
    let m = start().await;
    let url = format!("{}/__mock/stats", m.base_url());
    let c = client();
    assert!(c.get(&url).send().await.is_ok());
    drop(m);
    let mut stopped = false;
    for _ in 0..50 {
        // A fresh client, so no pooled keep-alive connection hides the shutdown.
        if client().get(&url).send().await.is_err() {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stopped);
}

#[tokio::test]
async fn faults_by_path_prefix() {
    let m = start().await;
    let (t, a) = app_and_alice(&m).await;

    let resp = fault(
        &m,
        json!({"target": "api", "status": 503, "times": 2, "path_prefix": "/v1/search"}),
    )
    .await;
    assert!(resp.status().is_success());
    // Other paths neither fail nor use up the fault.
    assert_eq!(api(&m, "/v1/me", Some(&a)).await.0, StatusCode::OK);
    for _ in 0..2 {
        let (status, _, body) = api(&m, "/v1/search?q=abba&type=track", Some(&t)).await;
        assert_eq!(
            (status, body),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                api_error(503, "Service Unavailable")
            )
        );
        assert_eq!(api(&m, "/v1/me", Some(&a)).await.0, StatusCode::OK);
    }
    assert_eq!(
        api(&m, "/v1/search?q=abba&type=track", Some(&t)).await.0,
        StatusCode::OK
    );

    for (status, code) in [
        (502, StatusCode::BAD_GATEWAY),
        (504, StatusCode::GATEWAY_TIMEOUT),
    ] {
        fault(
            &m,
            json!({"target": "api", "status": status, "path_prefix": "/v1/me"}),
        )
        .await;
        assert_eq!(
            api(&m, "/v1/search?q=abba&type=track", Some(&t)).await.0,
            StatusCode::OK
        );
        assert_eq!(api(&m, "/v1/me/playlists", Some(&a)).await.0, code);
        assert_eq!(api(&m, "/v1/me", Some(&a)).await.0, StatusCode::OK);
    }

    // A pure delay on one prefix: that path is served late but served.
    fault(
        &m,
        json!({"target": "api", "delay_ms": 300, "times": 1, "path_prefix": "/v1/search"}),
    )
    .await;
    let started = Instant::now();
    assert_eq!(api(&m, "/v1/me", Some(&a)).await.0, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(
        api(&m, "/v1/search?q=abba&type=track", Some(&t)).await.0,
        StatusCode::OK
    );
    assert!(started.elapsed() >= Duration::from_millis(300));

    // Token faults take a prefix too.
    fault(
        &m,
        json!({"target": "token", "status": 503, "path_prefix": "/api/token"}),
    )
    .await;
    assert_eq!(
        token(&m, DEMO, &[("grant_type", "client_credentials")])
            .await
            .0,
        StatusCode::SERVICE_UNAVAILABLE
    );

    for bad in [
        json!({"target": "api", "status": 503, "path_prefix": "v1/search"}),
        json!({"target": "api", "status": 503, "path": "/v1/search"}),
        json!({"target": "api", "status": 503, "path_prefix": 5}),
    ] {
        let resp = fault(&m, bad.clone()).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert!(resp.json::<Value>().await.expect("json")["error"].is_string());
    }
}

#[tokio::test]
async fn gzip_bomb_fault() {
    use std::io::Read as _;

    let m = start().await;
    let (t, a) = app_and_alice(&m).await;
    let search = || {
        raw_client()
            .get(format!("{}/v1/search?q=abba&type=track", m.base_url()))
            .bearer_auth(&t)
            .header("accept-encoding", "gzip")
            .send()
    };

    const SIZE: u64 = 64 << 20;
    let resp = fault(
        &m,
        json!({
            "target": "api",
            "gzip_bomb": {"inflated_bytes": SIZE},
            "path_prefix": "/v1/search",
        }),
    )
    .await;
    assert!(resp.status().is_success());
    // Other paths neither get the bomb nor use it up.
    assert_eq!(api(&m, "/v1/me", Some(&a)).await.0, StatusCode::OK);
    let resp = search().await.expect("search");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        header(resp.headers(), "content-type").is_some_and(|v| v.starts_with("application/json"))
    );
    assert_eq!(header(resp.headers(), "content-encoding"), Some("gzip"));
    let gz = resp.bytes().await.expect("body");
    assert!(
        gz.len() < (SIZE / 500) as usize,
        "{} bytes compressed",
        gz.len()
    );
    let mut inflated = flate2::read::GzDecoder::new(&gz[..]);
    let mut head = [0u8; 12];
    inflated.read_exact(&mut head).expect("gzip");
    assert_eq!(&head, br#"{"padding":""#);
    let rest = std::io::copy(&mut inflated, &mut std::io::sink()).expect("valid gzip");
    assert_eq!(head.len() as u64 + rest, SIZE);
    // One shot (times defaults to 1): the next search is Spotify's again.
    let resp = search().await.expect("search");
    assert_eq!(resp.status(), StatusCode::OK);
    let page: Value =
        serde_json::from_slice(&gunzip(&resp.bytes().await.expect("body"))).expect("JSON");
    assert!(page["tracks"]["items"].is_array());

    // A small bomb is valid JSON once inflated; noise comes first and compresses badly.
    let bomb = json!({"inflated_bytes": 300_000, "noise_bytes": 100_000});
    fault(&m, json!({"target": "api", "gzip_bomb": bomb})).await;
    let resp = search().await.expect("search");
    let gz = resp.bytes().await.expect("body");
    assert!(gz.len() > 40_000, "{} bytes compressed", gz.len());
    let body = gunzip(&gz);
    assert_eq!(body.len(), 300_000);
    let json: Value = serde_json::from_slice(&body).expect("JSON");
    let padding = s(&json["padding"]);
    assert_eq!(padding.len(), 300_000 - 14);
    assert!(padding[..100_000].bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(padding[100_000..].bytes().all(|b| b == b'a'));

    for bad in [
        json!({"target": "token", "gzip_bomb": {"inflated_bytes": 1000}}),
        json!({"target": "api", "status": 503, "gzip_bomb": {"inflated_bytes": 1000}}),
        json!({"target": "api", "gzip_bomb": {"inflated_bytes": 13}}),
        json!({"target": "api", "gzip_bomb": {"inflated_bytes": (16u64 << 30) + 1}}),
        json!({"target": "api", "gzip_bomb": {"bytes": 1000}}),
        json!({"target": "api", "gzip_bomb": {"inflated_bytes": 100, "noise_bytes": 87}}),
    ] {
        let resp = fault(&m, bad.clone()).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert!(resp.json::<Value>().await.expect("json")["error"].is_string());
    }
}

#[tokio::test]
async fn long_body_fault() {
    let m = start().await;
    let (_, a) = app_and_alice(&m).await;

    // A token answer of exactly the length asked for, streamed.
    fault(
        &m,
        json!({"target": "token", "long_body": {"bytes": 200_000}}),
    )
    .await;
    let resp = client()
        .post(format!("{}/api/token", m.base_url()))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        header(resp.headers(), "content-type").is_some_and(|v| v.starts_with("application/json"))
    );
    let body = resp.bytes().await.expect("body");
    assert_eq!(body.len(), 200_000);
    assert!(body.starts_with(br#"{"access_token":"aaa"#));

    // One without end, on the Web API: neither entity-tagged nor gzipped (both would have to
    // hold it whole), and read here until well past any real answer.
    fault(
        &m,
        json!({"target": "api", "long_body": {}, "path_prefix": "/v1/me"}),
    )
    .await;
    let mut resp = raw_client()
        .get(format!("{}/v1/me", m.base_url()))
        .bearer_auth(&a)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("me");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(resp.headers(), "content-encoding"), None);
    assert_eq!(header(resp.headers(), "etag"), None);
    let mut read = 0;
    while read < 8 << 20 {
        read += resp.chunk().await.expect("chunk").expect("no end").len();
    }
    drop(resp);
    // One shot: the next read is Spotify's again.
    assert_eq!(api(&m, "/v1/me", Some(&a)).await.0, StatusCode::OK);

    for bad in [
        json!({"target": "token", "status": 503, "long_body": {}}),
        json!({"target": "api", "long_body": {}, "gzip_bomb": {"inflated_bytes": 1000}}),
        json!({"target": "token", "long_body": {"bytes": 3}}),
        json!({"target": "token", "long_body": {"length": 1000}}),
    ] {
        let resp = fault(&m, bad.clone()).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
}
