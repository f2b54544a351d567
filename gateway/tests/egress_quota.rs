//! Spending Spotify's quota well: after one 429 no replica calls Spotify until `Retry-After`
//! has passed (the cool-down travels through Redis and is kept in every replica's memory),
//! and each replica answers 429 itself with what is left of it.
//! What reached Spotify is read from the mock's stats.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const SEARCH: &str = "/v1/search?q=abba&type=track";
const BLOCKED_UNTIL: &str =
    r#"spotify_gateway_rate_limit_blocked_until_timestamp_seconds{app="default"}"#;

/// A stack on a real Redis and `n - 1` more replicas of its gateway; no cache, so that every
/// call would go to Spotify but for the cool-down.
async fn replicas(redis: &RedisServer, n: usize) -> (Stack, Vec<Gateway>) {
    let s = Stack::builder()
        .set("egress.cache_size", 0)
        .redis_store(redis)
        .more_gateways(n - 1)
        .start()
        .await;
    let mut others = Vec::new();
    for ports in s.more_ports.clone() {
        others.push(Gateway::start(ports, &s.config_for(ports)).await);
    }
    (s, others)
}

/// An app-token call on `gw`'s egress: status, `Retry-After` and body.
async fn call(http: &reqwest::Client, gw: &Gateway) -> (u16, Option<u64>, Value) {
    let resp = http
        .get(format!("{}{SEARCH}", gw.egress_url()))
        .send()
        .await
        .expect("egress answers");
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (
        status,
        retry_after,
        resp.json().await.unwrap_or(Value::Null),
    )
}

/// Waits until `gw` holds calls (its gauge names a time).
async fn wait_for_hold(gw: &Gateway, which: &str) {
    gw.wait_until(
        Duration::from_secs(5),
        format!("{which} to learn the cool-down"),
        || async { metric_value(gw, BLOCKED_UNTIL).await.unwrap_or(0.0) > 0.0 },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_one_429_no_replica_calls_spotify_until_retry_after_has_passed() {
    let redis = RedisServer::start().await;
    let (s, others) = replicas(&redis, 3).await;
    let all: Vec<&Gateway> = std::iter::once(&s.gw).chain(&others).collect();
    // Every replica has its app token: the calls below are the only ones Spotify sees.
    for gw in &all {
        assert_eq!(call(&s.http, gw).await.0, 200);
    }
    mock_post(&s.mock, "/__mock/reset", None).await;
    let exceeded = json!({"quota_exceeded": true, "retry_after": 2});
    mock_post(&s.mock, "/__mock/quota", Some(exceeded)).await;

    let (status, retry_after, body) = call(&s.http, &s.gw).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(retry_after, Some(2), "Spotify's Retry-After passed on");
    assert_eq!(body["error"]["reason"], "QUOTA_EXCEEDED");
    for (i, gw) in all.iter().enumerate() {
        wait_for_hold(gw, &format!("replica {}", i + 1)).await;
    }

    // Each replica answers itself, with what is left of the hold and Spotify's reason.
    for round in 0..5 {
        for gw in &all {
            let (status, retry_after, body) = call(&s.http, gw).await;
            assert_eq!(status, 429, "round {round}: {body}");
            let left = retry_after.expect("Retry-After");
            assert!((1..=2).contains(&left), "{left}");
            assert_eq!(body["error"]["reason"], "QUOTA_EXCEEDED", "{body}");
        }
    }
    assert_eq!(
        s.api_requests().await,
        1,
        "only the first call reached Spotify"
    );
    let local =
        r#"spotify_gateway_rate_limited_local_total{app="default",reason="quota_exceeded"}"#;
    let spotify =
        r#"spotify_gateway_spotify_rate_limited_total{app="default",reason="quota_exceeded"}"#;
    let mut answered_locally = 0.0;
    for gw in &all {
        answered_locally += metric_value(gw, local).await.unwrap_or(0.0);
    }
    assert_eq!(answered_locally, 15.0);
    assert_eq!(metric_value(&s.gw, spotify).await, Some(1.0));
    for gw in &others {
        assert_eq!(
            metric_value(gw, spotify).await,
            Some(0.0),
            "seen once, by replica 1"
        );
    }

    // Once Retry-After has passed, every replica calls Spotify again.
    for (i, gw) in all.iter().enumerate() {
        wait_until(
            Duration::from_secs(5),
            format!("replica {} to call Spotify again", i + 1),
            || async {
                let (status, _, body) = call(&s.http, gw).await;
                assert!(status == 200 || status == 429, "{status}: {body}");
                status == 200
            },
        )
        .await;
    }
    let stats = mock_stats(&s.mock).await;
    assert_eq!(stats["api_requests"], 4, "{stats}");
    assert_eq!(stats["quota"]["refused"]["quota_exceeded"], 1, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_starts_during_a_cool_down_holds_calls_too() {
    let redis = RedisServer::start().await;
    let (s, _) = replicas(&redis, 1).await;
    mock_post(
        &s.mock,
        "/__mock/fault",
        Some(json!({"target": "api", "status": 429, "retry_after": 60})),
    )
    .await;
    let (status, retry_after, _) = call(&s.http, &s.gw).await;
    assert_eq!((status, retry_after), (429, Some(60)));
    wait_for_hold(&s.gw, "replica 1").await;

    let ports = Ports::new();
    let late = Gateway::start(ports, &s.config_for(ports)).await;
    wait_for_hold(&late, "the new replica").await;
    let (status, retry_after, body) = call(&s.http, &late).await;
    assert_eq!(status, 429, "{body}");
    assert!(
        retry_after.is_some_and(|s| (55..=60).contains(&s)),
        "{retry_after:?}"
    );
    assert!(
        body["error"].get("reason").is_none(),
        "the rate limit: {body}"
    );
    assert_eq!(s.api_requests().await, 1, "the new replica sent nothing");
}

/// `egress.budget_per_30s` on three replicas sharing one Redis, offered twice the budget:
/// Spotify sees exactly the budget and never says 429; the rest get the gateway's own 429.
/// App-token calls may use three quarters of it; the rest is kept for signed-in users.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_is_shared_by_replicas_and_spotify_never_says_429() {
    const BUDGET: u64 = 10;
    let redis = RedisServer::start().await;
    const APP_SHARE: u64 = 7;
    let s = Stack::builder()
        .app(App::Echo)
        .set("egress.cache_size", 0)
        .set("egress.budget_per_30s", BUDGET as i64)
        .redis_store(&redis)
        .mock_config(|m| m.quota_per_30s = Some(BUDGET as u32))
        .more_gateways(2)
        .start()
        .await;
    let mut others = Vec::new();
    for ports in s.more_ports.clone() {
        others.push(Gateway::start(ports, &s.config_for(ports)).await);
    }
    let all: Vec<&Gateway> = std::iter::once(&s.gw).chain(&others).collect();
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    let alice = s.assertion(&b).await;
    // The login's own `/v1/me` (the token client's, outside the egress budget) is forgotten.
    mock_post(&s.mock, "/__mock/reset", None).await;
    let calls = (0..2 * BUDGET).map(|i| {
        let gw = all[i as usize % 3];
        let url = format!("{}/v1/search?q=abba&type=track&offset={i}", gw.egress_url());
        async move {
            let resp = reqwest::get(url).await.expect("egress answers");
            let retry_after = resp.headers().get("retry-after").is_some();
            (resp.status().as_u16(), retry_after)
        }
    });
    let answers = futures::future::join_all(calls).await;
    let ok = answers.iter().filter(|(s, _)| *s == 200).count() as u64;
    let local = answers.iter().filter(|(s, r)| *s == 429 && *r).count() as u64;
    // Fetching each replica's app token is a call to the accounts service, not the Web API.
    assert_eq!(
        (ok, local),
        (APP_SHARE, 2 * BUDGET - APP_SHARE),
        "{answers:?}"
    );
    // What is left is alice's, on any replica; then the budget is spent for her too.
    for i in 0..BUDGET - APP_SHARE {
        let path = format!("/v1/search?q=abba&type=track&offset={}", 100 + i);
        let resp = s
            .egress_as(&alice, &path)
            .send()
            .await
            .expect("egress answers");
        assert_eq!(resp.status(), 200, "alice's call {i}");
    }
    let resp = s.egress_as(&alice, "/v1/me").send().await.expect("egress");
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    let quota = &mock_stats(&s.mock).await["quota"];
    assert_eq!(quota["allowed"], BUDGET, "{quota}");
    assert_eq!(
        quota["refused"]["rate_limited"], 0,
        "Spotify never said 429: {quota}"
    );
    let mut refused = 0.0;
    for gw in &all {
        refused += metric_value(
            gw,
            r#"spotify_gateway_budget_total{app="default",result="refused"}"#,
        )
        .await
        .unwrap_or(0.0);
    }
    assert_eq!(refused, (2 * BUDGET - APP_SHARE + 1) as f64);
}

/// Holds converge after an outage: a 429 taken while Redis is down is announced again until
/// Redis takes it, so the other replica holds within a second of Redis's return (the promise)
/// and sends Spotify nothing inside its `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_taken_while_redis_is_down_reaches_the_other_replica_once_it_is_back() {
    let mut redis = RedisServer::start().await;
    let (s, others) = replicas(&redis, 2).await;
    let other = &others[0];
    // Both have their app token: the calls below need neither Redis nor the token endpoint.
    for gw in [&s.gw, other] {
        assert_eq!(call(&s.http, gw).await.0, 200);
    }
    redis.stop();
    s.fault(json!({"target": "api", "status": 429, "retry_after": 60, "times": 1}))
        .await;
    let (status, retry_after, body) = call(&s.http, &s.gw).await;
    assert_eq!((status, retry_after), (429, Some(60)), "{body}");
    wait_for_hold(&s.gw, "replica 1").await;
    assert_eq!(
        metric_value(other, BLOCKED_UNTIL).await,
        Some(0.0),
        "Redis is down: the other replica cannot have heard"
    );

    redis.start_again().await;
    let back = std::time::Instant::now();
    other
        .wait_until(
            back + Duration::from_secs(1),
            "the other replica to hold within 1 s of Redis's return",
            || async { metric_value(other, BLOCKED_UNTIL).await.unwrap_or(0.0) > 0.0 },
        )
        .await;
    mock_post(&s.mock, "/__mock/reset", None).await;
    let (status, retry_after, body) = call(&s.http, other).await;
    assert_eq!(status, 429, "{body}");
    assert!(
        retry_after.is_some_and(|left| (30..=60).contains(&left)),
        "what is left of Spotify's 60 s: {retry_after:?}"
    );
    assert_eq!(s.api_requests().await, 0, "the other replica sent nothing");
}

/// The number of calls in the shared budget's window on Redis (all, app-token).
async fn shared_window(redis: &RedisServer) -> (u64, u64) {
    let client = redis::Client::open(redis.url()).expect("redis url");
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return (0, 0);
    };
    redis::pipe()
        .zcard("sgw:budget")
        .zcard("sgw:budget:app")
        .query_async(&mut conn)
        .await
        .unwrap_or((0, 0))
}

/// The budget converges after an outage: calls a replica counted in memory while Redis was
/// down (Spotify counted them) join the shared window when it is back, so the other replica
/// only has what is left of the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_counted_while_redis_is_down_join_the_shared_budget_when_it_is_back() {
    // App-token calls may take 6 of 8.
    const BUDGET: i64 = 8;
    let mut redis = RedisServer::start().await;
    let s = Stack::builder()
        .set("egress.cache_size", 0)
        .set("egress.budget_per_30s", BUDGET)
        .redis_store(&redis)
        .more_gateways(1)
        .start()
        .await;
    let other = Gateway::start(s.more_ports[0], &s.config_for(s.more_ports[0])).await;
    let url = |gw: &Gateway, i: u32| {
        format!("{}/v1/search?q=abba&type=track&offset={i}", gw.egress_url())
    };
    let get = |url: String| async move {
        let resp = reqwest::get(url).await.expect("egress answers");
        resp.status().as_u16()
    };
    // One call each while Redis is up: in the shared window.
    assert_eq!(get(url(&s.gw, 0)).await, 200);
    assert_eq!(get(url(&other, 1)).await, 200);
    assert_eq!(shared_window(&redis).await, (2, 2));

    redis.stop();
    for i in 2..5 {
        assert_eq!(get(url(&s.gw, i)).await, 200, "counted in memory");
    }
    redis.start_again().await;
    s.gw.wait_until(
        Duration::from_secs(5),
        "the calls counted during the outage to join the shared window",
        || async { shared_window(&redis).await == (5, 5) },
    )
    .await;
    // The other replica has one app-token call left of the six, then answers 429 itself.
    mock_post(&s.mock, "/__mock/reset", None).await;
    assert_eq!(get(url(&other, 5)).await, 200);
    let resp = reqwest::get(url(&other, 6)).await.expect("egress answers");
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(s.api_requests().await, 1, "Spotify saw the one call left");
}
