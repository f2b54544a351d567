//! Forward-auth through the real gateway: `/auth/check` as an ingress calls it (the ingress is
//! the test itself here, on loopback; tests/ingress.rs puts real nginx and Caddy in front),
//! the login returning to an absolute URL on an allowed host only, and `session.cookie_domain`.

mod common;

use common::*;
use reqwest::header::HeaderMap;
use serde_json::Value;

/// The host the tests' ingress serves, as listed in `forward_auth.allowed_hosts`.
const APP_HOST: &str = "app.test:8443";

/// A gateway with forward-auth on for [`APP_HOST`], believing loopback peers.
async fn stack() -> Stack {
    Stack::builder()
        .forward_auth(&[APP_HOST], &["127.0.0.1/32"])
        .app(App::Echo)
        .start()
        .await
}

/// A check as Traefik or Caddy sends it, for `GET https://{host}{uri}`.
fn check(client: &reqwest::Client, gw: &Gateway, host: &str, uri: &str) -> reqwest::RequestBuilder {
    client
        .get(format!("{}/auth/check", gw.public_url()))
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", host)
        .header("x-forwarded-uri", uri)
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// The `return_to` of a login URL.
fn return_to_of(login_url: &str) -> String {
    let url = reqwest::Url::parse(login_url).expect("login url");
    assert_eq!(url.path(), "/auth/login", "{login_url}");
    url.query_pairs()
        .find(|(k, _)| k == "return_to")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_browser_gets_200_with_the_identity_headers_the_app_would_get() {
    let s = stack().await;
    let browser = browser();
    login(&browser, &s.gw, "alice", "/").await;
    let resp = check(&browser, &s.gw, APP_HOST, "/reports?q=1")
        // Whatever the client or the ingress sent as identity counts for nothing.
        .header("x-spotify-user-id", "mallory")
        .header("x-gateway-user", "forged")
        .send()
        .await
        .expect("check");
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(header(&h, "x-spotify-user-id"), "alice");
    assert!(header(&h, "x-spotify-scopes").contains("user-read-private"));
    assert!(!header(&h, "x-request-id").is_empty());
    // The same identity the app behind the public listener receives, from the same code.
    let (_, seen) = via_public(&browser, &s.gw, "/app").await;
    assert_eq!(seen["headers"]["x-spotify-user-id"], "alice");
    assert_eq!(
        seen["headers"]["x-spotify-scopes"],
        header(&h, "x-spotify-scopes")
    );
    // The assertion works on the egress listener, as the app would use it.
    assert_eq!(
        egress_status(&s.gw, &header(&h, "x-gateway-user")).await,
        200
    );
    assert_eq!(egress_status(&s.gw, "forged").await, 401);
    // No session cookie was set or cleared: nothing changed.
    assert!(h.get("set-cookie").is_none(), "{h:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_session_a_browser_goes_to_login_and_comes_back_to_the_original_url() {
    let s = stack().await;
    let browser = browser();
    let resp = check(&browser, &s.gw, APP_HOST, "/reports?q=1&x=%2F")
        .header("accept", "text/html")
        .send()
        .await
        .expect("check");
    assert_eq!(resp.status(), 302);
    let to_login = location(&resp);
    assert!(
        to_login.starts_with(&format!("{}/auth/login?", s.gw.public_url())),
        "{to_login}"
    );
    let original = format!("https://{APP_HOST}/reports?q=1&x=%2F");
    assert_eq!(return_to_of(&to_login), original);
    let trip = login(&browser, &s.gw, "alice", &return_to_of(&to_login)).await;
    assert_eq!(trip.landed, original);
    let resp = check(&browser, &s.gw, APP_HOST, "/reports?q=1")
        .send()
        .await
        .expect("check");
    assert_eq!(resp.status(), 200);
    assert_eq!(header(resp.headers(), "x-spotify-user-id"), "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_callers_and_non_navigations_get_401_json_with_the_login_url() {
    let s = stack().await;
    let resp = check(&plain(), &s.gw, APP_HOST, "/api/items")
        .send()
        .await
        .expect("check");
    assert_eq!(resp.status(), 401);
    let login_header = header(resp.headers(), "x-login-url");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "unauthenticated");
    assert_eq!(body["login_url"], login_header.as_str());
    assert_eq!(
        return_to_of(&login_header),
        format!("https://{APP_HOST}/api/items")
    );
    // A browser's form POST cannot be replayed after a login: 401, not a redirect.
    let post = |method: &'static str| {
        plain()
            .get(format!("{}/auth/check", s.gw.public_url()))
            .header("x-forwarded-host", APP_HOST)
            .header("x-forwarded-uri", "/form")
            .header("x-forwarded-method", method)
            .header("accept", "text/html")
    };
    let resp = post("POST").send().await.expect("check");
    assert_eq!(resp.status(), 401);
    // Two methods: which one is meant is ambiguous, so nothing is decided on either.
    let resp = post("GET")
        .header("x-forwarded-method", "POST")
        .send()
        .await
        .expect("check");
    assert_eq!(resp.status(), 400);
    // nginx's auth_request spelling: X-Original-URI/-Method, the host in Host.
    let resp = plain()
        .get(format!("{}/auth/check", s.gw.public_url()))
        .header("host", APP_HOST)
        .header("x-original-uri", "/nginx?a=1")
        .header("x-original-method", "GET")
        .send()
        .await
        .expect("check");
    assert_eq!(resp.status(), 401, "{:?}", resp.headers());
    // No X-Forwarded-Proto: the gateway's own scheme (http here).
    assert_eq!(
        return_to_of(&header(resp.headers(), "x-login-url")),
        format!("http://{APP_HOST}/nginx?a=1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_ended_is_cleared_in_the_check_answer() {
    let s = stack().await;
    let browser = browser();
    let trip = login(&browser, &s.gw, "alice", "/").await;
    logout(&browser, &s.gw).await;
    // The old cookie, sent again (a browser that missed the sign-out).
    let resp = check(&plain(), &s.gw, APP_HOST, "/")
        .header("cookie", trip.session_cookie())
        .header("accept", "text/html")
        .send()
        .await
        .expect("check");
    assert_eq!(resp.status(), 302);
    let cleared = header(resp.headers(), "set-cookie");
    assert!(
        cleared.starts_with("spotify_gateway_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_spelling_of_the_forwarded_headers_leads_the_login_to_an_unlisted_host() {
    let s = stack().await;
    let browser = browser();
    login(&browser, &s.gw, "alice", "/").await;
    for host in [
        "evil.example",
        "EVIL.example",
        "app.test:8443@evil.example",
        "evil.example@app.test:8443",
        "app.test:8443\\@evil.example",
        "evil.example\\app.test:8443",
        "app.test.evil.example:8443",
        "app.test.:8443",
        "app.test",
        "app.test:443",
        "app.test:8444",
        "//evil.example",
        "%61pp.test:8443",
        "app.test:8443, evil.example",
        "app.test:8443/evil",
    ] {
        for client in [&plain(), &browser] {
            let resp = check(client, &s.gw, host, "/")
                .header("accept", "text/html")
                .send()
                .await
                .expect("check");
            assert_eq!(resp.status(), 403, "{host:?}");
            assert!(resp.headers().get("location").is_none(), "{host:?}");
            // Not even a signed-in user's identity goes to a host nobody listed.
            assert!(
                resp.headers().get("x-spotify-user-id").is_none(),
                "{host:?}"
            );
            let page = resp.text().await.expect("body");
            assert!(!page.contains("evil.example"), "{host:?}: {page}");
        }
    }
    // Mixed case is the same host, and is normalised.
    let resp = check(&plain(), &s.gw, "APP.Test:8443", "/x")
        .send()
        .await
        .expect("check");
    assert_eq!(resp.status(), 401);
    assert_eq!(
        return_to_of(&header(resp.headers(), "x-login-url")),
        "https://app.test:8443/x"
    );
    // A target that would read as another authority stays a path on the allowed host, or
    // is refused.
    for uri in [
        "//evil.example/x",
        "/\\evil.example",
        "https://evil.example/",
        "@evil.example",
    ] {
        let resp = check(&plain(), &s.gw, APP_HOST, uri)
            .send()
            .await
            .expect("check");
        let status = resp.status().as_u16();
        let login_url = header(resp.headers(), "x-login-url");
        match status {
            401 => {
                let back = reqwest::Url::parse(&return_to_of(&login_url)).expect("url");
                assert_eq!(back.host_str(), Some("app.test"), "{uri:?}");
            }
            _ => assert_eq!(status, 400, "{uri:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_returns_to_an_absolute_url_only_on_an_allowed_host() {
    let s = stack().await;
    for bad in [
        "https://evil.example/",
        "https://app.test:8443@evil.example/",
        "https://evil.example\\@app.test:8443/",
        "https://app.test:8443\\evil.example/",
        "https://app.test.:8443/",
        "https://app.test:8444/",
        "https:app.test:8443/",
        "//app.test:8443/",
        "javascript://app.test:8443/%0aalert(1)",
        "https://%61pp.test:8443/",
    ] {
        let resp = s
            .http
            .get(format!("{}/auth/login", s.gw.public_url()))
            .query(&[("return_to", bad)])
            .send()
            .await
            .expect("login");
        assert_eq!(resp.status(), 400, "{bad:?}");
        // Nothing started: no login cookie, no trip to Spotify.
        assert!(resp.headers().get("set-cookie").is_none(), "{bad:?}");
        assert!(resp.headers().get("location").is_none(), "{bad:?}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["error"], "invalid_return_to", "{bad:?}");
    }
    let trip = login(&browser(), &s.gw, "bob", "https://APP.test:8443/a/../b?c=1").await;
    assert_eq!(trip.landed, "https://app.test:8443/b?c=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_trusted_proxies_are_answered_and_forward_auth_is_off_by_default() {
    let s = Stack::builder()
        .forward_auth(&[APP_HOST], &["10.0.0.0/8", "fd00::/8"])
        .start()
        .await;
    let browser = browser();
    login(&browser, &s.gw, "alice", "/").await;
    let resp = check(&browser, &s.gw, APP_HOST, "/")
        .send()
        .await
        .expect("check");
    assert_eq!(resp.status(), 403);
    assert!(resp.headers().get("x-spotify-user-id").is_none());
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "untrusted_proxy");

    let off = Stack::builder().start().await;
    let resp = check(&plain(), &off.gw, APP_HOST, "/")
        .send()
        .await
        .expect("check");
    assert_eq!(resp.status(), 404);
    // Without forward-auth the login takes paths only.
    let resp = plain()
        .get(format!("{}/auth/login", off.gw.public_url()))
        .query(&[("return_to", format!("https://{APP_HOST}/"))])
        .send()
        .await
        .expect("login");
    assert_eq!(resp.status(), 400);
}

/// The `name=value` of the Set-Cookie named `name` among `headers`.
fn cookie_pair(headers: &HeaderMap, name: &str) -> (String, String) {
    let line = headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no Set-Cookie {name} in {headers:?}"))
        .to_string();
    let pair = line.split(';').next().unwrap_or_default().to_string();
    (pair, line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sign_in_covers_every_host_under_the_cookie_domain() {
    // The login's host is https://auth.gw.test; the test talks to the gateway's plain port
    // (the TLS would end at the ingress) and carries the cookies itself, as a browser on
    // https://*.gw.test would.
    const LOGIN: &str = "https://auth.gw.test/auth/callback";
    let s = Stack::builder()
        .mock_config(|m| m.redirect_uris.push(LOGIN.into()))
        .set("spotify.redirect_uri", LOGIN)
        .set("session.cookie_domain", "gw.test")
        .forward_auth(&["app.gw.test", "reports.gw.test"], &["127.0.0.1/32"])
        .start()
        .await;
    // No cookie jar, no redirects: the test carries the cookies.
    let http = &plain();
    let resp = http
        .get(format!("{}/auth/login", s.gw.public_url()))
        .query(&[("return_to", "https://reports.gw.test/q")])
        .send()
        .await
        .expect("login");
    assert_eq!(resp.status(), 302);
    // The login cookie stays on the login's host: still `__Host-`.
    let (login_cookie, line) = cookie_pair(resp.headers(), "__Host-spotify_gateway_session-login");
    assert!(!line.contains("Domain"), "{line}");
    let authorize = location(&resp);
    let resp = http
        .get(format!("{authorize}&mock_user=alice&mock_decision=approve"))
        .send()
        .await
        .expect("authorize");
    let callback = location(&resp);
    let callback = callback.replace("https://auth.gw.test", &s.gw.public_url());
    let resp = http
        .get(&callback)
        .header("cookie", &login_cookie)
        .send()
        .await
        .expect("callback");
    assert_eq!(resp.status(), 302, "{:?}", resp.text().await);
    assert_eq!(location(&resp), "https://reports.gw.test/q");
    let (session_cookie, line) = cookie_pair(resp.headers(), "__Secure-spotify_gateway_session");
    assert!(
        line.contains("; Domain=gw.test") && line.contains("; Secure") && line.contains("HttpOnly"),
        "{line}"
    );
    for host in ["app.gw.test", "reports.gw.test"] {
        let resp = check(http, &s.gw, host, "/")
            .header("cookie", &session_cookie)
            .send()
            .await
            .expect("check");
        assert_eq!(resp.status(), 200, "{host}");
        assert_eq!(
            header(resp.headers(), "x-spotify-user-id"),
            "alice",
            "{host}"
        );
    }
    let resp = http
        .post(format!("{}/auth/logout", s.gw.public_url()))
        .header("cookie", &session_cookie)
        .send()
        .await
        .expect("logout");
    let (_, cleared) = cookie_pair(resp.headers(), "__Secure-spotify_gateway_session");
    assert!(
        cleared.contains("Max-Age=0; Domain=gw.test"),
        "the clearing cookie names the same domain: {cleared}"
    );
    let resp = check(http, &s.gw, "app.gw.test", "/")
        .header("cookie", &session_cookie)
        .send()
        .await
        .expect("check");
    assert_eq!(resp.status(), 401);
}
