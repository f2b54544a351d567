//! What a login refuses, and that a refusal changes nothing: a `return_to` that would leave
//! the site, a callback with a forged, missing, reused or foreign state, login cookie or code,
//! an injected `error=`; and, at the callback, a user Spotify has not registered for a
//! development-mode app or whom `[access]` does not allow.
//!
//! The adversarial cases check refusal, no state change and no call to Spotify
//! (`common/snapshot.rs`).

mod common;

use common::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn return_to_never_leaves_the_site() {
    let s = watched_stack(Stack::builder()).await;
    let long = format!("/{}", "a".repeat(3000));
    // Decoded values (sent form-encoded).
    let decoded = [
        "https://evil.example/",
        "http://evil.example",
        "HTTPS://EVIL.EXAMPLE",
        "//evil.example",
        "///evil.example",
        "////evil.example/x",
        "/\\evil.example",
        "\\/evil.example",
        "/\\/evil.example",
        "\\\\evil.example",
        "https:evil.example",
        "https:/evil.example",
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "evil.example",
        " //evil.example",
        "\t//evil.example",
        "/\t/evil.example",
        "/.//evil.example",
        "/..//evil.example",
        "/a/../..//evil.example",
        "\u{FF0F}\u{FF0F}evil.example",
        "\u{2215}\u{2215}evil.example",
        "/\u{0085}/evil.example",
        "/ok\r\nSet-Cookie: x=1",
        "/ok\nLocation: https://evil.example",
        "/ok\u{0000}",
        long.as_str(),
    ];
    // Already on the wire (double encoding and the like), not encoded again.
    let wire = [
        "%2F%2Fevil.example",
        "%252F%252Fevil.example",
        "%5C%5Cevil.example",
        "/ok%0d%0aLocation:%20https://evil.example",
        "https%3A%2F%2Fevil.example",
    ];
    let queries: Vec<(String, String)> = decoded
        .iter()
        .map(|d| (format!("{d:?}"), urlencode(d)))
        .chain(wire.iter().map(|w| (format!("wire {w}"), w.to_string())))
        .collect();
    for (name, query) in &queries {
        let before = s.snapshot().await;
        let request = format!(
            "GET /auth/login?return_to={query} HTTP/1.1\r\nHost: gw\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        );
        let (status, answer) = raw_request(s.gw.ports.public, request.as_bytes()).await;
        assert_eq!(status, 400, "{name}: {answer}");
        let lower = answer.to_ascii_lowercase();
        assert!(!lower.contains("\r\nlocation:"), "{name}: {answer}");
        // No login started: no login cookie, no pending record to find later.
        assert!(!lower.contains("set-cookie"), "{name}: {answer}");
        assert!(answer.contains("invalid_return_to"), "{name}: {answer}");
        s.assert_untouched(&before, name).await;
    }

    // Odd but harmless values are kept as paths on this site, all the way to the redirect
    // after the callback.
    for value in [
        "/%2F%2Fevil.example",
        "/\u{FF0F}evil.example",
        "/\u{2028}//evil",
    ] {
        let b = browser();
        let trip = login(&b, &s.gw, "alice", value).await;
        let base = url::Url::parse("https://gateway.example/").expect("base");
        let landed = base.join(&trip.landed).expect("landed");
        assert_eq!(
            landed.origin(),
            base.origin(),
            "{value:?} → {}",
            trip.landed
        );
        assert!(
            trip.landed.starts_with('/') && !trip.landed.starts_with("//"),
            "{value:?} → {}",
            trip.landed
        );
    }
    // A browser without a session sent to //evil.example on the site is asked to log in
    // and come back to the site's root, not to evil.example.
    let (status, answer) = raw_request(
        s.gw.ports.public,
        b"GET //evil.example/x HTTP/1.1\r\nHost: gw\r\nAccept: text/html\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 302, "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("\r\nlocation: /auth/login?return_to=%2f\r\n"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_callback_attacks_are_refused_and_change_nothing() {
    let mut s = watched_stack(Stack::builder()).await;
    let (other_gw, _other_hits) = s.other_deployment().await;
    let victim = pending_login(&s.gw, "alice").await;
    // Another browser's login on the same gateway, and one on another deployment.
    let attacker = pending_login(&s.gw, "bob").await;
    let foreign = pending_login(&other_gw, "bob").await;
    // A real session cookie, to present where a login cookie belongs.
    let some_session = session_for(&s.gw, "bob").await;
    let no_state = victim
        .callback
        .replace(&format!("state={}", urlencode(&victim.state)), "");
    let callback_base = format!("{}/auth/callback", s.gw.public_url());

    // None of these consumes the victim's pending login: it completes afterwards.
    let cases: Vec<(&str, String, Option<String>)> = vec![
        (
            "forged state",
            format!("{callback_base}?state=forged-state&code={}", victim.code),
            Some(victim.login_cookie.clone()),
        ),
        (
            "missing state",
            no_state.clone(),
            Some(victim.login_cookie.clone()),
        ),
        (
            "callback without the pending-login cookie",
            victim.callback.clone(),
            None,
        ),
        (
            "state from another browser (its own login cookie)",
            victim.callback.clone(),
            Some(attacker.login_cookie.clone()),
        ),
        (
            "tampered login cookie",
            victim.callback.clone(),
            Some(tamper(&victim.login_cookie)),
        ),
        (
            "truncated login cookie",
            victim.callback.clone(),
            Some(victim.login_cookie[..victim.login_cookie.len() - 6].to_string()),
        ),
        (
            "session cookie presented as the login cookie",
            victim.callback.clone(),
            Some(some_session.clone()),
        ),
        (
            "login cookie and state from another deployment",
            format!(
                "{callback_base}?state={}&code={}",
                urlencode(&foreign.state),
                foreign.code
            ),
            Some(foreign.login_cookie.clone()),
        ),
        (
            "error=access_denied with a forged state",
            format!("{callback_base}?state=forged&error=access_denied"),
            Some(victim.login_cookie.clone()),
        ),
        (
            "oversized state",
            format!("{callback_base}?state={}&code=x", "s".repeat(16 * 1024)),
            Some(victim.login_cookie.clone()),
        ),
    ];
    for (name, url, cookie) in &cases {
        let before = s.snapshot().await;
        let resp = callback(url, cookie.as_deref(), "application/json").await;
        assert_eq!(resp.status(), 400, "{name}");
        assert!(!creates_session(&resp), "{name}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["error"], "invalid_state", "{name}: {body}");
        s.assert_untouched(&before, name).await;
    }
    let before = s.snapshot().await;
    let resp = plain()
        .post(&victim.callback)
        .header("cookie", format!("{LOGIN_COOKIE}={}", victim.login_cookie))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 405, "POST to the callback");
    assert!(!creates_session(&resp));
    s.assert_untouched(&before, "POST to the callback").await;

    // The victim's login was not spoiled by any of that.
    let cookie = complete(&victim).await;
    assert_eq!(s.userinfo_status(&cookie).await, 200);

    // Reused state: the completed callback, replayed with its own cookie.
    let before = s.snapshot().await;
    let resp = callback(
        &victim.callback,
        Some(&victim.login_cookie),
        "application/json",
    )
    .await;
    assert_eq!(resp.status(), 400, "reused state");
    assert!(!creates_session(&resp));
    s.assert_untouched(&before, "reused state").await;

    // Code replay under a fresh state: the attacker's own login cookie and state with the
    // victim's used code. The state is genuine, so the gateway redeems the code once;
    // Spotify refuses it and nothing else happens (no profile call, no session).
    let before = s.snapshot().await;
    let url = format!(
        "{callback_base}?state={}&code={}",
        urlencode(&attacker.state),
        victim.code
    );
    let resp = callback(&url, Some(&attacker.login_cookie), "application/json").await;
    assert_eq!(resp.status(), 400, "code replay");
    assert!(!creates_session(&resp));
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "invalid_code");
    let now = s.snapshot().await;
    assert_eq!(
        now.spotify["token_requests"]["authorization_code"],
        before.spotify["token_requests"]["authorization_code"]
            .as_u64()
            .expect("n")
            + 1,
        "the replayed code is redeemed once, and refused"
    );
    assert_eq!(now.spotify["api_requests"], before.spotify["api_requests"]);
    assert_eq!(now.logins_ok, before.logins_ok, "code replay");

    // error= injection, HTML and JSON: the provider's error is reduced to an RFC 6749 code
    // and escaped; the pending login is used up (it must start over), nothing reaches Spotify.
    for (name, accept) in [
        ("error= injection (HTML)", "text/html"),
        ("error= injection (JSON)", "application/json"),
    ] {
        let p = pending_login(&s.gw, "alice").await;
        let before = s.snapshot().await;
        let url = format!(
            "{callback_base}?state={}&error={}&error_description={}",
            urlencode(&p.state),
            urlencode("<script>alert(document.cookie)</script>\r\nSet-Cookie: x=1"),
            urlencode("<img src=x onerror=alert(1)>"),
        );
        let resp = callback(&url, Some(&p.login_cookie), accept).await;
        assert_eq!(resp.status(), 400, "{name}");
        assert!(!creates_session(&resp), "{name}");
        assert!(set_cookie(&resp, "x").is_none(), "{name}: header injection");
        if accept == "text/html" {
            let csp = resp.headers()["content-security-policy"]
                .to_str()
                .unwrap_or("");
            assert!(csp.contains("default-src 'none'"), "{name}: {csp}");
        }
        let body = resp.text().await.expect("body");
        for needle in ["<script", "<img", "onerror", "Set-Cookie"] {
            assert!(!body.contains(needle), "{name}: {needle} in {body}");
        }
        assert!(body.contains("scriptalertdocumentcookiescript"), "{body}");
        s.assert_untouched(&before, name).await;
    }

    // A genuine state with an empty code: refused without calling Spotify.
    let p = pending_login(&s.gw, "alice").await;
    let before = s.snapshot().await;
    let url = format!("{callback_base}?state={}&code=", urlencode(&p.state));
    let resp = callback(&url, Some(&p.login_cookie), "application/json").await;
    assert_eq!(resp.status(), 400, "empty code");
    assert!(!creates_session(&resp));
    s.assert_untouched(&before, "empty code").await;

    // Expired state. The login cookie lives as long as the pending record (LOGIN_TTL, 10
    // min); once the browser drops it the callback is the "without the pending-login cookie"
    // case above. A cookie kept past that finds no pending record: every store hides expired
    // values (tests/store_backends.rs). A restart of this memory-store gateway loses the
    // record the same way, which is what this case uses instead of waiting 10 minutes.
    let p = pending_login(&s.gw, "alice").await;
    s.gw.restart().await;
    let before = s.snapshot().await;
    let resp = callback(&p.callback, Some(&p.login_cookie), "application/json").await;
    assert_eq!(resp.status(), 400, "expired state");
    assert!(!creates_session(&resp));
    s.assert_untouched(&before, "expired state").await;
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
        s.metric("spotify_gateway_logins_total{app=\"default\",result=\"not_registered\"}")
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
        s.metric("spotify_gateway_logins_total{app=\"default\",result=\"not_allowed\"}")
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
