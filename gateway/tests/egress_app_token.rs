//! The egress listener with the app's client-credentials token: the real gateway process and
//! the mock Spotify on loopback.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// The mock and a gateway (no app behind it) with tokens that live `token_lifetime`.
async fn setup(token_lifetime: Duration) -> Stack {
    Stack::builder()
        .token_lifetime(token_lifetime)
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injects_the_app_token_and_returns_spotifys_answer_unchanged() {
    let s = setup(Duration::from_secs(3600)).await;
    let path = "/v1/search?q=abba&type=track&limit=5";
    let resp = s
        .http
        .get(format!("{}{path}", s.gw.egress_url()))
        .header("authorization", "Bearer the-clients-own-token")
        .header("cookie", "session=should-not-travel")
        .header("x-spotify-scopes", "everything")
        .header("x-spotify-market", "SE")
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    let via_gateway: Value = resp.json().await.expect("json");

    let requests = mock_requests(&s.mock).await;
    let seen = requests
        .iter()
        .rev()
        .find(|r| r["target"] == "api")
        .expect("the call reached Spotify");
    let auth = seen["headers"]["authorization"]
        .as_str()
        .expect("authorization");
    assert!(auth.starts_with("Bearer "), "{auth}");
    assert_ne!(auth, "Bearer the-clients-own-token");
    assert!(seen["headers"].get("cookie").is_none(), "{seen}");
    assert!(seen["headers"].get("x-spotify-scopes").is_none(), "{seen}");
    assert!(seen["headers"].get("x-spotify-market").is_none(), "{seen}");
    let mock_host = s.mock.base_url().trim_start_matches("http://").to_string();
    assert_eq!(seen["headers"]["host"], mock_host);
    assert_eq!(seen["path"], path);

    // The same call made directly with a valid token gives the same body.
    let direct: Value = reqwest::Client::new()
        .get(format!("{}{path}", s.mock.base_url()))
        .bearer_auth(direct_token(&s.mock).await)
        .send()
        .await
        .expect("direct")
        .json()
        .await
        .expect("json");
    // Identical but for Spotify's own links, which lead back through the gateway.
    let direct = serde_json::to_string(&direct).expect("json").replace(
        &format!("{}/v1/", s.mock.base_url()),
        &format!("{}/v1/", s.gw.egress_url()),
    );
    let direct: Value = serde_json::from_str(&direct).expect("json");
    assert_eq!(via_gateway, direct);
    assert!(via_gateway["tracks"]["total"].as_u64().unwrap_or(0) >= 45);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spotify_errors_pass_through_with_status_headers_and_body() {
    let s = setup(Duration::from_secs(3600)).await;
    let resp = s.egress_get("/v1/tracks/doesnotexist0000000000").await;
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["status"], 404);

    mock_post(
        &s.mock,
        "/__mock/fault",
        Some(json!({"target": "api", "status": 429, "retry_after": 7, "times": 1})),
    )
    .await;
    let resp = s.egress_get("/v1/search?q=abba&type=track").await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_requests_fetch_exactly_one_token() {
    let s = setup(Duration::from_secs(3600)).await;
    let calls = (0..64).map(|i| {
        let url = format!(
            "{}/v1/search?q=abba&type=track&offset={i}",
            s.gw.egress_url()
        );
        let http = s.http.clone();
        async move { http.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    let statuses = futures::future::join_all(calls).await;
    assert!(
        statuses.iter().all(|s| matches!(s, Ok(200))),
        "{statuses:?}"
    );
    assert_eq!(token_requests(&s.mock, "client_credentials").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_is_renewed_before_it_expires() {
    // Lifetime 60 s: the gateway treats the token as stale 12 s before its end (a fifth).
    // Each call asks for another page size, so none is answered from the gateway's cache.
    let s = setup(Duration::from_secs(60)).await;
    assert_eq!(
        s.egress_get("/v1/search?q=abba&type=track&limit=1")
            .await
            .status(),
        200
    );
    assert_eq!(token_requests(&s.mock, "client_credentials").await, 1);

    // Inside the refresh margin but before Spotify would refuse the token (by the gateway's
    // clock, moved forward; the mock's does not move).
    s.gw.advance_clock(Duration::from_secs(50)).await;
    assert_eq!(
        s.egress_get("/v1/search?q=abba&type=track&limit=2")
            .await
            .status(),
        200
    );
    assert_eq!(token_requests(&s.mock, "client_credentials").await, 2);

    // Past the lifetime of the second token: renewed again, never sent expired.
    s.gw.advance_clock(Duration::from_secs(61)).await;
    assert_eq!(
        s.egress_get("/v1/search?q=abba&type=track&limit=3")
            .await
            .status(),
        200
    );
    assert_eq!(token_requests(&s.mock, "client_credentials").await, 3);
    // The mock's clock did not move, so it would still take the old tokens: that each call
    // left with a token never sent before is what shows the expired one stayed home.
    let sent: Vec<String> = mock_requests(&s.mock)
        .await
        .iter()
        .filter(|r| r["target"] == "api")
        .filter_map(|r| r["headers"]["authorization"].as_str().map(String::from))
        .collect();
    assert_eq!(sent.len(), 3);
    assert!(
        sent[0] != sent[1] && sent[1] != sent[2] && sent[0] != sent[2],
        "each call carried the token fetched for it"
    );
    let api_calls = mock_requests(&s.mock)
        .await
        .iter()
        .filter(|r| r["target"] == "api")
        .count();
    assert_eq!(api_calls, 3, "every call reached the API once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_outage_gives_a_clear_503_and_recovers() {
    let s = setup(Duration::from_secs(3600)).await;
    mock_post(
        &s.mock,
        "/__mock/fault",
        Some(json!({"target": "token", "status": 503, "times": 1000})),
    )
    .await;
    let started = Instant::now();
    let resp = s.egress_get("/v1/search?q=abba&type=track").await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.expect("json");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("token endpoint"), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a failing token endpoint must not make callers hang"
    );
    let api_calls = mock_stats(&s.mock).await["api_requests"].as_u64();
    assert_eq!(
        api_calls,
        Some(0),
        "nothing is sent to the API without a token"
    );

    mock_post(&s.mock, "/__mock/reset", None).await;
    // The gateway holds a failure for a second; then the next call fetches again.
    s.gw.wait_until(
        Duration::from_secs(10),
        "the app token to be fetched again after the outage",
        || async {
            let status = s.egress_get("/v1/search?q=abba&type=track").await.status();
            if status == 200 {
                return true;
            }
            assert_eq!(status, 503);
            false
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_token_endpoint_gives_503_quickly() {
    let closed = format!("http://127.0.0.1:{}", free_port());
    let s = Stack::builder()
        .token_lifetime(Duration::from_secs(60))
        .set("spotify.accounts_url", closed)
        .start()
        .await;
    let resp = reqwest::get(format!("{}/v1/search?q=a&type=track", s.gw.egress_url()))
        .await
        .expect("answer");
    assert_eq!(resp.status(), 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_client_secret_is_reported_as_a_configuration_problem() {
    let s = Stack::builder()
        .token_lifetime(Duration::from_secs(60))
        .mock_config(|cfg| cfg.client_secret = "another-secret".into())
        .start()
        .await;
    let resp = reqwest::get(format!("{}/v1/search?q=a&type=track", s.gw.egress_url()))
        .await
        .expect("answer");
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.expect("json");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("client"));
    assert!(!s.gw.log().contains(CLIENT_SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_outside_v1_and_unsafe_targets_never_reach_spotify() {
    let s = setup(Duration::from_secs(3600)).await;
    for (target, status) in [
        ("/", 404),
        ("/v2/search", 404),
        ("/admin", 404),
        ("/v1/../admin", 400),
        ("/v1/./me", 400),
        ("/v1/%2e%2e/x", 400),
        ("/v1/a%2Fb", 400),
        ("http://evil.example/v1/me", 400),
        ("http://127.0.0.1:1/v1/search?q=a&type=track", 400),
    ] {
        // Raw bytes: an HTTP client would normalise these targets before sending.
        let request =
            format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        let (got, answer) = raw_request(s.gw.ports.egress, &request).await;
        assert_eq!(got, status, "{target}: {answer}");
        // pingora itself refuses absolute-form targets (empty 400) before our filters run.
        if target.starts_with('/') {
            assert!(
                answer.contains(&format!("\"status\":{status}")),
                "{target}: {answer}"
            );
        }
    }
    let stats = mock_stats(&s.mock).await;
    assert_eq!(stats["api_requests"], 0);
    assert_eq!(stats["token_requests"]["client_credentials"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_app_token_an_anonymous_call_gets_401() {
    let s = Stack::builder()
        .set("egress.app_token", false)
        .start()
        .await;
    let resp = s.egress_get("/v1/search?q=abba&type=track").await;
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["status"], 401);
    assert_eq!(mock_stats(&s.mock).await["api_requests"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_serves_metrics_and_probes() {
    let s = setup(Duration::from_secs(3600)).await;
    assert_eq!(
        s.egress_get("/v1/search?q=abba&type=track").await.status(),
        200
    );
    assert_eq!(s.egress_get("/nope").await.status(), 404);
    let admin = s.gw.admin_url();
    assert_eq!(
        reqwest::get(format!("{admin}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        reqwest::get(format!("{admin}/readyz"))
            .await
            .unwrap()
            .status(),
        200
    );
    let needles = [
        r#"spotify_gateway_requests_total{app="default",listener="egress",route="/v1/search",status="2xx"} 1"#,
        r#"spotify_gateway_requests_total{app="default",listener="egress",route="unmatched",status="4xx"} 1"#,
        r#"spotify_gateway_app_token_fetches_total{app="default",result="ok"} 1"#,
        r#"spotify_gateway_upstream_duration_seconds_count{app="default",listener="egress"} 1"#,
        "spotify_gateway_build_info{version=",
    ];
    // A request is counted in its logging phase, just after its answer was written: on a
    // busy machine the scrape can come first.
    s.gw.wait_until(
        Duration::from_secs(5),
        "both egress requests to be counted",
        || async {
            let metrics = scrape(&s.gw).await;
            needles.iter().all(|n| metrics.contains(n))
        },
    )
    .await;
    let metrics = reqwest::get(format!("{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in needles {
        assert!(metrics.contains(needle), "missing {needle} in:\n{metrics}");
    }
    assert!(!metrics.contains(CLIENT_SECRET));
}
