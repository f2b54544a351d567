//! Operating the gateway: the metrics exposition (checked by promtool), logs that never carry
//! a secret even at the most verbose level, graceful shutdown on SIGTERM, config reload on
//! SIGHUP.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// The mock, the echo app and a gateway.
fn setup() -> StackBuilder {
    Stack::builder().app(App::Echo)
}

async fn egress(gw: &Gateway, path: &str, assertion: Option<&str>) -> u16 {
    let mut req = reqwest::Client::new().get(format!("{}{path}", gw.egress_url()));
    if let Some(a) = assertion {
        req = req.header("x-gateway-user", a);
    }
    req.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

/// Login, user and app calls, a refresh, a 429 and an error: then the real scrape passes
/// `promtool check metrics` with nothing to report, and labels stay bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_after_traffic() {
    let s = setup().start().await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    let (_, seen) = via_public(&b, &s.gw, "/app").await;
    let assertion = seen["headers"]["x-gateway-user"]
        .as_str()
        .expect("assertion")
        .to_string();
    assert_eq!(egress(&s.gw, "/v1/me", Some(&assertion)).await, 200);
    mock_post(&s.mock, "/__mock/expire?user=alice", None).await;
    assert_eq!(egress(&s.gw, "/v1/me", Some(&assertion)).await, 200);
    for i in 0..5 {
        let path = format!("/v1/tracks/unknown{i:015}");
        assert_eq!(egress(&s.gw, &path, None).await, 404);
    }
    mock_post(
        &s.mock,
        "/__mock/fault",
        Some(json!({"target": "api", "status": 429, "retry_after": 1, "times": 1})),
    )
    .await;
    assert_eq!(egress(&s.gw, "/v1/search?q=a&type=track", None).await, 429);
    assert_eq!(egress(&s.gw, "/v1/search?q=a&type=track", None).await, 429);

    let text = scrape(&s.gw).await;
    let path = s.gw.dir.path().join("scrape.prom");
    std::fs::write(&path, &text).expect("write scrape");
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&path).expect("scrape file"))
        .output()
        .expect("promtool is missing: run ./scripts/test.sh, which installs it");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool: {report}"
    );

    for needle in [
        r#"spotify_gateway_logins_total{result="ok"} 1"#,
        r#"spotify_gateway_token_refreshes_total{result="ok"} 1"#,
        r#"spotify_gateway_token_cache_total{result="hit"}"#,
        r#"spotify_gateway_spotify_rate_limited_total{reason="rate_limited"} 1"#,
        r#"spotify_gateway_rate_limited_local_total{reason="rate_limited"} 1"#,
        r#"spotify_gateway_spotify_rate_limited_total{reason="quota_exceeded"} 0"#,
        "spotify_gateway_rate_limit_blocked_until_timestamp_seconds",
        r#"spotify_gateway_store_operations_total{backend="memory",op="put"}"#,
        r#"spotify_gateway_requests_total{listener="public",route="/auth/callback",status="3xx"} 1"#,
        "spotify_gateway_request_duration_seconds_bucket",
        "spotify_gateway_build_info{version=",
    ] {
        assert!(text.contains(needle), "missing {needle}");
    }
    // Route labels are templates: no raw path, id or user reaches a label.
    for leak in ["unknown0000", "alice", "/v1/me/", "search?"] {
        assert!(!text.contains(leak), "{leak} in metrics");
    }
}

/// The most verbose level, JSON output, a full login, egress calls, a refresh and a logout:
/// no token, code, state, cookie value or secret appears anywhere in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_at_trace_level_carry_no_secret() {
    let s = setup()
        .set("server.log_level", "trace")
        .set("server.log_format", "json")
        .start()
        .await;
    let b = browser();
    let trip = login(&b, &s.gw, "alice", "/").await;
    let (_, seen) = via_public(&b, &s.gw, "/app").await;
    let assertion = seen["headers"]["x-gateway-user"]
        .as_str()
        .expect("assertion")
        .to_string();
    assert_eq!(egress(&s.gw, "/v1/me", Some(&assertion)).await, 200);
    mock_post(&s.mock, "/__mock/expire?user=alice", None).await;
    assert_eq!(egress(&s.gw, "/v1/me", Some(&assertion)).await, 200);
    assert_eq!(
        egress(&s.gw, "/v1/search?q=abba&type=track", None).await,
        200
    );
    logout(&b, &s.gw).await;

    // Everything secret that crossed the gateway, as the mock saw it.
    let mut secrets: Vec<String> = vec![CLIENT_SECRET.into(), SESSION_SECRET.into(), assertion];
    for r in mock_requests(&s.mock).await {
        if let Some(auth) = r["headers"]["authorization"].as_str() {
            secrets.push(
                auth.trim_start_matches("Bearer ")
                    .trim_start_matches("Basic ")
                    .into(),
            );
        }
        if let Some(body) = r["body"].as_str() {
            for (k, v) in url::form_urlencoded::parse(body.as_bytes()) {
                if matches!(&*k, "code" | "refresh_token" | "code_verifier") {
                    secrets.push(v.into_owned());
                }
            }
        }
    }
    let callback = url::Url::parse(&trip.callback_url).expect("callback url");
    for (k, v) in callback.query_pairs() {
        if k == "code" || k == "state" {
            secrets.push(v.into_owned());
        }
    }
    for cookie in &trip.set_cookies {
        let value = cookie
            .split(';')
            .next()
            .and_then(|p| p.split_once('='))
            .map(|p| p.1);
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            secrets.push(v.to_string());
        }
    }
    assert!(secrets.len() >= 8, "collected {} secrets", secrets.len());

    // The access line is written after the answer (pingora's `logging` phase): under load the
    // last one may land a moment after the client has its answer.
    let access_lines = |log: &str| {
        log.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["target"] == "access")
            .count()
    };
    s.gw.wait_until(Duration::from_secs(5), "7 access lines", || async {
        access_lines(&s.gw.log()) >= 7
    })
    .await;
    let log = s.gw.log();
    assert!(log.lines().count() > 20, "trace output expected:\n{log}");
    for secret in &secrets {
        assert!(secret.len() >= 8);
        assert!(!log.contains(secret.as_str()), "a secret reached the log");
    }
    // One JSON access line per request, with request id, listener, route, status, duration.
    let access: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "access")
        .collect();
    // login, callback, /app, three egress calls, logout.
    assert_eq!(access.len(), 7, "one access line per request");
    for line in &access {
        for field in ["request_id", "listener", "route", "status", "duration_ms"] {
            assert!(
                !line["fields"][field].is_null(),
                "{field} missing in {line}"
            );
        }
        assert!(
            line["fields"]["user"].is_null(),
            "user ids are off by default"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_fails_readiness_and_finishes_every_request_in_flight() {
    let mut s = setup().set("server.grace_period", "4s").start().await;
    // Warm the app token so the slow calls are all in Spotify's hands.
    assert_eq!(egress(&s.gw, "/v1/search?q=a&type=track", None).await, 200);
    mock_post(&s.mock, "/__mock/reset", None).await;
    const IN_FLIGHT: u64 = 40;
    mock_post(
        &s.mock,
        "/__mock/fault",
        Some(json!({"target": "api", "delay_ms": 1500, "times": IN_FLIGHT})),
    )
    .await;
    // Each call its own (another offset), so none is coalesced with another.
    let calls: Vec<_> = (0..IN_FLIGHT)
        .map(|i| {
            let url = format!(
                "{}/v1/search?q=abba&type=track&offset={i}",
                s.gw.egress_url()
            );
            tokio::spawn(async move {
                reqwest::get(url)
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            })
        })
        .collect();
    // Every call has reached Spotify (and waits there) before the signal.
    wait_until(
        Duration::from_secs(10),
        format!("all {IN_FLIGHT} calls to reach the mock"),
        || async { mock_stats(&s.mock).await["api_requests"].as_u64() >= Some(IN_FLIGHT) },
    )
    .await;

    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(s.gw.pid(), libc::SIGTERM) };
    let ready_url = format!("{}/readyz", s.gw.admin_url());
    s.gw.wait_until(
        Duration::from_secs(1),
        "/readyz to stop answering 200 after SIGTERM",
        || async {
            let status = reqwest::get(&ready_url)
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            status != 200
        },
    )
    .await;

    let statuses = futures::future::join_all(calls).await;
    let ok = statuses.iter().filter(|s| matches!(s, Ok(200))).count();
    assert_eq!(ok as u64, IN_FLIGHT, "{statuses:?}");

    // New connections are no longer accepted.
    let refused = tokio::net::TcpStream::connect(("127.0.0.1", s.gw.ports.egress)).await;
    assert!(refused.is_err(), "the egress listener still accepts");
    let status = s.gw.wait_exit();
    assert!(status.success(), "exit status {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_scopes_and_public_paths_and_keeps_the_old_config_on_error() {
    let s = setup().start().await;
    let b = browser();
    let (status, _) = via_public(&b, &s.gw, "/open/page").await;
    assert_eq!(status, 401, "not public yet");

    let original = s.gw.config();
    let edited = original
        .clone()
        .set("upstream.public_paths", ["/public/", "/open/"])
        .edit(|doc| {
            doc["spotify"]["scopes"]
                .as_array_mut()
                .expect("scopes")
                .push("user-top-read")
        });
    assert_ne!(edited.to_string(), original.to_string());
    s.gw.write_config(&edited);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(s.gw.pid(), libc::SIGHUP) };
    s.gw.wait_until(
        Duration::from_secs(5),
        "the reload to make /open/ public",
        || async { via_public(&b, &s.gw, "/open/page").await.0 == 200 },
    )
    .await;
    let resp = b
        .get(format!("{}/auth/login", s.gw.public_url()))
        .send()
        .await
        .expect("login");
    assert!(
        location(&resp).contains("user-top-read"),
        "new scopes for new logins"
    );

    // A broken file changes nothing, and the log says why.
    let misspelt = edited.edit(|doc| {
        let session = doc.remove("session").expect("[session]");
        doc.insert("sesion", session);
    });
    s.gw.write_config(&misspelt);
    // SAFETY: as above.
    unsafe { libc::kill(s.gw.pid(), libc::SIGHUP) };
    s.gw.wait_until(
        Duration::from_secs(5),
        "the reload error in the log",
        || async { s.gw.log().contains("config reload failed") },
    )
    .await;
    assert!(s.gw.log().contains("sesion"), "the error names the key");
    assert_eq!(
        via_public(&b, &s.gw, "/open/page").await.0,
        200,
        "old config kept"
    );
    assert_eq!(
        reqwest::get(format!("{}/readyz", s.gw.admin_url()))
            .await
            .unwrap()
            .status(),
        200,
        "still serving"
    );
}

#[test]
fn a_taken_listen_address_is_a_clear_start_up_error() {
    let ports = Ports::new();
    let taken = std::net::TcpListener::bind(("127.0.0.1", ports.public)).expect("hold the port");
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("gateway.toml");
    GatewayConfig::template(ports, "http://127.0.0.1:9").write(&path);
    let (code, _, err) = run_cli(
        &["run", "--config", path.to_str().expect("utf-8")],
        &[
            ("TEST_CLIENT_SECRET", CLIENT_SECRET),
            ("TEST_SESSION_SECRET", SESSION_SECRET),
        ],
    );
    drop(taken);
    assert_ne!(code, 0);
    assert!(err.contains("listen.public"), "{err}");
    assert!(err.contains(&ports.public.to_string()), "{err}");
}
