//! The refresh of a user's token when Spotify's token endpoint does not cooperate: a burst of
//! calls costs O(1) token requests whether the endpoint fails, is slow, or both (and every call
//! is answered within its deadline), a refresh token Spotify has ended ends the session without
//! retrying, and a refreshed (rotated) token survives a store that refuses the write.
//!
//! A token goes stale by the gateway's clock, moved forward (`Gateway::advance_clock`), not
//! by waiting.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// A stack whose user alice is signed in with an access token the gateway now considers
/// stale, so her next call refreshes; returns the stack and her assertion.
async fn alice_needs_a_refresh(total_timeout: &str) -> (Stack, String) {
    let lifetime = Duration::from_secs(60);
    let s = Stack::builder()
        .app(App::Echo)
        .token_lifetime(lifetime)
        .set("egress.total_timeout", total_timeout)
        .start()
        .await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    let assertion = s.assertion(&b).await;
    // The behaviour under test starts when the token expires by the gateway's own clock
    // (moved forward; the mock's does not move).
    s.gw.advance_clock(lifetime).await;
    (s, assertion)
}

/// `n` concurrent egress calls as the user of `assertion`: each one's status and whether it
/// was answered within `within`.
async fn burst(s: &Stack, assertion: &str, n: usize, within: Duration) -> Vec<Option<u16>> {
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let http = s.http.clone();
            let url = format!("{}/v1/me", s.gw.egress_url());
            let assertion = assertion.to_string();
            tokio::spawn(async move {
                let call = http.get(url).header("x-gateway-user", assertion).send();
                tokio::time::timeout(within, call)
                    .await
                    .ok()
                    .and_then(|r| r.ok())
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for c in calls {
        out.push(c.await.expect("call task"));
    }
    out
}

async fn refresh_requests(s: &Stack) -> u64 {
    token_requests(&s.mock, "refresh_token").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_token_endpoint_costs_one_refresh_for_a_burst() {
    let (s, assertion) = alice_needs_a_refresh("10s").await;
    s.fault(json!({"target": "token", "status": 503, "times": 100000}))
        .await;
    let before = refresh_requests(&s).await;
    let answers = burst(&s, &assertion, 200, Duration::from_secs(10)).await;
    assert!(
        answers.iter().all(|a| *a == Some(503)),
        "every call is told the token endpoint is unavailable: {answers:?}"
    );
    let sent = refresh_requests(&s).await - before;
    assert!(
        (1..=2).contains(&sent),
        "{sent} refresh requests for a burst of 200 calls"
    );
    // The session is kept: once the endpoint works and the hold has passed, the user's call
    // succeeds.
    mock_post(&s.mock, "/__mock/reset", None).await;
    s.gw.wait_until(
        Duration::from_secs(5),
        "alice's call to succeed after the endpoint recovered",
        || async { egress_status(&s.gw, &assertion).await == 200 },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_token_endpoint_is_asked_once_and_every_caller_gets_the_token() {
    let (s, assertion) = alice_needs_a_refresh("10s").await;
    s.fault(json!({"target": "token", "delay_ms": 1500, "times": 100000}))
        .await;
    let before = refresh_requests(&s).await;
    let answers = burst(&s, &assertion, 200, Duration::from_secs(10)).await;
    assert!(
        answers.iter().all(|a| *a == Some(200)),
        "every caller waited for the one refresh: {answers:?}"
    );
    assert_eq!(refresh_requests(&s).await - before, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_failing_token_endpoint_answers_every_call_within_its_deadline() {
    // Each refresh takes 3 s and fails; the calls may take 2 s.
    let (s, assertion) = alice_needs_a_refresh("2s").await;
    s.fault(json!({"target": "token", "status": 503, "delay_ms": 3000, "times": 100000}))
        .await;
    let before = refresh_requests(&s).await;
    // 2 s deadline, plus a margin for 200 answers on a loaded machine.
    let answers = burst(&s, &assertion, 200, Duration::from_millis(3500)).await;
    assert!(
        answers.iter().all(|a| matches!(a, Some(503 | 504))),
        "every call is answered within its deadline: {answers:?}"
    );
    assert!(
        answers.contains(&Some(504)),
        "the deadline passed while the refresh ran: {answers:?}"
    );
    // The refresh the first call started finishes on its own (3 s) and its failure is held:
    // the next burst is answered at once, with no new token request.
    s.gw.wait_until(
        Duration::from_secs(5),
        "the slow refresh to finish",
        || async { egress_status(&s.gw, &assertion).await == 503 },
    )
    .await;
    let again = burst(&s, &assertion, 50, Duration::from_secs(1)).await;
    assert!(again.iter().all(|a| *a == Some(503)), "{again:?}");
    let sent = refresh_requests(&s).await - before;
    assert!((1..=2).contains(&sent), "{sent} refresh requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_spotify_ends_the_refresh_token_the_session_ends_without_retrying() {
    let s = Stack::builder().app(App::Echo).start().await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    let assertion = s.assertion(&b).await;
    // Past Spotify's six months (the access token has expired too).
    mock_post(&s.mock, "/__mock/age?user=alice&days=184", None).await;
    let resp = s.egress_get_as(&assertion, "/v1/me").await;
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["reason"], "SESSION_ENDED", "{body}");
    assert_eq!(s.egress_get_as(&assertion, "/v1/me").await.status(), 401);
    assert_eq!(
        token_requests(&s.mock, "refresh_token").await,
        1,
        "no retry"
    );
    login(&b, &s.gw, "alice", "/").await;
    let fresh = s.assertion(&b).await;
    assert_eq!(s.egress_get_as(&fresh, "/v1/me").await.status(), 200);
}

/// Redis lets the gateway's user (`gw`) read everything but write only `writable`.
async fn redis_acl(redis: &RedisServer, writable: &str) {
    let client = redis::Client::open(redis.url()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("gw")
        .arg("on")
        .arg(">gw-password")
        .arg("resetkeys")
        .arg("%R~*")
        .arg(format!("%RW~{writable}"))
        .arg("%RW~sgw:lock:*")
        .arg("%RW~sgw:pending:*")
        .arg("%RW~sgw:user_index:*")
        .arg("%RW~sgw:user_sessions:*")
        .arg("%RW~sgw:users")
        .arg("allchannels")
        .arg("+@all")
        .query_async(&mut conn)
        .await
        .expect("ACL SETUSER");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refreshed_token_survives_a_store_that_refuses_the_write() {
    let redis = RedisServer::start().await;
    redis_acl(&redis, "sgw:sessions:*").await;
    let url = format!("redis://gw:gw-password@127.0.0.1:{}", redis.port);
    let mut s = Stack::builder()
        .app(App::Echo)
        .set("spotify.flow", "pkce")
        .set("store.backend", "redis")
        .set("store.url", url)
        .start()
        .await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    let assertion = s.assertion(&b).await;

    // The store stops taking session records; Spotify ends alice's access token, so her next
    // call refreshes, and under PKCE Spotify rotates her refresh token.
    redis_acl(&redis, "sgw:nothing-writable").await;
    mock_post(&s.mock, "/__mock/expire?user=alice", None).await;
    assert_eq!(egress_status(&s.gw, &assertion).await, 200);
    let ready = reqwest::get(format!("{}/readyz", s.gw.admin_url()))
        .await
        .expect("readyz");
    assert_eq!(
        ready.status(),
        503,
        "not ready while the new record is unsaved"
    );
    assert!(ready
        .text()
        .await
        .unwrap_or_default()
        .contains("not yet saved"));
    assert_eq!(s.metric("spotify_gateway_unsaved_sessions").await, 1.0);
    assert!(s
        .gw
        .log()
        .contains("could not be written to the session store"));
    // Calls keep working from memory meanwhile.
    assert_eq!(egress_status(&s.gw, &assertion).await, 200);

    // The store takes writes again: the record lands, and the gateway is ready.
    redis_acl(&redis, "*").await;
    s.gw.wait_until(
        Duration::from_secs(5),
        "the unsaved record to be written",
        || async {
            reqwest::get(format!("{}/readyz", s.gw.admin_url()))
                .await
                .is_ok_and(|r| r.status() == 200)
        },
    )
    .await;
    assert_eq!(s.metric("spotify_gateway_unsaved_sessions").await, 0.0);

    // A restart reads the stored record: it holds the rotated refresh token, so the next
    // refresh works (the old one would be `invalid_grant` and end the session).
    s.gw.restart().await;
    mock_post(&s.mock, "/__mock/expire?user=alice", None).await;
    let status = egress_status(&s.gw, &assertion).await;
    assert_eq!(status, 200, "the session survived:\n{}", s.gw.log());
}
