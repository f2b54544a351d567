//! How a session ends, and that it stays ended: Spotify's refresh tokens end (a re-consent is
//! offered in the last week before `session.reauth_after`, the deadline itself is a sign-out),
//! a user disconnects (every session deleted, on every replica; forged requests change
//! nothing), and a logout racing with lookups on every store backend and over two replicas
//! leaves no session behind.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// A page load as a browser makes it: `Accept: text/html`. Status, body.
async fn page(b: &reqwest::Client, gw: &Gateway, path: &str) -> (u16, String) {
    let resp = b
        .get(format!("{}{path}", gw.public_url()))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .expect("page");
    (resp.status().as_u16(), resp.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn within_a_week_of_the_deadline_a_browser_is_offered_a_re_consent_that_replaces_the_session()
{
    let s = Stack::builder()
        .app(App::Echo)
        .set("session.reauth_after", "6d")
        .start()
        .await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    let (status, info) = s.userinfo(&b).await;
    assert_eq!(status, 200);
    let reauth_by = info["reauth_by"].as_u64().expect("reauth_by");
    let six_days = 6 * 24 * 3600;
    assert!(reauth_by.abs_diff(now_secs() + six_days) < 60, "{info}");
    assert_eq!(
        info["session_expires_at"], reauth_by,
        "capped by the deadline"
    );
    let old_assertion = s.assertion(&b).await;
    assert_eq!(claims_of(&old_assertion)["reauth_by"], reauth_by);
    assert_eq!(s.metric("spotify_gateway_sessions_reauth_due").await, 1.0);

    // An API call (no text/html) is never held up by the offer.
    assert_eq!(via_public(&b, &s.gw, "/app").await.0, 200);
    // A page load is offered the re-consent, leading back to where the user was.
    let (status, offer) = page(&b, &s.gw, "/app?x=1").await;
    assert_eq!(status, 200);
    assert!(offer.contains("Renew your Spotify connection"), "{offer}");
    assert!(offer.contains("in 6 days"), "{offer}");
    assert!(
        offer.contains(r#"href="/auth/login?return_to=%2Fapp%3Fx%3D1""#),
        "{offer}"
    );
    assert!(offer.contains(r#"href="/app?x=1""#), "Not now carries on");
    // Once a day: the next page load reaches the app.
    let (status, seen) = page(&b, &s.gw, "/app?x=1").await;
    assert_eq!(status, 200);
    let seen: Value = serde_json::from_str(&seen).expect("the app's answer");
    assert_eq!(seen["headers"]["x-spotify-user-id"], "alice");
    assert!(
        seen["headers"].get("cookie").is_none(),
        "the offer cookie is the gateway's: {seen}"
    );

    // One click: a login that lands back on the page and replaces the old session.
    let trip = login(&b, &s.gw, "alice", "/app?x=1").await;
    assert_eq!(trip.landed, "/app?x=1");
    let (status, info) = s.userinfo(&b).await;
    assert_eq!(status, 200);
    assert!(info["reauth_by"].as_u64().expect("reauth_by") >= reauth_by);
    let resp = s.egress_get_as(&old_assertion, "/v1/me").await;
    assert_eq!(resp.status(), 401, "the old session is gone");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["reason"], "SESSION_ENDED");
    let new_assertion = s.assertion(&b).await;
    assert_eq!(
        s.egress_get_as(&new_assertion, "/v1/me").await.status(),
        200
    );
    assert_eq!(s.metric("spotify_gateway_sessions_reauth_due").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gauge_counts_sessions_due_within_two_weeks_and_the_offer_waits_for_the_last_week() {
    for (reauth_after, due, offered) in [("10d", 1.0, false), ("180d", 0.0, false)] {
        let s = Stack::builder()
            .app(App::Echo)
            .set("session.reauth_after", reauth_after)
            .start()
            .await;
        let b = browser();
        login(&b, &s.gw, "alice", "/").await;
        assert_eq!(
            s.metric("spotify_gateway_sessions_reauth_due").await,
            due,
            "{reauth_after}"
        );
        let (status, body) = page(&b, &s.gw, "/app").await;
        assert_eq!(status, 200);
        assert_eq!(body.contains("Renew your Spotify connection"), offered);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_deadline_the_session_ends_as_a_sign_out_and_egress_answers_reauth_required() {
    let s = Stack::builder()
        .app(App::Echo)
        .set("session.reauth_after", "2s")
        .start()
        .await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    let assertion = s.assertion(&b).await;
    assert_eq!(s.egress_get_as(&assertion, "/v1/me").await.status(), 200);
    wait_until(
        Duration::from_secs(10),
        "the egress to refuse the session at its deadline",
        || async {
            let status = s.egress_get_as(&assertion, "/v1/me").await.status();
            assert!(status == 200 || status == 401, "{status}");
            status == 401
        },
    )
    .await;
    let resp = s.egress_get_as(&assertion, "/v1/me").await;
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["reason"], "REAUTH_REQUIRED", "{body}");
    assert!(body["error"]["login_url"]
        .as_str()
        .unwrap_or("")
        .ends_with("/auth/login"));
    // The browser sees a sign-out ("sign in again"), not an error page.
    let (status, page) = page(&b, &s.gw, "/app").await;
    assert_eq!(status, 401);
    assert!(page.contains("Your session has expired"), "{page}");
    assert!(page.contains("Sign in with Spotify"), "{page}");
    assert!(!page.contains("Something went wrong"));
    assert_eq!(s.userinfo(&b).await.0, 401);
    // Signing in again works.
    login(&b, &s.gw, "alice", "/").await;
    assert_eq!(s.userinfo(&b).await.0, 200);
}

#[tokio::test]
async fn reauth_after_is_checked() {
    for (value, needle) in [("0s", "at least 1s"), ("200d", "180d"), ("soon", "")] {
        let ports = Ports::new();
        let config = GatewayConfig::template(ports, "http://127.0.0.1:9")
            .set("session.reauth_after", value)
            .to_string();
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("gw.toml");
        std::fs::write(&path, config).expect("write");
        let (code, _, err) = run_cli(
            &["check-config", "--config", path.to_str().expect("utf8")],
            &[
                ("TEST_CLIENT_SECRET", CLIENT_SECRET),
                ("TEST_SESSION_SECRET", SESSION_SECRET),
            ],
        );
        assert_eq!(code, 2, "{value}: {err}");
        assert!(err.contains("session.reauth_after"), "{value}: {err}");
        assert!(err.contains(needle), "{value}: {err}");
    }
}

/// The disconnect form's token on `/auth/disconnect`, as the page carries it.
async fn disconnect_form_token(b: &reqwest::Client, gw: &Gateway) -> String {
    let (status, page) = page(b, gw, "/auth/disconnect").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Disconnect your Spotify account"), "{page}");
    let (_, rest) = page
        .split_once(r#"name="csrf" value=""#)
        .expect("the form carries its token");
    rest.split('"').next().expect("token").to_string()
}

/// `POST /auth/disconnect` as a form from `origin` (none: no `Origin` header).
async fn post_disconnect(
    b: &reqwest::Client,
    gw: &Gateway,
    origin: Option<&str>,
    token: &str,
) -> reqwest::Response {
    let mut req = b
        .post(format!("{}/auth/disconnect", gw.public_url()))
        .header("accept", "text/html")
        .form(&[("csrf", token)]);
    if let Some(origin) = origin {
        req = req.header("origin", origin);
    }
    req.send().await.expect("disconnect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_disconnects_every_session_is_deleted_and_forged_requests_change_nothing() {
    let s = Stack::builder().app(App::Echo).start().await;
    let (first, second, bob) = (browser(), browser(), browser());
    login(&first, &s.gw, "alice", "/").await;
    login(&second, &s.gw, "alice", "/").await;
    login(&bob, &s.gw, "bob", "/").await;
    let assertions = [s.assertion(&first).await, s.assertion(&second).await];
    let bob_assertion = s.assertion(&bob).await;
    let token = disconnect_form_token(&first, &s.gw).await;
    let ours = s.gw.public_url();

    // Refused, changing nothing: another site's form, no origin at all, a wrong token, a GET.
    for (origin, sent) in [
        (Some("http://evil.example"), token.as_str()),
        (None, token.as_str()),
        (Some(ours.as_str()), "not-the-token"),
        (Some(ours.as_str()), ""),
    ] {
        let resp = post_disconnect(&first, &s.gw, origin, sent).await;
        assert_eq!(resp.status(), 403, "{origin:?} {sent:?}");
    }
    // bob's token is bob's: it does not disconnect alice.
    let bobs = disconnect_form_token(&bob, &s.gw).await;
    assert_eq!(
        post_disconnect(&first, &s.gw, Some(&ours), &bobs)
            .await
            .status(),
        403
    );
    let (status, _) = page(&first, &s.gw, "/auth/disconnect").await;
    assert_eq!(status, 200, "GET only shows the form");
    for b in [&first, &second] {
        assert_eq!(s.userinfo(b).await.0, 200);
    }

    let resp = post_disconnect(&first, &s.gw, Some(&ours), &token).await;
    assert_eq!(resp.status(), 200);
    let cleared = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().unwrap_or("").contains("Max-Age=0"));
    assert!(cleared, "the session cookie is cleared");
    let done = resp.text().await.expect("page");
    assert!(done.contains("Disconnected"), "{done}");
    assert!(
        done.contains(r#"href="https://www.spotify.com/account/apps/""#),
        "{done}"
    );
    // Both of alice's browsers are signed out, her assertions are refused; bob is untouched.
    for b in [&first, &second] {
        assert_eq!(s.userinfo(b).await.0, 401);
    }
    for a in &assertions {
        assert_eq!(s.egress_get_as(a, "/v1/me").await.status(), 401);
    }
    assert_eq!(s.userinfo(&bob).await.0, 200);
    assert_eq!(
        s.egress_get_as(&bob_assertion, "/v1/me").await.status(),
        200
    );
    // Disconnecting again needs a session.
    let resp = post_disconnect(&first, &s.gw, Some(&ours), &token).await;
    assert_ne!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_callers_disconnect_with_the_token_from_json() {
    let s = Stack::builder().app(App::Echo).start().await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    let (status, form) = via_public(&b, &s.gw, "/auth/disconnect").await;
    assert_eq!(status, 200);
    let token = form["csrf_token"].as_str().expect("token").to_string();
    let resp = b
        .post(format!("{}/auth/disconnect", s.gw.public_url()))
        .header("origin", s.gw.public_url())
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .expect("disconnect");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["disconnected"], true);
    assert_eq!(body["sessions_ended"], 1);
    assert_eq!(
        body["remove_access_at"],
        "https://www.spotify.com/account/apps/"
    );
    assert_eq!(s.userinfo(&b).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_on_one_replica_deletes_the_user_on_both_within_a_second() {
    let redis = RedisServer::start().await;
    let s = Stack::builder()
        .app(App::Echo)
        .more_gateways(1)
        .redis_store(&redis)
        .start()
        .await;
    let other = s.start_replica().await;
    // alice in two browsers, one signed in on each replica; bob on the first.
    let (first, second, bob) = (browser(), browser(), browser());
    login(&first, &s.gw, "alice", "/").await;
    login(&second, &other, "alice", "/").await;
    login(&bob, &s.gw, "bob", "/").await;
    let alice_assertions = [s.assertion(&first).await, s.assertion(&second).await];
    let bob_assertion = s.assertion(&bob).await;
    // Both replicas hold both of alice's sessions in memory.
    for gw in [&s.gw, &other] {
        for a in &alice_assertions {
            assert_eq!(egress_status(gw, a).await, 200);
        }
    }
    assert_eq!(redis.keys("sgw:sessions:*").await.len(), 3);

    let token = disconnect_form_token(&first, &s.gw).await;
    let resp = post_disconnect(&first, &s.gw, Some(&s.gw.public_url()), &token).await;
    assert_eq!(resp.status(), 200);
    let done = std::time::Instant::now();
    wait_until(
        done + Duration::from_secs(1),
        "the other replica to refuse both of alice's sessions",
        || async {
            let mut refused = 0;
            for a in &alice_assertions {
                match egress_status(&other, a).await {
                    401 => refused += 1,
                    status => assert_eq!(status, 200),
                }
            }
            refused == alice_assertions.len()
        },
    )
    .await;
    for a in &alice_assertions {
        assert_eq!(egress_status(&s.gw, a).await, 401);
    }
    // The second browser is signed out on both replicas.
    assert_eq!(via_public(&second, &other, "/auth/userinfo").await.0, 401);
    assert_eq!(via_public(&second, &s.gw, "/auth/userinfo").await.0, 401);
    // Nothing of alice is left in the store; bob's session is.
    assert_eq!(redis.keys("sgw:sessions:*").await.len(), 1);
    assert!(redis.keys("sgw:user_sessions:alice").await.is_empty());
    assert!(redis.keys("sgw:user_index:alice").await.is_empty());
    assert_eq!(
        redis.keys("sgw:user_index:account:*").await.len(),
        1,
        "only bob's account index"
    );
    for gw in [&s.gw, &other] {
        assert_eq!(egress_status(gw, &bob_assertion).await, 200);
    }
}

/// Rounds of the logout race per backend.
const ROUNDS: usize = 20;

/// Concurrent lookups per round, and how many start before the logout.
const LOOKUPS: usize = 40;

const BEFORE_LOGOUT: usize = 15;

/// `/auth/userinfo` with a cookie header (no jar: logout's clearing does not apply).
async fn userinfo_status(http: &reqwest::Client, gw: &Gateway, cookie: &str) -> u16 {
    http.get(format!("{}/auth/userinfo", gw.public_url()))
        .header("cookie", cookie)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// The cookie and the assertion of a session are refused everywhere.
async fn assert_ended(http: &reqwest::Client, gws: &[&Gateway], cookie: &str, assertion: &str) {
    for (i, gw) in gws.iter().enumerate() {
        assert_eq!(
            userinfo_status(http, gw, cookie).await,
            401,
            "replica {i}: the cookie still opens the session"
        );
        let app = http
            .get(format!("{}/app", gw.public_url()))
            .header("cookie", cookie)
            .send()
            .await
            .expect("app");
        assert_eq!(app.status(), 401, "replica {i}: the app was reached");
        assert_eq!(
            egress_status(gw, assertion).await,
            401,
            "replica {i}: egress acted for the user"
        );
    }
}

/// One round: log in on `gws[0]`, start lookups on every replica, sign out on `gws[0]` while
/// they run; after the logout answer and after every lookup is done, the session is ended.
async fn logout_race_round(s: &Stack, gws: &[&Gateway], round: usize) {
    let b = browser();
    let trip = login(&b, gws[0], "alice", "/").await;
    let cookie = trip.session_cookie();
    let (status, seen) = via_public(&b, gws[0], "/app").await;
    assert_eq!(status, 200, "{seen}");
    let assertion = seen["headers"]["x-gateway-user"]
        .as_str()
        .expect("assertion")
        .to_string();
    let lookup = |i: usize| {
        let http = s.http.clone();
        let url = format!("{}/auth/userinfo", gws[i % gws.len()].public_url());
        let cookie = cookie.clone();
        tokio::spawn(async move {
            let _ = http.get(url).header("cookie", cookie).send().await;
        })
    };
    let mut lookups: Vec<_> = (0..BEFORE_LOGOUT).map(lookup).collect();
    let logout = {
        let http = s.http.clone();
        let url = format!("{}/auth/logout", gws[0].public_url());
        let cookie = cookie.clone();
        tokio::spawn(async move { http.post(url).header("cookie", cookie).send().await })
    };
    lookups.extend((BEFORE_LOGOUT..LOOKUPS).map(lookup));
    let answer = logout.await.expect("task").expect("logout");
    assert_eq!(answer.status(), 200, "round {round}: logout");
    // On the replica that signed out: ended from its answer on.
    assert_ended(&s.http, &gws[..1], &cookie, &assertion).await;
    for l in lookups {
        l.await.expect("lookup task");
    }
    // Other replicas hear of it by pub/sub: within a second.
    let http = &s.http;
    wait_until(
        Duration::from_secs(1),
        format!("round {round}: every replica to refuse the ended session"),
        || async {
            for gw in gws {
                if userinfo_status(http, gw, &cookie).await != 401 {
                    return false;
                }
            }
            true
        },
    )
    .await;
    // And stays ended: no lookup that raced with the logout put it back.
    assert_ended(&s.http, gws, &cookie, &assertion).await;
}

async fn logout_race_on(store: &[(&str, &str)]) {
    let mut builder = Stack::builder().app(App::Echo);
    for (key, value) in store {
        builder = builder.set(key, *value);
    }
    let s = builder.start().await;
    for round in 0..ROUNDS {
        logout_race_round(&s, &[&s.gw], round).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ended_session_stays_ended_on_the_memory_store() {
    logout_race_on(&[("store.backend", "memory")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ended_session_stays_ended_on_the_file_store() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("store.redb").display().to_string();
    logout_race_on(&[("store.backend", "file"), ("store.path", &path)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ended_session_stays_ended_on_the_redis_store() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    logout_race_on(&[("store.backend", "redis"), ("store.url", &url)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ended_session_stays_ended_on_two_replicas() {
    let redis = RedisServer::start().await;
    let s = Stack::builder()
        .app(App::Echo)
        .more_gateways(1)
        .redis_store(&redis)
        .start()
        .await;
    let second = s.start_replica().await;
    for round in 0..ROUNDS {
        logout_race_round(&s, &[&s.gw, &second], round).await;
    }
}
