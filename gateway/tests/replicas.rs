//! Several replicas on one real Redis: shared sessions, one refresh across replicas, logout
//! seen everywhere, and a Redis outage.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

struct Cluster {
    mock: MockSpotify,
    redis: RedisServer,
    replicas: Vec<Gateway>,
    _app: Option<tokio::task::JoinHandle<()>>,
}

/// Three gateways with PKCE on one Redis, behind them one echo app; the mock knows replica
/// 1's redirect URI, where logins go.
async fn cluster() -> Cluster {
    let redis = RedisServer::start().await;
    let first = Stack::builder()
        .app(App::Echo)
        .redis_store(&redis)
        .set("spotify.flow", "pkce")
        .start()
        .await;
    let mut others = Vec::new();
    for _ in 1..3 {
        let mut ports = Ports::new();
        ports.app = first.ports.app;
        others.push(Gateway::start(ports, &first.config_for(ports)).await);
    }
    let Stack {
        mock, gw, app_task, ..
    } = first;
    let mut replicas = vec![gw];
    replicas.extend(others);
    Cluster {
        mock,
        redis,
        replicas,
        _app: app_task,
    }
}

async fn assertion_via(b: &reqwest::Client, gw: &Gateway) -> String {
    let (status, seen) = via_public(b, gw, "/app").await;
    assert_eq!(status, 200, "{seen}");
    seen["headers"]["x-gateway-user"]
        .as_str()
        .expect("assertion")
        .to_string()
}

/// Logs in through replica 1 and returns a browser holding the session cookie.
async fn logged_in(c: &Cluster, user: &str) -> reqwest::Client {
    let b = browser();
    login(&b, &c.replicas[0], user, "/").await;
    b
}

/// The cookie jar is per host (127.0.0.1), not per port, so one browser reaches every replica
/// with the same cookie, as behind one load-balanced hostname.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_on_one_replica_works_on_all() {
    let c = cluster().await;
    let b = logged_in(&c, "alice").await;
    let assertion = assertion_via(&b, &c.replicas[0]).await;
    for gw in &c.replicas[1..] {
        let (status, info) = via_public(&b, gw, "/auth/userinfo").await;
        assert_eq!(status, 200);
        assert_eq!(info["user_id"], "alice");
        assert_eq!(egress_status(gw, &assertion).await, 200);
        // An assertion issued by this replica works on the others too.
        let own = assertion_via(&b, gw).await;
        assert_eq!(egress_status(&c.replicas[0], &own).await, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_pkce_token_and_300_calls_over_three_replicas_refresh_once() {
    let c = cluster().await;
    let b = logged_in(&c, "alice").await;
    let assertion = assertion_via(&b, &c.replicas[0]).await;
    // Every replica has the session (and its token) in memory.
    for gw in &c.replicas {
        assert_eq!(egress_status(gw, &assertion).await, 200);
    }
    mock_post(&c.mock, "/__mock/expire?user=alice", None).await;
    let calls = (0..300).map(|i| egress_status(&c.replicas[i % 3], &assertion));
    let statuses = futures::future::join_all(calls).await;
    let failed: Vec<_> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
    assert_eq!(token_requests(&c.mock, "refresh_token").await, 1);
    for gw in &c.replicas {
        assert_eq!(
            via_public(&b, gw, "/auth/userinfo").await.0,
            200,
            "session still valid"
        );
        assert_eq!(egress_status(gw, &assertion).await, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_on_one_replica_is_refused_on_another_within_a_second() {
    let c = cluster().await;
    let b = logged_in(&c, "alice").await;
    let assertion = assertion_via(&b, &c.replicas[0]).await;
    // Replica 3 holds the session in its memory cache.
    assert_eq!(egress_status(&c.replicas[2], &assertion).await, 200);

    logout(&b, &c.replicas[0]).await;
    let logged_out = Instant::now();
    wait_until(
        logged_out + Duration::from_secs(1),
        "replica 3 to refuse the session (it still served it after 1 s)",
        || async {
            let status = egress_status(&c.replicas[2], &assertion).await;
            if status == 401 {
                return true;
            }
            assert_eq!(status, 200);
            false
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_keeps_cached_calls_working_and_loses_nothing() {
    let mut c = cluster().await;
    let alice = logged_in(&c, "alice").await;
    let bob = logged_in(&c, "bob").await;
    let alice_assertion = assertion_via(&alice, &c.replicas[0]).await;
    let bob_assertion = assertion_via(&bob, &c.replicas[0]).await;
    // Replica 2 has alice in memory; replica 3 has never seen bob.
    assert_eq!(egress_status(&c.replicas[1], &alice_assertion).await, 200);

    c.redis.stop();
    for _ in 0..20 {
        assert_eq!(egress_status(&c.replicas[1], &alice_assertion).await, 200);
    }
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/me", c.replicas[2].egress_url()))
        .header("x-gateway-user", &bob_assertion)
        .send()
        .await
        .expect("egress");
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.expect("json");
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("session store is unavailable"),
        "{message}"
    );
    let ready = reqwest::get(format!("{}/readyz", c.replicas[2].admin_url()))
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 503);

    c.redis.start_again().await;
    // Everything comes back by itself: every replica reports ready again.
    let deadline = Instant::now() + Duration::from_secs(15);
    for (i, gw) in c.replicas.iter().enumerate() {
        gw.wait_until(
            deadline,
            format!("replica {} to recover (/readyz 200)", i + 1),
            || async {
                let ready = reqwest::get(format!("{}/readyz", gw.admin_url()))
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                ready == 200
            },
        )
        .await;
    }
    assert_eq!(egress_status(&c.replicas[2], &bob_assertion).await, 200);
    for gw in &c.replicas {
        assert_eq!(
            via_public(&alice, gw, "/auth/userinfo").await.0,
            200,
            "alice kept"
        );
        assert_eq!(
            via_public(&bob, gw, "/auth/userinfo").await.0,
            200,
            "bob kept"
        );
    }
}

/// A store that hangs (SIGSTOP: connections open, nothing answers) for longer than a call's
/// deadline: a session in this replica's memory cache is still served; one that is not is
/// answered 503 with `Retry-After`, naming the store as the cause, within the deadline (not
/// 504 blaming Spotify's token endpoint, not a hang, not a sign-out); on the public listener
/// too. Once the store answers again, nothing was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_store_answers_503_naming_it_not_504() {
    let redis = RedisServer::start().await;
    // Shorter than one store operation's own bound (1.5 s): the deadline passes first.
    let s = Stack::builder()
        .app(App::Echo)
        .redis_store(&redis)
        .set("egress.total_timeout", "1s")
        .more_gateways(1)
        .start()
        .await;
    let other = s.start_replica().await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    let assertion = s.assertion(&b).await;
    assert_eq!(egress_status(&s.gw, &assertion).await, 200);

    redis.pause();
    // Cached on the first replica, with a fresh token: served from memory.
    assert_eq!(egress_status(&s.gw, &assertion).await, 200);
    // Never seen by the other: it needs the store.
    let resp = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
        .get(format!("{}/v1/me", other.egress_url()))
        .header("x-gateway-user", &assertion)
        .send()
        .await
        .expect("answered, not a hang");
    let (status, retry_after) = (resp.status(), resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.expect("json");
    assert_eq!(
        status, 503,
        "the store is the cause, not a deadline: {body}"
    );
    assert!(retry_after);
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("session store is unavailable") && message.contains("/readyz"),
        "{message}"
    );
    // The public listener: the session's page needs the store on the other replica too.
    let page = b
        .get(format!("{}/auth/userinfo", other.public_url()))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("answered, not a hang");
    assert_eq!(page.status(), 503);
    assert!(page.headers().contains_key("retry-after"));
    let body: Value = page.json().await.expect("json");
    assert_eq!(body["error"], "store_unavailable");

    redis.resume();
    other
        .wait_until(
            Duration::from_secs(15),
            "the other replica to serve the session",
            || async { egress_status(&other, &assertion).await == 200 },
        )
        .await;
    assert_eq!(via_public(&b, &other, "/auth/userinfo").await.0, 200);
}
