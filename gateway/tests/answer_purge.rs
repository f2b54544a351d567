//! A user who leaves leaves no answer behind (Spotify's Developer Policy: a disconnected
//! user's data is deleted). After a disconnect, an operator's revocation or a session ended by
//! `invalid_grant`, the user's cached answers and shared calls in flight are forgotten on every
//! replica: a new login's `GET /v1/me` is a fresh call to Spotify, not the old copy nor a
//! revalidation of it. What reached Spotify is read from the mock's stats and request log.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use serde_json::{json, Value};

const PURGED: &str = "spotify_gateway_answer_cache_purged_total";
const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
const ADMIN_TOKEN_VAR: &str = "TEST_ADMIN_TOKEN";
const FRESH: &str = "spotify-gateway; fwd=miss";
const REVALIDATED: &str = "spotify-gateway; fwd=stale; fwd-status=304";

/// `GET /v1/me` on `gw`'s egress as `assertion`: status, `Cache-Status`, body.
async fn me(gw: &Gateway, assertion: &str) -> (u16, String, Value) {
    egress_answer(gw, "/v1/me", Some(assertion)).await
}

/// The assertion the echo app receives for `browser` on `gw`.
async fn assertion_via(browser: &reqwest::Client, gw: &Gateway) -> String {
    let (status, seen) = via_public(browser, gw, "/app").await;
    assert_eq!(status, 200, "{seen}");
    seen["headers"]["x-gateway-user"]
        .as_str()
        .expect("assertion")
        .to_string()
}

/// `user` signed in on `gw`: the browser and its assertion.
async fn signed_in(gw: &Gateway, user: &str) -> (reqwest::Client, String) {
    let b = browser();
    login(&b, gw, user, "/").await;
    let assertion = assertion_via(&b, gw).await;
    (b, assertion)
}

/// `/v1/me` for `assertion` is in `gw`'s cache (`private, max-age=0` with an `ETag`): the
/// first call fetches it, the second revalidates the cached copy.
async fn cache_profile(gw: &Gateway, assertion: &str) {
    let (status, cache_status, body) = me(gw, assertion).await;
    assert_eq!((status, cache_status.as_str()), (200, FRESH), "{body}");
    let (status, cache_status, _) = me(gw, assertion).await;
    assert_eq!(
        (status, cache_status.as_str()),
        (200, REVALIDATED),
        "the profile is cached"
    );
}

/// alice signs in again on `login_gw`; her `/v1/me` on `gw` must be a fresh call to Spotify:
/// no cached copy served, none revalidated (no `If-None-Match` reached the mock).
async fn a_new_login_gets_a_fresh_profile(mock: &MockSpotify, login_gw: &Gateway, gw: &Gateway) {
    let (_b, assertion) = signed_in(login_gw, "alice").await;
    // The login's own `/v1/me` (the token client's) is forgotten.
    mock_post(mock, "/__mock/reset", None).await;
    let (status, cache_status, body) = me(gw, &assertion).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], "alice");
    assert_eq!(
        cache_status, FRESH,
        "the new login's profile must come from Spotify, not the departed user's cached copy"
    );
    let calls = mock_requests(mock).await;
    let api: Vec<&Value> = calls.iter().filter(|r| r["target"] == "api").collect();
    assert_eq!(api.len(), 1, "{api:?}");
    assert!(
        api[0]["headers"]["if-none-match"].is_null(),
        "not a revalidation of the old copy: {}",
        api[0]
    );
}

/// A stack with the admin API on and the echo app behind the public listener.
fn stack() -> StackBuilder {
    Stack::builder()
        .app(App::Echo)
        .edit(|doc| {
            let mut admin = toml_edit::Table::new();
            admin["token_env"] = toml_edit::value(ADMIN_TOKEN_VAR);
            doc["admin"] = toml_edit::Item::Table(admin);
        })
        .env(ADMIN_TOKEN_VAR, ADMIN_TOKEN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_disconnect_a_new_login_gets_a_fresh_profile_and_others_keep_theirs() {
    let s = stack().start().await;
    let (alice, alice_assertion) = signed_in(&s.gw, "alice").await;
    let (_bob, bob_assertion) = signed_in(&s.gw, "bob").await;
    cache_profile(&s.gw, &alice_assertion).await;
    cache_profile(&s.gw, &bob_assertion).await;

    disconnect(&alice, &s.gw).await;
    a_new_login_gets_a_fresh_profile(&s.mock, &s.gw, &s.gw).await;
    assert_eq!(s.metric(PURGED).await, 1.0, "alice's one cached answer");
    // Only alice's answers went.
    let (status, cache_status, body) = me(&s.gw, &bob_assertion).await;
    assert_eq!(
        (status, cache_status.as_str()),
        (200, REVALIDATED),
        "{body}"
    );
    assert_eq!(body["id"], "bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_operators_revocation_a_new_login_gets_a_fresh_profile() {
    let s = stack().start().await;
    let (_alice, assertion) = signed_in(&s.gw, "alice").await;
    cache_profile(&s.gw, &assertion).await;

    revoke_user(&s.gw, "alice", ADMIN_TOKEN).await;
    a_new_login_gets_a_fresh_profile(&s.mock, &s.gw, &s.gw).await;
    assert_eq!(s.metric(PURGED).await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_invalid_grant_a_new_login_gets_a_fresh_profile() {
    let s = stack().start().await;
    let (_alice, assertion) = signed_in(&s.gw, "alice").await;
    cache_profile(&s.gw, &assertion).await;

    // Spotify revokes alice's grant: her token is refused and its refresh meets invalid_grant.
    mock_post(&s.mock, "/__mock/revoke?user=alice", None).await;
    let (status, _, body) = me(&s.gw, &assertion).await;
    assert_eq!(status, 401, "the session ended: {body}");
    assert_eq!(token_requests(&s.mock, "refresh_token").await, 1);
    a_new_login_gets_a_fresh_profile(&s.mock, &s.gw, &s.gw).await;
    assert_eq!(s.metric(PURGED).await, 1.0);
}

/// Every message published on the gateway's Redis channels, as a subscriber sees them.
async fn watch_channels(url: &str) -> tokio::task::JoinHandle<Vec<String>> {
    let client = redis::Client::open(url).expect("redis url");
    let mut pubsub = client.get_async_pubsub().await.expect("subscribe");
    pubsub.psubscribe("sgw:*").await.expect("psubscribe");
    tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut messages = pubsub.on_message();
        while let Ok(Some(msg)) =
            tokio::time::timeout(Duration::from_secs(2), messages.next()).await
        {
            seen.push(msg.get_payload::<String>().unwrap_or_default());
        }
        seen
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_on_one_replica_purges_the_users_answers_on_the_other() {
    let redis = RedisServer::start().await;
    let s = stack().more_gateways(1).redis_store(&redis).start().await;
    let other = s
        .start_replica_with_env(vec![(ADMIN_TOKEN_VAR.to_string(), ADMIN_TOKEN.to_string())])
        .await;
    let (alice, alice_assertion) = signed_in(&s.gw, "alice").await;
    let (_bob, bob_assertion) = signed_in(&s.gw, "bob").await;
    // The other replica holds both profiles in its cache.
    cache_profile(&other, &alice_assertion).await;
    cache_profile(&other, &bob_assertion).await;
    let messages = watch_channels(&redis.url()).await;

    disconnect(&alice, &s.gw).await;
    other
        .wait_until(
            Duration::from_secs(5),
            "the other replica to drop alice's cached profile",
            || async { metric_value(&other, PURGED).await.unwrap_or(0.0) >= 1.0 },
        )
        .await;
    a_new_login_gets_a_fresh_profile(&s.mock, &s.gw, &other).await;
    let (status, cache_status, _) = me(&other, &bob_assertion).await;
    assert_eq!(
        (status, cache_status.as_str()),
        (200, REVALIDATED),
        "bob's kept"
    );
    // The replicas were told without naming alice.
    let seen = messages.await.expect("subscriber");
    assert!(!seen.is_empty(), "the disconnect was announced");
    assert!(
        seen.iter().all(|m| !m.contains("alice")),
        "a message named the user: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_waiting_on_a_departed_users_call_makes_its_own() {
    let s = stack().start().await;
    let (alice, assertion) = signed_in(&s.gw, "alice").await;
    mock_post(&s.mock, "/__mock/reset", None).await;
    let hits = r#"spotify_gateway_token_cache_total{app="default",result="hit"}"#;
    let hits_before = s.metric(hits).await;
    // The leader's call stays at Spotify for a while; an identical call follows it.
    s.fault(json!({"target": "api", "delay_ms": 3000, "times": 1}))
        .await;
    let leader = tokio::spawn({
        let (gw_url, a) = (s.gw.egress_url(), assertion.clone());
        async move {
            let resp = reqwest::Client::new()
                .get(format!("{gw_url}/v1/me"))
                .header("x-gateway-user", a)
                .send()
                .await
                .expect("leader");
            resp.status().as_u16()
        }
    });
    wait_until(
        Duration::from_secs(5),
        "the leader's call at the mock",
        || async { s.api_requests().await >= 1 },
    )
    .await;
    let follower = tokio::spawn({
        let gw = s.gw.egress_url();
        let a = assertion.clone();
        async move {
            let resp = reqwest::Client::new()
                .get(format!("{gw}/v1/me"))
                .header("x-gateway-user", a)
                .send()
                .await
                .expect("follower");
            let cache_status = resp
                .headers()
                .get("cache-status")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            (resp.status().as_u16(), cache_status)
        }
    });
    // The follower has its token (it joins the leader's flight without a pause after that).
    wait_until(
        Duration::from_secs(5),
        "the follower to take its token",
        || async { s.metric(hits).await >= hits_before + 2.0 },
    )
    .await;

    disconnect(&alice, &s.gw).await;
    let (status, cache_status) = follower.await.expect("follower task");
    assert_eq!(status, 200);
    assert_eq!(
        cache_status, FRESH,
        "after the purge the follower made its own call, not taken the leader's answer"
    );
    assert_eq!(leader.await.expect("leader task"), 200);
    assert_eq!(
        s.api_requests().await,
        2,
        "the leader's and the follower's own"
    );
    // Neither answer, both to calls made before the purge, was stored.
    a_new_login_gets_a_fresh_profile(&s.mock, &s.gw, &s.gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_redis_subscription_was_down_forgets_every_users_answers() {
    let mut redis = RedisServer::start().await;
    let s = stack().redis_store(&redis).start().await;
    let (_alice, assertion) = signed_in(&s.gw, "alice").await;
    cache_profile(&s.gw, &assertion).await;
    // An app-token answer Spotify says is fresh for a while (catalogue: max-age).
    let resp = s.egress_get("/v1/search?q=abba&type=track&limit=5").await;
    assert_eq!(resp.status(), 200);
    let page: Value = resp.json().await.expect("json");
    let id = page["tracks"]["items"][0]["id"].as_str().expect("id");
    let track = format!("/v1/tracks/{id}");
    assert_eq!(s.egress_get(&track).await.status(), 200);

    // Purge notices published meanwhile may be lost: alice's answers go, the app's stay.
    redis.stop();
    redis.start_again().await;
    s.gw.wait_until(
        Duration::from_secs(15),
        "the gateway to subscribe again, drop its users' answers and be ready",
        || async {
            let ready = reqwest::get(format!("{}/readyz", s.gw.admin_url()))
                .await
                .is_ok_and(|r| r.status() == 200);
            ready && s.metric(PURGED).await >= 1.0
        },
    )
    .await;
    let (status, cache_status, body) = me(&s.gw, &assertion).await;
    assert_eq!((status, cache_status.as_str()), (200, FRESH), "{body}");
    let resp = s.egress_get(&track).await;
    let cache_status = resp.headers()["cache-status"].to_str().unwrap_or("");
    assert!(
        cache_status.contains("hit"),
        "the app's answer: {cache_status}"
    );
}
