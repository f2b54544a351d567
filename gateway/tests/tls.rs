// Over 600 lines: every TLS failure is tested on both clients (pingora's and reqwest's) against
// the same test CA and mock; the CONNECT proxy cases need that same setup.
//! The gateway against a Spotify on `https://` (the mock with certificates from a test CA,
//! trusted through `spotify.ca_file`): the whole path works with verification on, and each
//! certificate failure (an unknown CA, an expired certificate, the wrong name) answers 502
//! naming the host and the cause, logs what the operator can do, and is counted — on the
//! egress proxy's side (pingora) and on the token endpoint's (reqwest).

mod common;

use std::time::{Duration, Instant};

use common::*;
use mock_spotify::{MockTls, TestCa, Validity};
use serde_json::Value;

/// A mock control call (`/__mock/...`) over TLS.
async fn control(ca: &Ca, mock: &MockSpotify, method: reqwest::Method, path: &str) -> Value {
    control_with(ca, mock, method, path, None).await
}

/// [`control`] with a JSON body (`/__mock/fault`).
async fn control_with(
    ca: &Ca,
    mock: &MockSpotify,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let mut req = ca
        .browser()
        .request(method, format!("{}{path}", mock.base_url()));
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("mock control");
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.json().await.expect("control json")
}

#[tokio::test]
async fn the_whole_path_works_over_tls_with_the_ca_file() {
    let ca = Ca::new("tls suite CA");
    let s = Stack::builder()
        .mock_over_tls(&ca)
        .app(App::Echo)
        .start()
        .await;
    assert!(s.mock.base_url().starts_with("https://"));

    // Login with code: the callback's token exchange and /v1/me, both over TLS.
    let browser = ca.browser();
    let trip = login(&browser, &s.gw, "alice", "/app").await;
    assert!(trip.landed.ends_with("/app"), "{}", trip.landed);
    let (status, info) = s.userinfo(&browser).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["user_id"], "alice", "{info}");

    // Egress with the user's token.
    let assertion = s.assertion(&browser).await;
    let me = s.egress_get_as(&assertion, "/v1/me").await;
    assert_eq!(me.status(), 200);
    let me: Value = me.json().await.expect("json");
    assert_eq!(me["id"], "alice");

    // Egress with the app token; the paging link points back at the gateway.
    let search = s.egress_get("/v1/search?q=abba&type=track&limit=1").await;
    assert_eq!(search.status(), 200);
    let page: Value = search.json().await.expect("json");
    let next = page["tracks"]["next"].as_str().expect("a next link");
    assert!(
        next.starts_with(&format!("{}/v1/search?", s.gw.egress_url())),
        "{next}"
    );

    // A refresh after Spotify expired the user's token, over TLS too.
    let stats = control(&ca, &s.mock, reqwest::Method::GET, "/__mock/stats").await;
    let refreshes = stats["token_requests"]["refresh_token"]
        .as_u64()
        .unwrap_or(0);
    control(
        &ca,
        &s.mock,
        reqwest::Method::POST,
        "/__mock/expire?user=alice",
    )
    .await;
    let me = s.egress_get_as(&assertion, "/v1/me").await;
    assert_eq!(me.status(), 200);
    let stats = control(&ca, &s.mock, reqwest::Method::GET, "/__mock/stats").await;
    assert!(
        stats["token_requests"]["refresh_token"]
            .as_u64()
            .unwrap_or(0)
            > refreshes,
        "{stats}"
    );
    assert_eq!(
        s.metric("spotify_gateway_upstream_tls_failures_total")
            .await,
        0.0
    );
}

#[tokio::test]
async fn pkce_login_and_a_refresh_on_expiry_work_over_tls() {
    let ca = Ca::new("tls pkce CA");
    let lifetime = std::time::Duration::from_secs(60);
    let s = Stack::builder()
        .mock_over_tls(&ca)
        .token_lifetime(lifetime)
        .set("spotify.flow", "pkce")
        .app(App::Echo)
        .start()
        .await;
    let browser = ca.browser();
    let trip = login(&browser, &s.gw, "bob", "/").await;
    assert!(
        trip.authorize_url.contains("code_challenge_method=S256"),
        "{}",
        trip.authorize_url
    );
    let assertion = s.assertion(&browser).await;
    let refreshes = |stats: &Value| stats["token_requests"]["refresh_token"].as_u64();
    let before = control(&ca, &s.mock, reqwest::Method::GET, "/__mock/stats").await;
    // The token expires by the gateway's own clock (moved forward): the next call refreshes
    // before it leaves.
    s.gw.advance_clock(lifetime).await;
    for _ in 0..3 {
        let me = s.egress_get_as(&assertion, "/v1/me").await;
        assert_eq!(me.status(), 200);
    }
    let after = control(&ca, &s.mock, reqwest::Method::GET, "/__mock/stats").await;
    assert_eq!(
        refreshes(&after).unwrap_or(0),
        refreshes(&before).unwrap_or(0) + 1,
        "one PKCE refresh over TLS: {after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_against_a_failing_token_endpoint_costs_one_refresh_over_tls() {
    let ca = Ca::new("tls burst CA");
    let lifetime = std::time::Duration::from_secs(60);
    let s = Stack::builder()
        .mock_over_tls(&ca)
        .token_lifetime(lifetime)
        .app(App::Echo)
        .start()
        .await;
    let browser = ca.browser();
    login(&browser, &s.gw, "alice", "/").await;
    let assertion = s.assertion(&browser).await;
    // The token expires by the gateway's own clock (moved forward).
    s.gw.advance_clock(lifetime).await;
    let fault = serde_json::json!({"target": "token", "status": 503, "times": 100000});
    control_with(
        &ca,
        &s.mock,
        reqwest::Method::POST,
        "/__mock/fault",
        Some(fault),
    )
    .await;
    let refreshes = |stats: &Value| stats["token_requests"]["refresh_token"].as_u64();
    let before = control(&ca, &s.mock, reqwest::Method::GET, "/__mock/stats").await;
    let calls: Vec<_> = (0..100)
        .map(|_| {
            let http = s.http.clone();
            let url = format!("{}/v1/me", s.gw.egress_url());
            let assertion = assertion.clone();
            tokio::spawn(async move {
                let resp = http.get(url).header("x-gateway-user", assertion).send();
                resp.await.map(|r| r.status().as_u16()).unwrap_or(0)
            })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.expect("task"), 503, "the token endpoint is down");
    }
    let after = control(&ca, &s.mock, reqwest::Method::GET, "/__mock/stats").await;
    let sent = refreshes(&after).unwrap_or(0) - refreshes(&before).unwrap_or(0);
    assert!(
        (1..=2).contains(&sent),
        "{sent} refresh requests over TLS for 100 calls"
    );
}

/// A CA in the system's store is trusted by both clients without `spotify.ca_file`: here the
/// bundle `update-ca-certificates` would write, given as `SSL_CERT_FILE` (which the system
/// roots honour) with the system's own roots and the test CA in it.
#[tokio::test]
async fn a_ca_in_the_system_store_is_trusted_by_both_clients() {
    let ca = Ca::new("system store CA");
    let system = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    let bundle = ca.dir.path().join("ca-certificates.crt");
    std::fs::write(&bundle, format!("{system}\n{}", ca.ca.cert_pem())).expect("bundle");
    let tls = ca.ca.issue(LOOPBACK, Validity::Current);
    let s = Stack::builder()
        .mock_config(move |c| c.tls = Some(tls))
        .env("SSL_CERT_FILE", bundle.display().to_string())
        .app(App::Echo)
        .start()
        .await;
    // The token client: the login's code exchange and /v1/me.
    let browser = ca.browser();
    let trip = login(&browser, &s.gw, "alice", "/app").await;
    assert!(trip.landed.ends_with("/app"), "{}", trip.landed);
    // The egress proxy: user and app tokens.
    let assertion = s.assertion(&browser).await;
    assert_eq!(s.egress_get_as(&assertion, "/v1/me").await.status(), 200);
    let search = s.egress_get("/v1/search?q=abba&type=track&limit=1").await;
    assert_eq!(search.status(), 200);
    assert_eq!(
        s.metric("spotify_gateway_upstream_tls_failures_total")
            .await,
        0.0
    );
}

/// API calls over TLS negotiate HTTP/2 when the server offers it, as api.spotify.com does,
/// and share one warm connection; a server that offers only HTTP/1.1 gets HTTP/1.1. The
/// protocol is counted (`upstream_responses_total`) and so are the connections opened
/// (`upstream_connections_total`): a call on a warm connection pays no handshake.
#[tokio::test]
async fn api_calls_negotiate_http2_and_share_a_warm_connection() {
    for (http2, protocol, version) in [(true, "h2", "HTTP/2.0"), (false, "http/1.1", "HTTP/1.1")] {
        let ca = Ca::new("alpn CA");
        let s = Stack::builder()
            .mock_over_tls(&ca)
            .mock_config(move |c| c.http2 = http2)
            // No cache: the 20 identical calls must each reach Spotify.
            .set("egress.cache_size", 0)
            .start()
            .await;
        let search = "/v1/search?q=abba&type=track&limit=1";
        let first = s.egress_get(search).await;
        assert_eq!(first.status(), 200, "{protocol}");
        let stats = |v: Value| v["connections"]["requests_by_version"][version].as_u64();
        let before = stats(control(&ca, &s.mock, reqwest::Method::GET, "/__mock/stats").await);
        for _ in 0..20 {
            assert_eq!(s.egress_get(search).await.status(), 200, "{protocol}");
        }
        let after = stats(control(&ca, &s.mock, reqwest::Method::GET, "/__mock/stats").await);
        assert_eq!(
            after.unwrap_or(0) - before.unwrap_or(0),
            20,
            "the mock saw the API calls as {version}"
        );
        let responses = format!(
            "spotify_gateway_upstream_responses_total{{protocol=\"{protocol}\",target=\"api\"}}"
        );
        assert_eq!(s.metric(&responses).await, 21.0, "{protocol}");
        if http2 {
            // Every call after the first rode the first call's connection.
            assert_eq!(
                s.metric("spotify_gateway_upstream_connections_total{target=\"api\"}")
                    .await,
                1.0
            );
        }
        // Concurrent calls are streams on the warm HTTP/2 connection. (pingora may open a
        // few more when callers meet while one takes a stream; HTTP/1.1 needs one each.)
        let calls: Vec<_> = (0..32)
            .map(|_| {
                let http = s.http.clone();
                let url = format!("{}{search}", s.gw.egress_url());
                tokio::spawn(async move { http.get(url).send().await.map(|r| r.status()) })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.expect("task").expect("call"), 200);
        }
        let opened = s
            .metric("spotify_gateway_upstream_connections_total{target=\"api\"}")
            .await;
        if http2 {
            assert!(opened <= 4.0, "{opened} HTTP/2 connections for 53 calls");
        }
    }
}

/// The mock's connection counters (`/__mock/stats`): `tls_handshakes_h2` counts the
/// gateway's egress connections (its token client speaks HTTP/1.1 only).
async fn wire(ca: &Ca, mock: &MockSpotify, counter: &str) -> u64 {
    let stats = control(ca, mock, reqwest::Method::GET, "/__mock/stats").await;
    stats["connections"][counter].as_u64().unwrap_or(0)
}

/// `calls` concurrent egress GETs, each of which must answer 200.
async fn wave(s: &Stack, calls: usize) {
    let url = format!("{}/v1/search?q=abba&type=track&limit=1", s.gw.egress_url());
    let calls: Vec<_> = (0..calls)
        .map(|_| {
            let (http, url) = (s.http.clone(), url.clone());
            tokio::spawn(async move { http.get(url).send().await.map(|r| r.status()) })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.expect("task").expect("call"), 200);
    }
}

/// A cold pool opens one HTTP/2 connection, not one per caller (issue 29): the gateway
/// warms it at start, before any call, and 120 calls in 6 waves of 20 concurrent ones ride
/// it, counted at the mock (TLS handshakes that negotiated h2) with verification on.
#[tokio::test]
async fn waves_of_concurrent_first_calls_share_one_warm_http2_connection() {
    let ca = Ca::new("warm pool CA");
    let s = Stack::builder()
        .mock_over_tls(&ca)
        // Every call must reach Spotify: nothing shared, nothing cached.
        .set("egress.cache_size", 0)
        .set("egress.coalesce", false)
        .start()
        .await;
    wait_until(
        Duration::from_secs(10),
        "the gateway to warm a connection to the API at start",
        || async { wire(&ca, &s.mock, "tls_handshakes_h2").await == 1 },
    )
    .await;
    let stats = control(&ca, &s.mock, reqwest::Method::GET, "/__mock/stats").await;
    let h2_requests = &stats["connections"]["requests_by_version"]["HTTP/2.0"];
    assert_eq!(h2_requests, 0, "the warm-up sends Spotify no request");
    for _ in 0..6 {
        wave(&s, 20).await;
    }
    let stats = control(&ca, &s.mock, reqwest::Method::GET, "/__mock/stats").await;
    let wire = &stats["connections"];
    assert_eq!(wire["requests_by_version"]["HTTP/2.0"], 120, "{wire}");
    let opened = wire["tls_handshakes_h2"].as_u64().unwrap_or(0);
    assert!(
        opened <= 2,
        "{opened} HTTP/2 connections for 120 calls: {wire}"
    );
    // What this run saw (benches/README.md quotes it).
    eprintln!("120 calls in 6 waves of 20: {wire}");
    let counted = s
        .metric("spotify_gateway_upstream_connections_total{target=\"api\"}")
        .await;
    assert_eq!(
        counted, opened as f64,
        "the gateway counts what the mock saw"
    );
}

/// pingora's connector holds the trust set once, so its TLS config (and session cache) is
/// shared by every connection: new connections to Spotify resume an earlier session instead
/// of a full handshake. (A per-peer CA list built a fresh config per connection: 0 resumed.)
#[tokio::test]
async fn new_connections_to_the_api_resume_tls_sessions() {
    let ca = Ca::new("resumption CA");
    let s = Stack::builder()
        .mock_over_tls(&ca)
        // HTTP/1.1: concurrent calls need connections of their own.
        .mock_config(|c| c.http2 = false)
        .set("egress.cache_size", 0)
        .set("egress.coalesce", false)
        .start()
        .await;
    assert_eq!(
        s.egress_get("/v1/search?q=abba&type=track").await.status(),
        200
    );
    let (handshakes, resumed) = (
        wire(&ca, &s.mock, "tls_handshakes").await,
        wire(&ca, &s.mock, "tls_resumed").await,
    );
    wave(&s, 8).await;
    let new = wire(&ca, &s.mock, "tls_handshakes").await - handshakes;
    let resumed = wire(&ca, &s.mock, "tls_resumed").await - resumed;
    assert!(
        new >= 2,
        "8 concurrent HTTP/1.1 calls opened {new} connections"
    );
    assert!(
        resumed >= 1,
        "{resumed} of {new} new connections resumed a session"
    );
    eprintln!("8 concurrent HTTP/1.1 calls: {new} new connections, {resumed} resumed");
}

/// A stack on a TLS mock whose clients to Spotify go through `proxy`: nothing bypasses it
/// (`no_proxy = []`: the mock is on loopback, which bypasses the proxy by default).
async fn stack_behind(ca: &Ca, proxy: &Tinyproxy, credentials_env: &str) -> Stack {
    Stack::builder()
        .mock_over_tls(ca)
        .set("spotify.proxy_url", proxy.url())
        .set("spotify.proxy_credentials_env", credentials_env)
        .set("spotify.no_proxy", [] as [&str; 0])
        .app(App::Echo)
        .start()
        .await
}

/// Both clients reach Spotify through a real CONNECT proxy (tinyproxy, with Basic proxy
/// credentials): the login's token exchange and `/v1/me` (reqwest) and the egress calls
/// (pingora), TLS verified end to end inside the tunnel. When the proxy goes away, calls
/// answer 502 naming the proxy, and the password is never logged.
#[tokio::test]
async fn both_clients_reach_spotify_through_a_connect_proxy() {
    let ca = Ca::new("proxy CA");
    let (user, password) = PROXY_CREDENTIALS.split_once(':').expect("user:password");
    let mut proxy = Tinyproxy::start(Some((user, password))).await;
    let s = stack_behind(&ca, &proxy, "TEST_PROXY_CREDENTIALS").await;
    let target = s.mock.addr().to_string();
    // The egress proxy warms its HTTP/2 connection to the API at start, in a tunnel of its
    // own, before any call (the token client has had nothing to ask yet).
    wait_until(
        Duration::from_secs(10),
        "the egress proxy's warm-up tunnel",
        || async {
            proxy.connects_to(&target) == 1 && wire(&ca, &s.mock, "tls_handshakes_h2").await == 1
        },
    )
    .await;

    let browser = ca.browser();
    let trip = login(&browser, &s.gw, "alice", "/app").await;
    assert!(trip.landed.ends_with("/app"), "{}", trip.landed);
    assert!(
        proxy.connects_to(&target) > 1,
        "the login's requests went through the proxy"
    );

    let assertion = s.assertion(&browser).await;
    let me = s.egress_get_as(&assertion, "/v1/me").await;
    assert_eq!(me.status(), 200);
    let search = s.egress_get("/v1/search?q=abba&type=track&limit=1").await;
    assert_eq!(search.status(), 200);
    assert_eq!(
        wire(&ca, &s.mock, "tls_handshakes_h2").await,
        1,
        "the egress calls rode the warm tunnel"
    );
    assert_eq!(
        s.metric("spotify_gateway_upstream_responses_total{protocol=\"h2\",target=\"api\"}")
            .await,
        2.0,
        "HTTP/2 inside the tunnel"
    );

    // The proxy goes away: its tunnels close with it, and no new one can be opened.
    proxy.stop();
    // Another page size: not the cached answer of the call above.
    let resp = s.egress_get("/v1/search?q=abba&type=track&limit=2").await;
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.expect("json");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("spotify.proxy_url"),
        "{body}\n{}",
        s.gw.log()
    );
    let log = s.gw.log();
    assert!(log.contains("outbound proxy"), "the log says what failed");
    assert!(
        !log.contains(password),
        "the proxy password reached the log"
    );
}

/// Wrong proxy credentials: the proxy refuses the tunnel, and the caller's 502 names the
/// proxy and its credentials (not "Spotify unavailable, retry shortly"); nothing reaches
/// Spotify. (tinyproxy refuses with 401, which the token client cannot tell from other
/// refusals, so the message names both keys.)
#[tokio::test]
async fn wrong_proxy_credentials_answer_502_naming_them() {
    let ca = Ca::new("proxy auth CA");
    let proxy = Tinyproxy::start(Some(("gateway", "the-right-password"))).await;
    let s = stack_behind(&ca, &proxy, "TEST_PROXY_CREDENTIALS").await;
    let resp = s.egress_get("/v1/search?q=abba&type=track&limit=1").await;
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.expect("json");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("spotify.proxy_credentials"), "{body}");
    let stats = control(&ca, &s.mock, reqwest::Method::GET, "/__mock/stats").await;
    assert_eq!(stats["token_requests"]["client_credentials"], 0, "{stats}");
    let log = s.gw.log();
    assert!(
        log.contains("proxy_credentials"),
        "the log says what to check"
    );
    assert!(
        !log.contains("proxy-password-do-not-log"),
        "a password reached the log"
    );
}

/// The deadline of the frozen-proxy tests' calls (`egress.total_timeout`), and the margin
/// their answers get beyond it on a loaded machine; the token client's own bound on a login
/// (`TOKEN_REQUEST_TIMEOUT` in `oauth/mod.rs`).
const FROZEN_DEADLINE: Duration = Duration::from_secs(4);
const MARGIN: Duration = Duration::from_secs(10);
const TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A client for calls that must be answered in time: it gives up long after they should
/// have been, so a call held by the proxy fails the test instead of hanging it.
fn impatient() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// The gateway's answer to a call stuck behind the frozen proxy: a 502 in time, with
/// `Retry-After`, naming `spotify.proxy_url` (in either listener's shape).
async fn assert_proxy_answer(
    what: &str,
    resp: reqwest::Response,
    asked: Instant,
    within: Duration,
) {
    let took = asked.elapsed();
    assert!(
        took < within,
        "{what}: answered after {took:?}, not within {within:?}"
    );
    assert_eq!(resp.status(), 502, "{what}");
    assert!(
        resp.headers().contains_key("retry-after"),
        "{what}: a 502 for a proxy that cannot be reached says when to try again"
    );
    let body: Value = resp.json().await.expect("json");
    let message = body["error"]["message"]
        .as_str()
        .or(body["message"].as_str())
        .unwrap_or_default();
    assert!(message.contains("spotify.proxy_url"), "{what}: {body}");
}

/// A proxy that accepts connections and never answers: the egress call's tunnel is bounded
/// by `egress.connect_timeout` and the call by `egress.total_timeout`, as a direct connection
/// is, and answered 502 naming the proxy (it was held until the proxy thawed). The login's
/// `/v1/me` through it (reqwest's tunnel) ends as quickly, with the same answer. The token
/// endpoint is reached directly here (`localhost` is in `no_proxy`), so the egress call gets
/// its token and meets the frozen proxy at its own tunnel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_proxy_answers_502_naming_it_within_the_deadline() {
    let ca = Ca::new("frozen proxy CA");
    let proxy = FrozenProxy::start().await;
    let s = Stack::builder()
        .mock_over_tls(&ca)
        .set("spotify.proxy_url", proxy.url())
        .set("spotify.no_proxy", ["localhost"])
        .edit(|doc| {
            let direct = doc["spotify"]["accounts_url"]
                .as_str()
                .expect("accounts_url")
                .replace("127.0.0.1", "localhost");
            doc["spotify"]["accounts_url"] = toml_edit::value(direct);
        })
        .set("egress.total_timeout", "4s")
        .app(App::Echo)
        .start()
        .await;

    let asked = Instant::now();
    let resp = impatient()
        .get(format!("{}/v1/search?q=abba&type=track", s.gw.egress_url()))
        .send()
        .await
        .expect("the egress call is answered while the proxy stays frozen");
    assert_proxy_answer("egress", resp, asked, FROZEN_DEADLINE + MARGIN).await;
    assert!(proxy.accepted() >= 1, "the call went to the proxy");
    let stats = control(&ca, &s.mock, reqwest::Method::GET, "/__mock/stats").await;
    assert!(
        stats["token_requests"]["client_credentials"].as_u64() >= Some(1),
        "the app token came directly: {stats}"
    );
    assert_eq!(stats["api_requests"], 0, "{stats}");

    let asked = Instant::now();
    let (resp, _, _) = login_callback(&ca.browser(), &s.gw, "alice", "/app").await;
    assert_proxy_answer("login", resp, asked, TOKEN_REQUEST_TIMEOUT + MARGIN).await;
}

/// The token client through a frozen proxy: the app token's request ends at the client's
/// connect timeout, within the call's deadline, and the call is answered 502 naming the
/// proxy (not 503 "Spotify's token endpoint is unavailable"). Logins and refreshes use the
/// same client and the same reading of its failures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_request_through_a_frozen_proxy_answers_502_naming_it() {
    let ca = Ca::new("frozen proxy token CA");
    let proxy = FrozenProxy::start().await;
    let s = Stack::builder()
        .mock_over_tls(&ca)
        .set("spotify.proxy_url", proxy.url())
        .set("spotify.no_proxy", [] as [&str; 0])
        .set("egress.total_timeout", "4s")
        .start()
        .await;
    let asked = Instant::now();
    let resp = impatient()
        .get(format!("{}/v1/search?q=abba&type=track", s.gw.egress_url()))
        .send()
        .await
        .expect("the egress call is answered while the proxy stays frozen");
    assert_proxy_answer("app token", resp, asked, FROZEN_DEADLINE + MARGIN).await;
    assert!(proxy.accepted() >= 1, "the token request went to the proxy");
    let stats = control(&ca, &s.mock, reqwest::Method::GET, "/__mock/stats").await;
    assert_eq!(stats["token_requests"]["client_credentials"], 0, "{stats}");
}

/// Loopback goes direct by default (`no_proxy`), whatever the proxy: the demo and tests on
/// 127.0.0.1 keep working with a proxy configured.
#[tokio::test]
async fn loopback_bypasses_the_proxy_by_default() {
    let ca = Ca::new("no_proxy CA");
    let proxy = Tinyproxy::start(None).await;
    let s = Stack::builder()
        .mock_over_tls(&ca)
        .set("spotify.proxy_url", proxy.url())
        .start()
        .await;
    let resp = s.egress_get("/v1/search?q=abba&type=track&limit=1").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(proxy.connects_to(&s.mock.addr().to_string()), 0);
}

/// One way a certificate can be wrong.
struct Case {
    /// `reason` label and the cause the answer names.
    label: &'static str,
    cause: &'static str,
    /// Words the log line must carry: what the operator can do.
    remedy: &'static str,
    /// The bad certificate, from the CA the gateway trusts or another.
    cert: fn(trusted: &TestCa) -> MockTls,
}

const CASES: &[Case] = &[
    Case {
        label: "untrusted",
        cause: "certificate not trusted",
        remedy: "spotify.ca_file",
        cert: |_| TestCa::new("a CA nobody trusts").issue(LOOPBACK, Validity::Current),
    },
    Case {
        label: "expired",
        cause: "certificate expired",
        remedy: "renewed",
        cert: |trusted| trusted.issue(LOOPBACK, Validity::Expired),
    },
    Case {
        label: "wrong_name",
        cause: "certificate for the wrong name",
        remedy: "spotify.api_url",
        cert: |trusted| trusted.issue(&["wrong.example"], Validity::Current),
    },
];

/// `key` (`spotify.api_url` or `spotify.accounts_url`) on a mock serving `case`'s bad
/// certificate; everything else on a mock the gateway trusts.
async fn stack_with_bad(ca: &Ca, case: &Case, key: &str) -> (Stack, MockSpotify) {
    let bad = MockSpotify::start(
        start_addr(),
        MockConfig {
            tls: Some((case.cert)(&ca.ca)),
            ..MockConfig::default()
        },
    )
    .await
    .expect("bad mock");
    let good = ca.ca.issue(LOOPBACK, Validity::Current);
    let s = Stack::builder()
        .mock_config(move |c| c.tls = Some(good))
        .set("spotify.ca_file", ca.file())
        .set(key, bad.base_url())
        .start()
        .await;
    (s, bad)
}

/// The 502 in Spotify's shape naming `host` and the cause, the log line, the counter.
async fn assert_tls_failure(
    s: &Stack,
    resp: reqwest::Response,
    case: &Case,
    host: &str,
    target: &str,
) {
    assert_eq!(
        resp.status(),
        502,
        "{}: not 503 'retry shortly'",
        case.label
    );
    assert!(resp.headers().get("retry-after").is_none());
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["status"], 502, "{body}");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains(host), "{}: {message}", case.label);
    assert!(message.contains(case.cause), "{}: {message}", case.label);
    let series = format!(
        "spotify_gateway_upstream_tls_failures_total{{reason=\"{}\",target=\"{target}\"}}",
        case.label
    );
    assert!(
        s.metric(&series).await >= 1.0,
        "{series}\n{}",
        scrape(&s.gw).await
    );
    let log = s.gw.log();
    let line = log
        .lines()
        .find(|l| l.contains("ERROR") && l.contains(&format!("TLS to {host} failed")))
        .unwrap_or_else(|| panic!("{}: no error line in\n{log}", case.label));
    assert!(line.contains(case.cause), "{line}");
    assert!(line.contains(case.remedy), "{line}");
}

#[tokio::test]
async fn a_bad_certificate_on_the_api_answers_502_naming_the_cause() {
    let ca = Ca::new("tls suite CA");
    for case in CASES {
        let (s, bad) = stack_with_bad(&ca, case, "spotify.api_url").await;
        let host = bad.addr().to_string();
        // The app token comes from the trusted accounts service; the call then meets the
        // bad certificate in the egress proxy.
        let resp = s.egress_get("/v1/search?q=abba&type=track").await;
        assert_tls_failure(&s, resp, case, &host, "api").await;
    }
}

#[tokio::test]
async fn a_bad_certificate_on_the_token_endpoint_answers_502_not_503() {
    let ca = Ca::new("tls suite CA");
    for case in CASES {
        let (s, bad) = stack_with_bad(&ca, case, "spotify.accounts_url").await;
        let host = bad.addr().to_string();
        let resp = s.egress_get("/v1/search?q=abba&type=track").await;
        assert_tls_failure(&s, resp, case, &host, "accounts").await;
    }
}

#[tokio::test]
async fn without_the_ca_file_the_test_ca_is_not_trusted() {
    let ca = Ca::new("tls suite CA");
    let tls = ca.ca.issue(LOOPBACK, Validity::Current);
    let s = Stack::builder()
        .mock_config(move |c| c.tls = Some(tls))
        .start()
        .await;
    let resp = s.egress_get("/v1/search?q=abba&type=track").await;
    let host = s.mock.addr().to_string();
    assert_tls_failure(&s, resp, &CASES[0], &host, "accounts").await;
}

#[test]
fn check_config_names_a_ca_file_that_is_missing_or_holds_no_certificate() {
    let dir = tempfile::tempdir().expect("dir");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "no certificate here\n").expect("write");
    let missing = dir.path().join("missing.pem");
    for (file, needle) in [
        (&missing, "does not exist"),
        (&empty, "holds no certificate"),
    ] {
        let config = GatewayConfig::template(Ports::new(), "https://127.0.0.1:1")
            .set("spotify.ca_file", file.display().to_string());
        let path = dir.path().join("gateway.toml");
        config.write(&path);
        let (code, _, err) = run_cli(
            &["check-config", "--config", &path.display().to_string()],
            &[
                ("TEST_CLIENT_SECRET", CLIENT_SECRET),
                ("TEST_SESSION_SECRET", SESSION_SECRET),
            ],
        );
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("key `spotify.ca_file`"), "{err}");
        assert!(err.contains("line "), "{err}");
        assert!(err.contains(needle), "{err}");
    }
}
