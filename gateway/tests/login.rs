//! User login (authorization code and PKCE), sessions, identity headers to the app, per-user
//! tokens on egress, refresh, and the file store: real gateway process, mock Spotify, an echo
//! app behind the public listener.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// The mock, the echo app and a gateway, with tokens that live `token_lifetime`.
fn setup(token_lifetime: Duration) -> StackBuilder {
    Stack::builder()
        .token_lifetime(token_lifetime)
        .app(App::Echo)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_code_login_end_to_end() {
    let s = setup(Duration::from_secs(3600)).start().await;
    let b = browser();
    let trip = login(&b, &s.gw, "alice", "/app?tab=1").await;
    assert_eq!(trip.landed, "/app?tab=1");
    assert!(trip.authorize_url.contains("response_type=code"));
    assert!(trip.authorize_url.contains("state="));
    assert!(!trip.authorize_url.contains("code_challenge"));
    let session_cookie = trip
        .set_cookies
        .iter()
        .find(|c| c.starts_with("spotify_gateway_session="))
        .expect("session cookie");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(session_cookie.contains(attr), "{session_cookie}");
    }
    assert!(
        !session_cookie.contains("Secure"),
        "plain http loopback: no Secure"
    );
    assert_eq!(token_requests(&s.mock, "authorization_code").await, 1);
    // The code exchange used client_secret_basic.
    let exchange = mock_requests(&s.mock)
        .await
        .into_iter()
        .find(|r| r["target"] == "token")
        .expect("token request");
    assert!(exchange["headers"]["authorization"]
        .as_str()
        .unwrap_or("")
        .starts_with("Basic "));

    // The app gets the identity; spoofed identity headers and the gateway's cookie do not pass.
    let session_pair = session_cookie.split(';').next().expect("name=value");
    let resp = reqwest::Client::new()
        .get(format!("{}/app", s.gw.public_url()))
        .header("x-spotify-user-id", "bob")
        .header("x-spotify-scopes", "everything")
        .header("x-gateway-user", "forged")
        .header("cookie", format!("theme=dark; {session_pair}"))
        .send()
        .await
        .expect("app");
    assert_eq!(resp.status(), 200);
    let seen: Value = resp.json().await.expect("json");
    assert_eq!(seen["headers"]["x-spotify-user-id"], "alice");
    let scopes = seen["headers"]["x-spotify-scopes"].as_str().unwrap_or("");
    assert!(scopes.contains("user-read-email"), "{scopes}");
    assert_ne!(seen["headers"]["x-gateway-user"], "forged");
    let cookies = seen["headers"]["cookie"].as_str().unwrap_or("");
    assert!(cookies.contains("theme=dark"), "{cookies}");
    assert!(!cookies.contains("spotify_gateway_session"), "{cookies}");

    let (status, info) = s.userinfo(&b).await;
    assert_eq!(status, 200);
    assert_eq!(info["user_id"], "alice");
    assert_eq!(info["display_name"], "Alice Andersson");
    assert!(info["token_expires_at"].as_u64().unwrap_or(0) > 0);
    let keys: Vec<_> = info.as_object().expect("object").keys().cloned().collect();
    assert_eq!(
        keys,
        [
            "account_id",
            "display_name",
            "reauth_by",
            "scopes",
            "session_expires_at",
            "token_expires_at",
            "user_id"
        ],
        "userinfo never carries a token"
    );

    // The assertion makes egress calls for alice.
    let assertion = s.assertion(&b).await;
    let me: Value = s
        .egress_get_as(&assertion, "/v1/me")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(me["id"], "alice");
    let playing = s
        .egress_get_as(&assertion, "/v1/me/player/currently-playing")
        .await;
    assert_eq!(playing.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pkce_login_sends_no_secret_and_rotates_refresh_tokens() {
    let s = setup(Duration::from_secs(3600))
        .set("spotify.flow", "pkce")
        .start()
        .await;
    let b = browser();
    let trip = login(&b, &s.gw, "bob", "/").await;
    assert!(trip.authorize_url.contains("code_challenge_method=S256"));
    assert!(trip.authorize_url.contains("code_challenge="));
    let exchange = mock_requests(&s.mock)
        .await
        .into_iter()
        .find(|r| r["target"] == "token")
        .expect("token request");
    assert!(
        exchange["headers"].get("authorization").is_none(),
        "PKCE sends no client secret: {exchange}"
    );
    let assertion = s.assertion(&b).await;

    // Two refreshes in a row: each uses the rotated refresh token of the one before.
    for round in 1..=2 {
        mock_post(&s.mock, "/__mock/expire?user=bob", None).await;
        let resp = s.egress_get_as(&assertion, "/v1/me").await;
        assert_eq!(resp.status(), 200, "round {round}");
        assert_eq!(token_requests(&s.mock, "refresh_token").await, round);
    }
    // Bob has nothing playing: 204 passes through as it is.
    let resp = s
        .egress_get_as(&assertion, "/v1/me/player/currently-playing")
        .await;
    assert_eq!(resp.status(), 204);
    assert!(resp.bytes().await.expect("body").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_session_browsers_are_sent_to_login_and_apis_get_401() {
    let s = setup(Duration::from_secs(3600)).start().await;
    let b = browser();
    let resp = b
        .get(format!("{}/app/page?x=1", s.gw.public_url()))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .expect("page");
    assert_eq!(resp.status(), 302);
    assert_eq!(
        location(&resp),
        "/auth/login?return_to=%2Fapp%2Fpage%3Fx%3D1"
    );

    let resp = b
        .get(format!("{}/api/items", s.gw.public_url()))
        .header("accept", "application/json")
        .send()
        .await
        .expect("api");
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "unauthenticated");
    let login_url = body["login_url"].as_str().expect("login url");
    assert!(
        login_url.ends_with("/auth/login?return_to=%2Fapi%2Fitems"),
        "{login_url}"
    );

    // Public paths pass without a session, with no identity.
    let (status, seen) = via_public(&b, &s.gw, "/public/logo.svg").await;
    assert_eq!(status, 200);
    assert!(seen["headers"].get("x-spotify-user-id").is_none());

    // A tampered cookie is no session.
    let resp = reqwest::Client::new()
        .get(format!("{}/auth/userinfo", s.gw.public_url()))
        .header("cookie", "spotify_gateway_session=AAAAtampered")
        .send()
        .await
        .expect("userinfo");
    assert_eq!(resp.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_callbacks_are_refused_and_create_nothing() {
    let s = setup(Duration::from_secs(3600)).start().await;
    let b = browser();
    // Start a login but stop at Spotify's answer.
    let resp = b
        .get(format!("{}/auth/login?return_to=/", s.gw.public_url()))
        .send()
        .await
        .expect("login");
    let authorize = location(&resp);
    let resp = b
        .get(format!("{authorize}&mock_user=alice&mock_decision=approve"))
        .send()
        .await
        .expect("authorize");
    let callback = location(&resp);
    let state = url::Url::parse(&callback)
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("state");
    let code_only = callback.replace(&format!("state={state}"), "");

    let cases = [
        (
            "forged state",
            callback.replace(&state, "forged-state-value"),
            &b,
        ),
        ("missing state", code_only, &b),
    ];
    for (name, url, client) in cases {
        let resp = client.get(&url).send().await.expect("callback");
        assert_eq!(resp.status(), 400, "{name}");
        assert!(resp.headers().get("set-cookie").is_none(), "{name}");
    }
    // Another browser (no login cookie) with the real callback URL.
    let other = browser();
    let resp = other.get(&callback).send().await.expect("callback");
    assert_eq!(resp.status(), 400, "callback from another browser");
    assert_eq!(s.userinfo(&other).await.0, 401);
    assert_eq!(
        token_requests(&s.mock, "authorization_code").await,
        0,
        "no bad callback reached the token endpoint"
    );

    // The real callback works once; a replay is refused.
    let resp = b.get(&callback).send().await.expect("callback");
    assert_eq!(resp.status(), 302);
    assert_eq!(s.userinfo(&b).await.0, 200);
    let replay = b.get(&callback).send().await.expect("replay");
    assert_eq!(replay.status(), 400, "replayed callback");
    assert_eq!(token_requests(&s.mock, "authorization_code").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_consent_gives_a_clear_page() {
    let s = setup(Duration::from_secs(3600)).start().await;
    let b = browser();
    let resp = b
        .get(format!("{}/auth/login", s.gw.public_url()))
        .send()
        .await
        .expect("login");
    let resp = b
        .get(format!(
            "{}&mock_user=alice&mock_decision=deny",
            location(&resp)
        ))
        .send()
        .await
        .expect("authorize");
    let callback = location(&resp);
    assert!(callback.contains("error=access_denied"), "{callback}");
    let resp = b
        .get(&callback)
        .header("accept", "text/html")
        .send()
        .await
        .expect("callback");
    assert_eq!(resp.status(), 403);
    let page = resp.text().await.expect("page");
    assert!(page.contains("Access denied"), "{page}");
    assert!(page.contains("/auth/login"));
    assert_eq!(s.userinfo(&b).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_redirects_are_refused_at_login() {
    let s = setup(Duration::from_secs(3600)).start().await;
    for bad in [
        "https://evil.example/",
        "//evil.example",
        "/\\evil.example",
        "https:evil.example",
        "/ok\r\nSet-Cookie: x=1",
    ] {
        let resp = browser()
            .get(format!("{}/auth/login", s.gw.public_url()))
            .query(&[("return_to", bad)])
            .send()
            .await
            .expect("login");
        assert_eq!(resp.status(), 400, "{bad:?}");
        assert!(resp.headers().get("location").is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_calls_with_a_stale_token_cause_one_refresh() {
    // 60 s tokens: inside the last fifth (12 s) the gateway refreshes before use. The token
    // the refresh brings is fresh for 48 s, so however long the burst takes on a loaded
    // machine, no call finds it stale again.
    let s = setup(Duration::from_secs(60)).start().await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    let assertion = s.assertion(&b).await;
    // Stale by the gateway's clock (moved forward), not yet expired at Spotify.
    s.gw.advance_clock(Duration::from_secs(50)).await;
    let calls = (0..100).map(|_| s.egress_get_as(&assertion, "/v1/me"));
    let statuses: Vec<u16> = futures::future::join_all(calls)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(token_requests(&s.mock, "refresh_token").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spotify_401_refreshes_and_retries_once() {
    let s = setup(Duration::from_secs(3600)).start().await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    let assertion = s.assertion(&b).await;
    mock_post(&s.mock, "/__mock/reset", None).await;
    mock_post(&s.mock, "/__mock/expire?user=alice", None).await;
    let resp = s.egress_get_as(&assertion, "/v1/me").await;
    assert_eq!(resp.status(), 200);
    let stats = mock_stats(&s.mock).await;
    assert_eq!(stats["token_requests"]["refresh_token"], 1);
    assert_eq!(stats["api_requests"], 2, "the refused call and its retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_refresh_token_ends_the_session() {
    let s = setup(Duration::from_secs(3600)).start().await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    let assertion = s.assertion(&b).await;
    mock_post(&s.mock, "/__mock/revoke?user=alice", None).await;
    let resp = s.egress_get_as(&assertion, "/v1/me").await;
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["reason"], "SESSION_ENDED");
    assert!(body["error"]["login_url"]
        .as_str()
        .unwrap_or("")
        .ends_with("/auth/login"));
    assert_eq!(s.userinfo(&b).await.0, 401, "the session is gone");
    // Later calls do not try to refresh again.
    assert_eq!(s.egress_get_as(&assertion, "/v1/me").await.status(), 401);
    assert_eq!(token_requests(&s.mock, "refresh_token").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_outage_keeps_the_session() {
    let s = setup(Duration::from_secs(3600)).start().await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    let assertion = s.assertion(&b).await;
    mock_post(
        &s.mock,
        "/__mock/fault",
        Some(json!({"target": "token", "status": 503, "times": 1})),
    )
    .await;
    mock_post(&s.mock, "/__mock/expire?user=alice", None).await;
    let resp = s.egress_get_as(&assertion, "/v1/me").await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(s.userinfo(&b).await.0, 200, "session kept");
    // Spotify is back: the same assertion works again once the failed refresh's hold (the
    // per-session backoff, 1 s after a first failure) has passed.
    s.gw.wait_until(
        Duration::from_secs(3),
        "the same assertion to work again",
        || async { s.egress_get_as(&assertion, "/v1/me").await.status() == 200 },
    )
    .await;
    assert_eq!(s.egress_get_as(&assertion, "/v1/me").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_ends_the_session_everywhere() {
    let s = setup(Duration::from_secs(3600)).start().await;
    let b = browser();
    let trip = login(&b, &s.gw, "alice", "/").await;
    let assertion = s.assertion(&b).await;
    let old_cookie = trip.session_cookie();

    let resp = logout(&b, &s.gw).await;
    let cleared = resp.headers()["set-cookie"].to_str().unwrap_or("");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(s.userinfo(&b).await.0, 401);

    // The old cookie, replayed, and the old assertion are both dead.
    let resp = reqwest::Client::new()
        .get(format!("{}/auth/userinfo", s.gw.public_url()))
        .header("cookie", &old_cookie)
        .send()
        .await
        .expect("userinfo");
    assert_eq!(resp.status(), 401);
    let resp = s.egress_get_as(&assertion, "/v1/me").await;
    assert_eq!(resp.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_headers_on_egress() {
    let s = setup(Duration::from_secs(3600)).start().await;
    // Forged assertion: refused, nothing reaches Spotify.
    let resp = s
        .egress_get_as("eyJhbGciOiJIUzI1NiJ9.e30.forged", "/v1/me")
        .await;
    assert_eq!(resp.status(), 401);
    // A plain user id is not trusted by default.
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/me", s.gw.egress_url()))
        .header("x-spotify-user-id", "alice")
        .send()
        .await
        .expect("egress");
    assert_eq!(resp.status(), 401);
    assert_eq!(mock_stats(&s.mock).await["api_requests"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_user_header_mode_finds_the_users_session() {
    let s = setup(Duration::from_secs(3600))
        .set("egress.trust_user_header", true)
        .start()
        .await;
    let b = browser();
    login(&b, &s.gw, "bob", "/").await;
    let as_user = |user: &'static str| {
        reqwest::Client::new()
            .get(format!("{}/v1/me", s.gw.egress_url()))
            .header("x-spotify-user-id", user)
            .send()
    };
    let resp = as_user("bob").await.expect("egress");
    assert_eq!(resp.status(), 200);
    let me: Value = resp.json().await.expect("json");
    assert_eq!(me["id"], "bob");
    // A user without a session gets the login answer, not the app token (and the store's
    // user index is read: the counter below exists from here on).
    assert_eq!(as_user("alice").await.expect("egress").status(), 401);
    // Hot sessions are found without reading the store on every call.
    const STORE_GETS: &str =
        r#"spotify_gateway_store_operations_total{app="default",backend="memory",op="get"}"#;
    let store_gets = || async {
        metric_value(&s.gw, STORE_GETS)
            .await
            .expect("store gets in /metrics")
    };
    let before = store_gets().await;
    for _ in 0..20 {
        assert_eq!(as_user("bob").await.expect("egress").status(), 200);
    }
    assert_eq!(
        store_gets().await,
        before,
        "the store was read for a hot session"
    );
    // After bob signs out, his id finds nothing (the memory of his session goes too).
    logout(&b, &s.gw).await;
    assert_eq!(as_user("bob").await.expect("egress").status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_keeps_sessions_across_restarts_and_holds_no_clear_tokens() {
    let dir = tempfile::tempdir().expect("tmp");
    let store_path = dir.path().join("store.redb");
    let s = setup(Duration::from_secs(3600))
        .set("store.backend", "file")
        .set("store.path", store_path.display().to_string())
        .start()
        .await;
    let Stack { mock, mut gw, .. } = s;
    let b = browser();
    login(&b, &gw, "alice", "/").await;
    let (_, seen) = via_public(&b, &gw, "/app").await;
    let assertion = seen["headers"]["x-gateway-user"]
        .as_str()
        .expect("assertion")
        .to_string();
    let egress = |gw_url: String, a: String| async move {
        reqwest::Client::new()
            .get(format!("{gw_url}/v1/me"))
            .header("x-gateway-user", a)
            .send()
            .await
            .expect("egress")
            .status()
    };
    assert_eq!(egress(gw.egress_url(), assertion.clone()).await, 200);

    gw.restart().await;
    assert_eq!(
        via_public(&b, &gw, "/auth/userinfo").await.0,
        200,
        "session survived"
    );
    assert_eq!(egress(gw.egress_url(), assertion.clone()).await, 200);
    // A refresh after the restart: the stored refresh token still works, and the gateway's
    // request to Spotify shows us that token.
    mock_post(&mock, "/__mock/expire?user=alice", None).await;
    assert_eq!(egress(gw.egress_url(), assertion.clone()).await, 200);
    let refresh_tokens: Vec<String> = mock_requests(&mock)
        .await
        .into_iter()
        .filter(|r| r["target"] == "token")
        .filter_map(|r| r["body"].as_str().map(str::to_string))
        .flat_map(|body| {
            url::form_urlencoded::parse(body.as_bytes())
                .filter(|(k, _)| k == "refresh_token")
                .map(|(_, v)| v.into_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(refresh_tokens.len(), 1, "one refresh");

    // The access token the gateway used is nowhere in the file, nor the user's name.
    let used = mock_requests(&mock)
        .await
        .into_iter()
        .filter(|r| r["target"] == "api")
        .filter_map(|r| r["headers"]["authorization"].as_str().map(str::to_string))
        .collect::<Vec<_>>();
    assert!(!used.is_empty());
    let file = std::fs::read(&store_path).expect("store file");
    let text = String::from_utf8_lossy(&file);
    for auth in used {
        let token = auth.trim_start_matches("Bearer ");
        assert!(
            !text.contains(token),
            "clear-text access token in the store file"
        );
    }
    for token in &refresh_tokens {
        assert!(
            !text.contains(token.as_str()),
            "clear-text refresh token in the store file"
        );
    }
    assert!(!text.contains("Alice Andersson"));
}
