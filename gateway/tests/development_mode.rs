//! The gateway in front of a development-mode app, the mode every new Spotify app is in since
//! March 2026 (issue 28), and in front of an extended-quota one: `/v1/me`'s fields,
//! `[access] allowed_products` (refused with the reason when Spotify withholds the product),
//! Spotify's 400s and 403s passed through unchanged, `check-config`'s warning, and the demo's
//! sample app calling nothing development mode removed.

mod common;

use common::*;
use mock_spotify::AppMode;
use serde_json::{json, Value};

/// A stack whose mock app is in `mode`, with `[access] allowed_products` when `products` is
/// not empty.
async fn stack(mode: AppMode, products: &'static [&'static str]) -> Stack {
    let mut builder = Stack::builder()
        .app(App::Echo)
        .mock_config(move |c| c.mode = mode);
    if !products.is_empty() {
        builder = builder.edit(move |doc| {
            let mut access = toml_edit::Table::new();
            access["allowed_products"] =
                toml_edit::value(toml_edit::Array::from_iter(products.iter().copied()));
            doc["access"] = toml_edit::Item::Table(access);
        });
    }
    builder.start().await
}

/// `/v1/me` through the egress for `user`, signed in on `s`.
async fn me(s: &Stack, user: &str) -> Value {
    let b = browser();
    login(&b, &s.gw, user, "/").await;
    let assertion = s.assertion(&b).await;
    let resp = s.egress_get_as(&assertion, "/v1/me").await;
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn me_carries_what_the_app_mode_allows() {
    let s = stack(AppMode::Development, &[]).await;
    let alice = me(&s, "alice").await;
    assert_eq!(alice["id"], "alice");
    assert!(alice["account_id"].is_string());
    for field in [
        "country",
        "email",
        "explicit_content",
        "followers",
        "product",
    ] {
        assert!(alice.get(field).is_none(), "{field}: {alice}");
    }

    let s = stack(AppMode::ExtendedQuota, &[]).await;
    let alice = me(&s, "alice").await;
    assert_eq!(alice["email"], "alice@example.com");
    assert_eq!(alice["country"], "SE");
    assert_eq!(alice["product"], "premium");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_products_in_development_mode_refuses_everyone_and_says_why() {
    let s = stack(AppMode::Development, &["premium"]).await;
    // alice has premium, but Spotify no longer says so to this app.
    let (resp, _, _) = login_callback(&page_browser(), &s.gw, "alice", "/").await;
    assert_eq!(resp.status(), 403);
    let page = resp.text().await.expect("page");
    assert!(page.contains("withholds the subscription"), "{page}");
    assert!(page.contains("development mode"), "{page}");
    assert!(page.contains("allowed_products"), "{page}");
    assert!(page.contains("extended"), "{page}");
    let b = browser();
    let (resp, _, _) = login_callback(&b, &s.gw, "alice", "/").await;
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "product_unknown", "{body}");
    assert!(matches!(s.userinfo(&b).await.0, 302 | 401), "no session");
    assert_eq!(
        s.metric("spotify_gateway_logins_total{app=\"default\",result=\"product_unknown\"}")
            .await,
        2.0
    );
    assert_eq!(
        s.metric("spotify_gateway_logins_total{app=\"default\",result=\"not_allowed\"}")
            .await,
        0.0
    );
    // The probes do not care: the gateway is fine, the rule is what cannot work.
    let ready = reqwest::get(format!("{}/readyz", s.gw.admin_url()))
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_products_in_extended_quota_works_as_before() {
    let s = stack(AppMode::ExtendedQuota, &["premium"]).await;
    let alice = browser();
    login(&alice, &s.gw, "alice", "/").await;
    assert_eq!(s.userinfo(&alice).await.0, 200, "alice has premium");
    let (resp, _, _) = login_callback(&browser(), &s.gw, "bob", "/").await;
    assert_eq!(resp.status(), 403, "bob has free");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "not_allowed");
    assert_eq!(
        s.metric("spotify_gateway_logins_total{app=\"default\",result=\"product_unknown\"}")
            .await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spotifys_400_for_a_search_past_ten_passes_through_unchanged() {
    let s = stack(AppMode::Development, &[]).await;
    let resp = s.egress_get("/v1/search?q=abba&type=track&limit=11").await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(
        body,
        json!({"error": {"status": 400, "message": "Invalid limit"}})
    );
    let ok = s.egress_get("/v1/search?q=abba&type=track&limit=10").await;
    assert_eq!(ok.status(), 200);
    assert_eq!(
        s.metric(
            r#"spotify_gateway_requests_total{app="default",listener="egress",route="/v1/search",status="4xx"}"#
        )
        .await,
        1.0
    );
}

/// One call to each endpoint Spotify removed for development-mode apps, as the egress gets it.
const REMOVED: &[(&str, &str)] = &[
    ("GET", "/v1/tracks?ids=4iV5W9uYEdYUVa79Axb7Rh"),
    ("GET", "/v1/albums?ids=4iV5W9uYEdYUVa79Axb7Rh"),
    ("GET", "/v1/artists?ids=4iV5W9uYEdYUVa79Axb7Rh"),
    ("GET", "/v1/episodes?ids=4iV5W9uYEdYUVa79Axb7Rh"),
    ("GET", "/v1/shows?ids=4iV5W9uYEdYUVa79Axb7Rh"),
    ("GET", "/v1/audiobooks?ids=4iV5W9uYEdYUVa79Axb7Rh"),
    ("GET", "/v1/chapters?ids=4iV5W9uYEdYUVa79Axb7Rh"),
    ("GET", "/v1/artists/4iV5W9uYEdYUVa79Axb7Rh/top-tracks"),
    ("GET", "/v1/markets"),
    ("GET", "/v1/browse/new-releases"),
    ("GET", "/v1/browse/categories"),
    ("GET", "/v1/users/bob"),
    ("GET", "/v1/users/bob/playlists"),
    ("POST", "/v1/users/alice/playlists"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_endpoints_answer_spotifys_403_unchanged_through_the_egress() {
    let s = stack(AppMode::Development, &[]).await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    let assertion = s.assertion(&b).await;
    let direct_token = direct_token(&s.mock).await;
    for (method, path) in REMOVED {
        let method: reqwest::Method = method.parse().expect("method");
        let mut req = reqwest::Client::new()
            .request(method.clone(), format!("{}{path}", s.gw.egress_url()))
            .header("x-gateway-user", &assertion);
        let mut direct = reqwest::Client::new()
            .request(method.clone(), format!("{}{path}", s.mock.base_url()))
            .bearer_auth(&direct_token);
        if method == reqwest::Method::POST {
            req = req.json(&json!({"name": "New"}));
            direct = direct.json(&json!({"name": "New"}));
        }
        let resp = req.send().await.expect("egress");
        assert_eq!(resp.status(), 403, "{method} {path}");
        let body: Value = resp.json().await.expect("json");
        let spotify: Value = direct
            .send()
            .await
            .expect("direct")
            .json()
            .await
            .expect("json");
        assert_eq!(body, spotify, "{method} {path}: Spotify's body, unchanged");
        assert_eq!(body["error"]["status"], 403);
    }
    let forbidden: f64 = scrape(&s.gw)
        .await
        .lines()
        .filter(|l| {
            l.starts_with("spotify_gateway_requests_total{app=\"default\",listener=\"egress\"")
        })
        .filter(|l| l.contains("status=\"4xx\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(forbidden, REMOVED.len() as f64, "counted by status");
    // The session is not touched by Spotify's refusals.
    assert_eq!(s.userinfo(&b).await.0, 200);
}

#[test]
fn check_config_warns_when_allowed_products_is_set_and_still_passes() {
    let ports = Ports::new();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("gw.toml");
    let envs = [
        ("TEST_CLIENT_SECRET", CLIENT_SECRET),
        ("TEST_SESSION_SECRET", SESSION_SECRET),
    ];
    GatewayConfig::template(ports, "http://127.0.0.1:9").write(&path);
    let (code, _, err) = run_cli(
        &["check-config", "--config", path.to_str().expect("utf8")],
        &envs,
    );
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("warning"), "{err}");
    GatewayConfig::template(ports, "http://127.0.0.1:9")
        .edit(|doc| {
            let mut access = toml_edit::Table::new();
            access["allowed_products"] = toml_edit::value(toml_edit::Array::from_iter(["premium"]));
            doc["access"] = toml_edit::Item::Table(access);
        })
        .write(&path);
    let (code, out, err) = run_cli(
        &["check-config", "--config", path.to_str().expect("utf8")],
        &envs,
    );
    assert_eq!(code, 0, "a warning, not an error: {err}");
    assert!(out.contains("valid"), "{out}");
    assert!(err.contains("warning: access.allowed_products"), "{err}");
    assert!(err.contains("development-mode"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_app_calls_nothing_development_mode_removed() {
    let s = Stack::builder()
        .app(App::custom(|listener, ports| {
            let egress = format!("127.0.0.1:{}", ports.egress)
                .parse()
                .expect("egress addr");
            tokio::spawn(async move {
                let _ = spotify_gateway::demo::sample_app::serve(listener, egress, None).await;
            })
        }))
        .start()
        .await;
    let b = page_browser();
    login(&b, &s.gw, "alice", "/").await;
    let resp = b
        .get(format!("{}/", s.gw.public_url()))
        .send()
        .await
        .expect("page");
    assert_eq!(resp.status(), 200);
    let page = resp.text().await.expect("page");
    assert!(page.contains("Alice Andersson"), "{page}");
    assert!(page.contains("Dancing in the Kitchen"), "{page}");
    // Every call the page made reached Spotify and was answered: no 4xx from a development-mode
    // app's Spotify.
    let metrics = scrape(&s.gw).await;
    let egress: Vec<&str> = metrics
        .lines()
        .filter(|l| {
            l.starts_with("spotify_gateway_requests_total{app=\"default\",listener=\"egress\"")
        })
        .collect();
    assert!(
        egress.iter().any(|l| l.contains("status=\"2xx\"")),
        "{egress:?}"
    );
    assert!(
        !egress.iter().any(|l| l.contains("status=\"4xx\"")),
        "{egress:?}"
    );
}
