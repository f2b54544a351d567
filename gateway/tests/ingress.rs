//! The gateway behind real ingresses, as forward-auth: nginx with `auth_request` and Caddy with
//! `forward_auth`, each in front of the echo app, with the configs of docs/forward-auth.md
//! (`common::ingress`). A cookie-keeping client goes through the whole flow
//! — first visit, login at the mock, back to the original URL on the app with the identity
//! headers, sign-out — and tries spoofed identity headers, a forged forwarded host and an
//! unlisted host.

mod common;

use common::*;
use serde_json::Value;

/// The gateway (forward-auth for the ingress's host), the echo app, and `kind` in front.
async fn behind(kind: IngressKind) -> (Stack, Ingress) {
    let port = Ingress::port();
    let s = Stack::builder()
        .forward_auth(&[&format!("127.0.0.1:{port}")], &["127.0.0.1/32"])
        .app(App::Echo)
        .start()
        .await;
    let ingress = Ingress::start(kind, port, s.ports.public, s.ports.app).await;
    (s, ingress)
}

/// A page of the app through the ingress, as a browser asks for it.
async fn visit(browser: &reqwest::Client, url: &str) -> reqwest::Response {
    browser
        .get(url)
        .header("accept", "text/html")
        .send()
        .await
        .expect("ingress answers")
}

fn return_to_of(login_url: &str) -> String {
    reqwest::Url::parse(login_url)
        .expect("login url")
        .query_pairs()
        .find(|(k, _)| k == "return_to")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

async fn whole_flow(kind: IngressKind) {
    let (s, ingress) = behind(kind).await;
    let browser = browser();
    let original = format!("{}/reports/weekly?x=1&y=%2F", ingress.url());

    // First visit: sent to the gateway's login, which will bring the browser back here.
    let resp = visit(&browser, &original).await;
    assert_eq!(resp.status(), 302, "{kind:?}: {}", ingress.log());
    let to_login = location(&resp);
    assert!(
        to_login.starts_with(&format!("{}/auth/login?", s.gw.public_url())),
        "{kind:?}: {to_login}"
    );
    assert_eq!(return_to_of(&to_login), original, "{kind:?}");

    // The login at the mock, and back to the original URL.
    let trip = login_from(&browser, &to_login, "alice").await;
    assert_eq!(trip.landed, original, "{kind:?}");
    let resp = visit(&browser, &trip.landed).await;
    assert_eq!(resp.status(), 200, "{kind:?}: {}", ingress.log());
    let seen: Value = resp.json().await.expect("echo");
    assert_eq!(seen["path"], "/reports/weekly?x=1&y=%2F", "{kind:?}");
    let headers = &seen["headers"];
    assert_eq!(headers["x-spotify-user-id"], "alice", "{kind:?}: {seen}");
    assert!(
        headers["x-spotify-scopes"]
            .as_str()
            .is_some_and(|s| s.contains("user-read-private")),
        "{kind:?}: {seen}"
    );
    let assertion = headers["x-gateway-user"].as_str().expect("assertion");
    assert_eq!(egress_status(&s.gw, assertion).await, 200, "{kind:?}");

    // Identity headers the client made up are replaced, look-alikes dropped (straight to the
    // app, the look-alike does arrive: the client sends it).
    let direct: Value = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/", s.ports.app))
        .header("X_Spotify_User_Id", "mallory")
        .send()
        .await
        .expect("app")
        .json()
        .await
        .expect("echo");
    assert_eq!(direct["headers"]["x_spotify_user_id"], "mallory");
    let resp = browser
        .get(&original)
        .header("x-spotify-user-id", "mallory")
        .header("X_Spotify_User_Id", "mallory")
        .header("x-spotify-scopes", "everything")
        .header("x-gateway-user", "forged")
        .send()
        .await
        .expect("ingress");
    assert_eq!(resp.status(), 200, "{kind:?}");
    let seen: Value = resp.json().await.expect("echo");
    assert_eq!(
        seen["headers"]["x-spotify-user-id"], "alice",
        "{kind:?}: {seen}"
    );
    assert_ne!(
        seen["headers"]["x-spotify-scopes"], "everything",
        "{kind:?}"
    );
    assert_eq!(seen["headers"]["x-gateway-user"], assertion, "{kind:?}");
    let text = seen.to_string();
    assert!(
        !text.contains("mallory") && !text.contains("forged"),
        "{kind:?}: {seen}"
    );

    // Sign-out at the gateway: the next visit goes to the login again.
    logout(&browser, &s.gw).await;
    let resp = visit(&browser, &original).await;
    assert_eq!(resp.status(), 302, "{kind:?}");
    assert_eq!(return_to_of(&location(&resp)), original, "{kind:?}");
    assert_eq!(egress_status(&s.gw, assertion).await, 401, "{kind:?}");

    // A browser that still sends the ended session's cookie: the ingress passes on the
    // gateway's Set-Cookie that clears it, with the redirect.
    let stale = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(&original)
        .header("accept", "text/html")
        .header("cookie", trip.session_cookie())
        .send()
        .await
        .expect("ingress");
    assert_eq!(stale.status(), 302, "{kind:?}");
    let cleared = stale
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        cleared.starts_with("spotify_gateway_session=;") && cleared.contains("Max-Age=0"),
        "{kind:?}: {cleared:?}"
    );
}

async fn forged_and_unlisted_hosts(kind: IngressKind) {
    let (s, ingress) = behind(kind).await;
    let browser = browser();
    // A client's own forwarded headers are not what the gateway hears: the login still
    // returns to the ingress's host.
    let resp = browser
        .get(format!("{}/page", ingress.url()))
        .header("accept", "text/html")
        .header("x-forwarded-host", "evil.example")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-uri", "/evil")
        .header("x-original-uri", "/evil")
        .send()
        .await
        .expect("ingress");
    assert_eq!(resp.status(), 302, "{kind:?}: {}", ingress.log());
    assert_eq!(
        return_to_of(&location(&resp)),
        format!("{}/page", ingress.url()),
        "{kind:?}"
    );

    // A host nobody listed (the ingress serves any Host): refused, and nowhere to go.
    let login = login(&browser, &s.gw, "alice", "/").await;
    assert!(!login.landed.is_empty());
    for host in [
        "evil.example",
        format!("evil.example:{}", ingress.port).as_str(),
    ] {
        for accept in ["text/html", "application/json"] {
            let resp = browser
                .get(format!("{}/page", ingress.url()))
                .header("host", host)
                .header("accept", accept)
                .send()
                .await
                .expect("ingress");
            assert_eq!(resp.status(), 403, "{kind:?} {host}: {}", ingress.log());
            assert!(resp.headers().get("location").is_none(), "{kind:?} {host}");
            let body = resp.text().await.unwrap_or_default();
            assert!(!body.contains("alice"), "{kind:?} {host}: {body}");
        }
    }
    // The same signed-in browser on the listed host is let through.
    let resp = visit(&browser, &format!("{}/page", ingress.url())).await;
    assert_eq!(resp.status(), 200, "{kind:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_whole_flow() {
    whole_flow(IngressKind::Nginx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_refuses_forged_and_unlisted_hosts() {
    forged_and_unlisted_hosts(IngressKind::Nginx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_forward_auth_whole_flow() {
    whole_flow(IngressKind::Caddy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_forward_auth_refuses_forged_and_unlisted_hosts() {
    forged_and_unlisted_hosts(IngressKind::Caddy).await;
}
