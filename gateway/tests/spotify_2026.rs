//! The gateway against Spotify as it is in 2026 (the mock follows it): `account_id` end to
//! end, refresh tokens that end (re-consent before the deadline, the deadline itself),
//! development-mode users who are not registered, who may sign in (`[access]`), a user who
//! disconnects, and the 2026 paths passing untouched.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::*;
use serde_json::{json, Value};

/// The claims of an assertion (read, not verified: the gateway verifies them).
fn claims_of(assertion: &str) -> Value {
    let payload = assertion.split('.').nth(1).expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("claims")
}

/// alice's `account_id` as Spotify (the mock) reports it.
async fn account_id_at_spotify(s: &Stack, assertion: &str) -> String {
    let me: Value = s
        .egress_get_as(assertion, "/v1/me")
        .await
        .json()
        .await
        .expect("json");
    me["account_id"].as_str().expect("account_id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_id_reaches_the_app_the_assertion_and_userinfo_and_names_a_user_on_egress() {
    let s = Stack::builder()
        .app(App::Echo)
        .set("egress.trust_user_header", true)
        .start()
        .await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    let assertion = s.assertion(&b).await;
    let account = account_id_at_spotify(&s, &assertion).await;
    assert_ne!(account, "alice");

    // To the app: the gateway's value, never the client's.
    let resp = b
        .get(format!("{}/app", s.gw.public_url()))
        .header("x-spotify-account-id", "acc-SPOOFED")
        .send()
        .await
        .expect("app");
    let seen: Value = resp.json().await.expect("json");
    assert_eq!(seen["headers"]["x-spotify-account-id"], account.as_str());
    assert_eq!(seen["headers"]["x-spotify-user-id"], "alice");
    let claims = claims_of(
        seen["headers"]["x-gateway-user"]
            .as_str()
            .expect("assertion"),
    );
    assert_eq!(claims["account_id"], account.as_str());
    assert_eq!(claims["sub"], "alice");
    let (status, info) = s.userinfo(&b).await;
    assert_eq!(status, 200);
    assert_eq!(info["account_id"], account.as_str());

    // Trusted-header mode: the account id names alice, in either header.
    for header in ["x-spotify-account-id", "x-spotify-user-id"] {
        let resp = s
            .http
            .get(format!("{}/v1/me", s.gw.egress_url()))
            .header(header, &account)
            .send()
            .await
            .expect("egress");
        assert_eq!(resp.status(), 200, "{header}");
        let me: Value = resp.json().await.expect("json");
        assert_eq!(me["id"], "alice", "{header}");
        // Neither header travels on to Spotify.
        let sent = s.last_api_request().await;
        assert!(sent["headers"].get("x-spotify-account-id").is_none());
        assert!(sent["headers"].get("x-spotify-user-id").is_none());
    }
    let resp = s
        .http
        .get(format!("{}/v1/me", s.gw.egress_url()))
        .header("x-spotify-account-id", "acc-nobody")
        .send()
        .await
        .expect("egress");
    assert_eq!(resp.status(), 401, "an account id with no session");
}

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
        std::time::Duration::from_secs(10),
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

/// A browser-like client whose every request asks for a page.
fn page_browser() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "accept",
        reqwest::header::HeaderValue::from_static("text/html"),
    );
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .expect("client")
}

/// `POST /__mock/app` with `change`.
async fn mock_app(s: &Stack, change: Value) {
    mock_post(&s.mock, "/__mock/app", Some(change)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_user_s_login_ends_on_a_page_that_says_what_the_owner_must_do() {
    let s = Stack::builder().app(App::Echo).start().await;
    // carol is not registered in the (development-mode) app's dashboard.
    let b = page_browser();
    let (resp, _, _) = login_callback(&b, &s.gw, "carol", "/").await;
    assert_eq!(resp.status(), 403);
    let cookies: Vec<String> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        !cookies
            .iter()
            .any(|c| c.starts_with("spotify_gateway_session=") && !c.contains("Max-Age=0")),
        "no session cookie: {cookies:?}"
    );
    let page = resp.text().await.expect("page");
    assert!(page.contains("not enabled for this app"), "{page}");
    assert!(page.contains("developer dashboard"), "{page}");
    assert!(page.contains("at most 5"), "{page}");
    assert!(matches!(s.userinfo(&b).await.0, 302 | 401), "no session");
    assert_eq!(
        s.metric("spotify_gateway_logins_total{result=\"not_registered\"}")
            .await,
        1.0
    );
    // An API client gets the same as JSON.
    let (resp, _, _) = login_callback(&browser(), &s.gw, "carol", "/").await;
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "not_registered");

    // Once the owner registers her, she signs in; if they take her off again, Spotify's 403
    // passes through the egress with its body.
    mock_app(&s, json!({"registered": ["alice", "bob", "carol"]})).await;
    let b = browser();
    login(&b, &s.gw, "carol", "/").await;
    let assertion = s.assertion(&b).await;
    assert_eq!(s.egress_get_as(&assertion, "/v1/me").await.status(), 200);
    mock_app(&s, json!({"registered": ["alice", "bob"]})).await;
    let resp = s.egress_get_as(&assertion, "/v1/me").await;
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(
        body,
        json!({"error": {"status": 403, "message": "User not registered in the Developer Dashboard"}})
    );
    assert_eq!(s.userinfo(&b).await.0, 200, "a 403 ends nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_lists_refuse_other_users_and_products_at_the_callback() {
    let bob_account = mock_spotify::account_id_of("bob").expect("bob");
    let s = Stack::builder()
        .app(App::Echo)
        .edit(move |doc| {
            let mut access = toml_edit::Table::new();
            access["allowed_users"] =
                toml_edit::value(toml_edit::Array::from_iter(["alice", bob_account]));
            doc["access"] = toml_edit::Item::Table(access);
        })
        .start()
        .await;
    mock_app(&s, json!({"registered": ["alice", "bob", "carol"]})).await;
    for user in ["alice", "bob"] {
        let b = browser();
        login(&b, &s.gw, user, "/").await;
        assert_eq!(s.userinfo(&b).await.0, 200, "{user}");
    }
    let b = page_browser();
    let (resp, _, _) = login_callback(&b, &s.gw, "carol", "/").await;
    assert_eq!(resp.status(), 403);
    let page = resp.text().await.expect("page");
    assert!(page.contains("Not allowed"), "{page}");
    assert!(matches!(s.userinfo(&b).await.0, 302 | 401), "no session");
    assert_eq!(
        s.metric("spotify_gateway_logins_total{result=\"not_allowed\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_products_admits_premium_only() {
    let s = Stack::builder()
        .app(App::Echo)
        // Spotify tells the product to extended-quota apps only (development_mode.rs).
        .mock_config(|c| c.mode = mock_spotify::AppMode::ExtendedQuota)
        .edit(|doc| {
            let mut access = toml_edit::Table::new();
            access["allowed_products"] = toml_edit::value(toml_edit::Array::from_iter(["premium"]));
            doc["access"] = toml_edit::Item::Table(access);
        })
        .start()
        .await;
    let alice = browser();
    login(&alice, &s.gw, "alice", "/").await;
    assert_eq!(s.userinfo(&alice).await.0, 200, "alice has premium");
    let (resp, _, _) = login_callback(&browser(), &s.gw, "bob", "/").await;
    assert_eq!(resp.status(), 403, "bob has free");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "not_allowed");
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

/// Sessions in Redis under the gateway's prefix, and alice's index.
async fn redis_keys(url: &str, pattern: &str) -> Vec<String> {
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut conn)
        .await
        .expect("keys")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_on_one_replica_deletes_the_user_on_both_within_a_second() {
    let redis = RedisServer::start().await;
    let s = Stack::builder()
        .app(App::Echo)
        .more_gateways(1)
        .set("store.backend", "redis")
        .set("store.url", redis.url())
        .start()
        .await;
    let mut ports = s.more_ports[0];
    ports.app = s.ports.app;
    let other = Gateway::start(ports, &s.config_for(ports)).await;
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
    assert_eq!(redis_keys(&redis.url(), "sgw:sessions:*").await.len(), 3);

    let token = disconnect_form_token(&first, &s.gw).await;
    let resp = post_disconnect(&first, &s.gw, Some(&s.gw.public_url()), &token).await;
    assert_eq!(resp.status(), 200);
    let done = std::time::Instant::now();
    wait_until(
        done + std::time::Duration::from_secs(1),
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
    assert_eq!(redis_keys(&redis.url(), "sgw:sessions:*").await.len(), 1);
    assert!(redis_keys(&redis.url(), "sgw:user_sessions:alice")
        .await
        .is_empty());
    assert!(redis_keys(&redis.url(), "sgw:user_index:alice")
        .await
        .is_empty());
    assert_eq!(
        redis_keys(&redis.url(), "sgw:user_index:account:*")
            .await
            .len(),
        1,
        "only bob's account index"
    );
    for gw in [&s.gw, &other] {
        assert_eq!(egress_status(gw, &bob_assertion).await, 200);
    }
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
