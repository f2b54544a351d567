//! What the gateway tells its operator, and what it never tells anyone: the metrics exposition
//! after traffic (checked by promtool, labels bounded), log files without colour codes, and no
//! secret or personal data in a log (even at trace level), on the admin listener, or in the
//! `Debug` output of the config and of a session record.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

// The gateway library, as this file uses it.
use spotify_gateway::config::Config;
use spotify_gateway::secret::{AccessToken, RefreshToken};
use spotify_gateway::session::{Scopes, SessionRecord};

/// Login, user and app calls, a refresh, a 429 and an error: then the real scrape passes
/// `promtool check metrics` with nothing to report, and labels stay bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_after_traffic() {
    let s = Stack::builder().app(App::Echo).start().await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    let assertion = s.assertion(&b).await;
    assert_eq!(
        egress_get_status(&s.gw, "/v1/me", Some(&assertion)).await,
        200
    );
    mock_post(&s.mock, "/__mock/expire?user=alice", None).await;
    assert_eq!(
        egress_get_status(&s.gw, "/v1/me", Some(&assertion)).await,
        200
    );
    for i in 0..5 {
        let path = format!("/v1/tracks/unknown{i:015}");
        assert_eq!(egress_get_status(&s.gw, &path, None).await, 404);
    }
    mock_post(
        &s.mock,
        "/__mock/fault",
        Some(json!({"target": "api", "status": 429, "retry_after": 1, "times": 1})),
    )
    .await;
    assert_eq!(
        egress_get_status(&s.gw, "/v1/search?q=a&type=track", None).await,
        429
    );
    assert_eq!(
        egress_get_status(&s.gw, "/v1/search?q=a&type=track", None).await,
        429
    );

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
        r#"spotify_gateway_logins_total{app="default",result="ok"} 1"#,
        r#"spotify_gateway_token_refreshes_total{app="default",result="ok"} 1"#,
        r#"spotify_gateway_token_cache_total{app="default",result="hit"}"#,
        r#"spotify_gateway_spotify_rate_limited_total{app="default",reason="rate_limited"} 1"#,
        r#"spotify_gateway_rate_limited_local_total{app="default",reason="rate_limited"} 1"#,
        r#"spotify_gateway_spotify_rate_limited_total{app="default",reason="quota_exceeded"} 0"#,
        r#"spotify_gateway_rate_limit_blocked_until_timestamp_seconds{app="default"}"#,
        r#"spotify_gateway_store_operations_total{app="default",backend="memory",op="put"}"#,
        r#"spotify_gateway_requests_total{app="default",listener="public",route="/auth/callback",status="3xx"} 1"#,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_carry_no_colour_codes_when_not_written_to_a_terminal() {
    let s = Stack::builder().app(App::Echo).start().await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    let log = s.gw.log();
    assert!(log.contains("login completed"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escape codes in a log file:\n{log}"
    );
}

/// The most verbose level, JSON output, a full login, egress calls, a refresh and a logout:
/// no token, code, state, cookie value or secret appears anywhere in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_at_trace_level_carry_no_secret() {
    let s = Stack::builder()
        .app(App::Echo)
        .set("server.log_level", "trace")
        .set("server.log_format", "json")
        .start()
        .await;
    let b = browser();
    let trip = login(&b, &s.gw, "alice", "/").await;
    let assertion = s.assertion(&b).await;
    assert_eq!(
        egress_get_status(&s.gw, "/v1/me", Some(&assertion)).await,
        200
    );
    mock_post(&s.mock, "/__mock/expire?user=alice", None).await;
    assert_eq!(
        egress_get_status(&s.gw, "/v1/me", Some(&assertion)).await,
        200
    );
    assert_eq!(
        egress_get_status(&s.gw, "/v1/search?q=abba&type=track", None).await,
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
async fn admin_listener_and_logs_expose_no_secret_or_session_data() {
    let s = watched_stack(Stack::builder()).await;
    let alice_login = pending_login(&s.gw, "alice").await;
    let alice = complete(&alice_login).await;
    let bob = session_for(&s.gw, "bob").await;
    let alice_assertion = s.assertion_for(&alice).await;
    let bob_assertion = s.assertion_for(&bob).await;
    for assertion in [&alice_assertion, &bob_assertion] {
        let resp = plain()
            .get(format!("{}/v1/me", s.gw.egress_url()))
            .header("x-gateway-user", assertion)
            .send()
            .await
            .expect("egress");
        assert_eq!(resp.status(), 200);
    }
    // A refresh, so refresh tokens travel too.
    mock_post(&s.mock, "/__mock/expire?user=alice", None).await;
    let resp = plain()
        .get(format!("{}/v1/me", s.gw.egress_url()))
        .header("x-gateway-user", &alice_assertion)
        .send()
        .await
        .expect("egress");
    assert_eq!(resp.status(), 200);
    assert_eq!(token_requests(&s.mock, "refresh_token").await, 1);
    let app_call = plain()
        .get(format!("{}/v1/search?q=a&type=track", s.gw.egress_url()))
        .send()
        .await
        .expect("app token call");
    assert_eq!(app_call.status(), 200);

    // Every secret value in play: what went to Spotify, what the browsers and the app got.
    let mut secrets: Vec<(String, String)> = vec![
        ("client secret".into(), CLIENT_SECRET.into()),
        ("session secret".into(), SESSION_SECRET.into()),
        ("alice's cookie".into(), alice.clone()),
        ("bob's cookie".into(), bob.clone()),
        ("login cookie".into(), alice_login.login_cookie.clone()),
        ("authorization code".into(), alice_login.code.clone()),
        ("state".into(), alice_login.state.clone()),
        ("alice's assertion".into(), alice_assertion.clone()),
        (
            "session key".into(),
            claims_of(&alice_assertion)["sid"]
                .as_str()
                .expect("sid")
                .to_string(),
        ),
    ];
    for r in mock_requests(&s.mock).await {
        if let Some(auth) = r["headers"]["authorization"].as_str() {
            if let Some(token) = auth.strip_prefix("Bearer ") {
                secrets.push(("access token".into(), token.to_string()));
            }
        }
        if let Some(body) = r["body"].as_str() {
            for (k, v) in url::form_urlencoded::parse(body.as_bytes()) {
                if k == "refresh_token" || k == "code" {
                    secrets.push((k.into_owned(), v.into_owned()));
                }
            }
        }
    }
    assert!(
        secrets.iter().any(|(k, _)| k == "refresh_token"),
        "a refresh token was seen"
    );
    assert!(secrets.iter().filter(|(k, _)| k == "access token").count() >= 3);
    // Personal data: the admin listener has no business with users either.
    let personal = ["alice", "bob", "Alice Andersson"];

    let admin = s.gw.admin_url();
    for path in [
        "/metrics",
        "/healthz",
        "/readyz",
        "/",
        "/sessions",
        "/debug/pprof",
        "/metrics/../auth/userinfo",
        "/auth/userinfo",
    ] {
        let resp = plain()
            .get(format!("{admin}{path}"))
            .header("cookie", format!("{SESSION_COOKIE}={alice}"))
            .send()
            .await
            .expect("admin");
        let status = resp.status().as_u16();
        let known = matches!(path, "/metrics" | "/healthz" | "/readyz");
        assert_eq!(status, if known { 200 } else { 404 }, "{path}");
        let headers = format!("{:?}", resp.headers());
        let text = format!("{headers}\n{}", resp.text().await.expect("body"));
        for (what, value) in secrets.iter() {
            assert!(!text.contains(value.as_str()), "{path} shows the {what}");
        }
        for who in personal {
            assert!(!text.contains(who), "{path} names {who}");
        }
    }
    // Nor does the log (user ids are logged only with server.log_user_id).
    let log = s.gw.log();
    for (what, value) in &secrets {
        assert!(!log.contains(value.as_str()), "the log shows the {what}");
    }
}

#[test]
fn debug_formatting_of_config_and_sessions_shows_no_secret() {
    let secret_file = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(
        secret_file.path(),
        "previous-session-secret-from-a-file-0123456\n",
    )
    .expect("write");
    let text = format!(
        r#"
[spotify]
client_id = "abc"
client_secret_env = "CLIENT_SECRET"
redirect_uri = "https://gw.example/auth/callback"

[session]
secret = "inline-session-secret-0123456789abcdef-0"
previous_secret_file = "{}"

[store]
backend = "redis"
url = "redis://default:url-password-42@redis.example:6379"
"#,
        secret_file.path().display()
    );
    let env = |name: &str| (name == "CLIENT_SECRET").then(|| "env-client-secret-xyz".to_string());
    let config = Config::parse(&text, "t.toml", &env).expect("valid");
    let record = SessionRecord {
        user_id: "alice".into(),
        account_id: None,
        display_name: Some("Alice".into()),
        scopes: Scopes::new(&["user-read-email"]),
        access_token: AccessToken::new("BQAccess-token-value-123"),
        access_expires_at_ms: 1,
        access_lifetime_ms: 1,
        refresh_token: RefreshToken::new("AQRefresh-token-value-456"),
        created_at_ms: 1,
        reauth_by_ms: None,
        updated_at_ms: 1,
        expires_at_ms: 1,
    };
    let formatted = [
        format!("{config:?}"),
        format!("{config:#?}"),
        config.to_redacted_toml(),
        format!("{record:?}"),
        format!("{record:#?}"),
    ];
    for out in &formatted {
        for secret in [
            "env-client-secret-xyz",
            "inline-session-secret",
            "previous-session-secret",
            "url-password-42",
            "BQAccess-token-value",
            "AQRefresh-token-value",
        ] {
            assert!(!out.contains(secret), "{secret} in:\n{out}");
        }
    }
    // What is shown instead says where each secret comes from.
    assert!(
        formatted[0].contains("env CLIENT_SECRET"),
        "{}",
        formatted[0]
    );
    assert!(formatted[3].contains("redacted"), "{}", formatted[3]);
}
