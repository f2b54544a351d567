//! Audit events (issue 17), through the real gateway: every event type reached by what causes
//! it, as one JSON line on the log target `audit` (users hashed unless `server.log_user_id`),
//! each with its id, time and request id (also an admin revocation's). Their delivery to
//! webhooks is tests/webhooks.rs.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const ADMIN_TOKEN: &str = "test-admin-token-for-events-0123";

const WAIT: Duration = Duration::from_secs(15);

fn with_admin(b: StackBuilder) -> StackBuilder {
    b.edit(|doc| {
        let mut admin = toml_edit::Table::new();
        admin["token_env"] = toml_edit::value("TEST_ADMIN_TOKEN");
        doc["admin"] = toml_edit::Item::Table(admin);
    })
    .env("TEST_ADMIN_TOKEN", ADMIN_TOKEN)
}

/// A login up to the callback where the user declines at Spotify's consent page.
async fn declined_login(b: &reqwest::Client, gw: &Gateway) -> reqwest::Response {
    let resp = b
        .get(format!("{}/auth/login", gw.public_url()))
        .send()
        .await
        .expect("login");
    let authorize = location(&resp);
    let resp = b
        .get(format!("{authorize}&mock_user=alice&mock_decision=deny"))
        .send()
        .await
        .expect("authorize");
    b.get(location(&resp)).send().await.expect("callback")
}

/// Every catalogued event the gateway can be driven to, at `log_level = "warn"` (audit lines
/// are always on), each line with its id, time and request id, the user hashed, nothing
/// secret anywhere in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_one_audit_line_with_the_user_hashed_and_nothing_secret() {
    // Extended quota, where Spotify tells the product `allowed_products` reads; development
    // mode only for carol, whom such an app refuses.
    let s = with_admin(Stack::builder().app(App::Echo))
        .mock_config(|c| c.mode = mock_spotify::AppMode::ExtendedQuota)
        .set("server.log_level", "warn")
        .edit(|doc| {
            let mut access = toml_edit::Table::new();
            access["allowed_products"] = toml_edit::value(toml_edit::Array::from_iter(["premium"]));
            doc["access"] = toml_edit::Item::Table(access);
            doc["playback"] = toml_edit::table();
            doc["playback"]["enabled"] = toml_edit::value(true);
            let mut scopes = toml_edit::Array::new();
            scopes.push("user-read-private");
            scopes.push("streaming");
            doc["spotify"]["scopes"] = toml_edit::value(scopes);
        })
        .start()
        .await;
    let mut known_secrets = vec![
        CLIENT_SECRET.to_string(),
        SESSION_SECRET.to_string(),
        ADMIN_TOKEN.to_string(),
    ];

    // Sign-in, then sign-out.
    let b1 = browser();
    let trip = login(&b1, &s.gw, "alice", "/").await;
    known_secrets.push(trip.session_cookie());
    known_secrets.push(s.assertion(&b1).await);
    logout(&b1, &s.gw).await;

    // Spotify revokes the refresh token: the next refresh gets invalid_grant.
    let b2 = browser();
    let trip = login(&b2, &s.gw, "alice", "/").await;
    known_secrets.push(trip.session_cookie());
    let assertion = s.assertion(&b2).await;
    known_secrets.push(assertion.clone());
    mock_post(&s.mock, "/__mock/revoke?user=alice", None).await;
    let resp = s.egress_get_as(&assertion, "/v1/me").await;
    assert_eq!(resp.status(), 401);

    // A disconnect, then an operator's revocation.
    let b3 = browser();
    login(&b3, &s.gw, "alice", "/").await;
    disconnect(&b3, &s.gw).await;
    let b4 = browser();
    login(&b4, &s.gw, "alice", "/").await;
    revoke_user(&s.gw, "alice", ADMIN_TOKEN).await;

    // Refused sign-ins: declined at Spotify, not registered (carol), not allowed (bob: free).
    assert_eq!(declined_login(&browser(), &s.gw).await.status(), 403);
    mock_post(&s.mock, "/__mock/app", Some(json!({"mode": "development"}))).await;
    let (resp, _, _) = login_callback(&browser(), &s.gw, "carol", "/").await;
    assert_eq!(resp.status(), 403);
    mock_post(
        &s.mock,
        "/__mock/app",
        Some(json!({"mode": "extended_quota"})),
    )
    .await;
    let (resp, _, _) = login_callback(&browser(), &s.gw, "bob", "/").await;
    assert_eq!(resp.status(), 403);

    // The page's playback token (`[playback]`).
    let b5 = browser();
    let trip = login(&b5, &s.gw, "alice", "/").await;
    known_secrets.push(trip.session_cookie());
    let resp = b5
        .get(format!("{}/auth/playback-token", s.gw.public_url()))
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .expect("playback token");
    assert_eq!(resp.status(), 200);
    let token: Value = resp.json().await.expect("json");
    known_secrets.push(token["access_token"].as_str().expect("token").to_string());

    wait_for_event(&s.gw, "token.issued").await;
    let lines = audit_lines(&s.gw);
    let types: Vec<&str> = lines.iter().filter_map(|l| l["type"].as_str()).collect();
    assert_eq!(
        types,
        [
            "login.succeeded",
            "session.signed_out",
            "login.succeeded",
            "session.ended",
            "login.succeeded",
            "session.disconnected",
            "login.succeeded",
            "user.revoked",
            "login.denied",
            "login.not_registered",
            "login.not_allowed",
            "login.succeeded",
            "token.issued",
        ],
        "{lines:#?}"
    );
    let alice = lines[0]["user"].as_str().expect("user").to_string();
    assert_eq!(alice.len(), 32, "a hex hash: {alice}");
    assert_ne!(alice, "alice");
    for line in &lines {
        assert!(
            line["time"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{line}"
        );
        match line["type"].as_str() {
            Some("login.denied" | "login.not_registered") => {
                assert_eq!(line["user"], Value::Null, "{line}");
                assert_eq!(line["user_hashed"], false, "{line}");
            }
            Some("login.not_allowed") => {
                assert_eq!(line["user_hashed"], true, "{line}");
                assert_ne!(line["user"], alice.as_str(), "bob is another user: {line}");
            }
            _ => {
                assert_eq!(line["user"], alice.as_str(), "one user, one hash: {line}");
                assert_eq!(line["user_hashed"], true, "{line}");
            }
        }
        // The events a request caused carry its id (the admin API's too); a refresh runs as
        // its own task.
        let from_request = line["type"] != "session.ended";
        assert_eq!(line["request_id"].is_string(), from_request, "{line}");
    }
    assert_eq!(lines[3]["reason"], "invalid_grant");
    assert_eq!(lines[5]["sessions_ended"], 1);
    assert_eq!(lines[7]["sessions_ended"], 1);
    let ids: std::collections::HashSet<&str> =
        lines.iter().filter_map(|l| l["id"].as_str()).collect();
    assert_eq!(ids.len(), lines.len(), "distinct event ids");

    let log = s.gw.log();
    for secret in &known_secrets {
        let value = secret.split_once('=').map_or(secret.as_str(), |(_, v)| v);
        assert!(!log.contains(value), "a secret reached the log");
    }
    for user in ["alice", "bob", "carol"] {
        for line in &lines {
            assert!(!line.to_string().contains(user), "{user} in {line}");
        }
    }
    // Only the audit lines at `warn`: the ordinary info lines stay off.
    assert!(!log.contains("login completed"), "{log}");

    for (series, value) in [
        (
            "spotify_gateway_audit_events_total{app=\"default\",type=\"login.succeeded\"}",
            5.0,
        ),
        (
            "spotify_gateway_audit_events_total{app=\"default\",type=\"session.ended\"}",
            1.0,
        ),
        (
            "spotify_gateway_audit_events_total{app=\"default\",type=\"login.denied\"}",
            1.0,
        ),
        (
            "spotify_gateway_sessions_ended_total{app=\"default\",reason=\"signed_out\"}",
            1.0,
        ),
        (
            "spotify_gateway_sessions_ended_total{app=\"default\",reason=\"invalid_grant\"}",
            1.0,
        ),
        (
            "spotify_gateway_sessions_ended_total{app=\"default\",reason=\"disconnected\"}",
            1.0,
        ),
        (
            "spotify_gateway_sessions_ended_total{app=\"default\",reason=\"revoked\"}",
            1.0,
        ),
        (
            "spotify_gateway_sessions_ended_total{app=\"default\",reason=\"deadline\"}",
            0.0,
        ),
    ] {
        assert_eq!(s.metric(series).await, value, "{series}");
    }
}

/// `server.log_user_id = true` names the user; a session that reaches its deadline ends with
/// one `session.ended` (reason `deadline`), whichever way the gateway notices first. With
/// `log_format = "json"` the audit line is still the bare event, not wrapped in a log record,
/// and SIGHUP turning `log_user_id` off hashes the next events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_log_user_id_the_user_is_plain_and_the_deadline_ends_a_session_once() {
    let s = Stack::builder()
        .app(App::Echo)
        .set("server.log_user_id", true)
        .set("server.log_format", "json")
        .set("session.reauth_after", "2s")
        .start()
        .await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    let assertion = s.assertion(&b).await;
    let first = wait_for_event(&s.gw, "login.succeeded").await;
    assert_eq!(first[0]["user"], "alice");
    assert_eq!(first[0]["user_hashed"], false);
    assert!(first[0]["account_id"].is_string(), "{}", first[0]);
    wait_until(
        WAIT,
        "the egress to refuse the session at its deadline",
        || async { s.egress_get_as(&assertion, "/v1/me").await.status() == 401 },
    )
    .await;
    // Noticed again by the browser and the egress: still one event.
    assert_eq!(s.userinfo(&b).await.0, 401);
    assert_eq!(s.egress_get_as(&assertion, "/v1/me").await.status(), 401);
    let ended = wait_for_event(&s.gw, "session.ended").await;
    assert_eq!(ended.len(), 1, "{ended:#?}");
    assert_eq!(ended[0]["reason"], "deadline");
    assert_eq!(ended[0]["user"], "alice");
    assert_eq!(
        s.metric("spotify_gateway_sessions_ended_total{app=\"default\",reason=\"deadline\"}")
            .await,
        1.0
    );
    // The other lines are JSON log records; none of them is an audit event a second time.
    let log = s.gw.log();
    assert!(
        log.lines().any(|l| l.contains("\"target\":\"access\"")),
        "{log}"
    );
    assert!(!log.contains("\"target\":\"audit\""), "{log}");

    // SIGHUP: log_user_id off from the next event on.
    let config = s.gw.config().set("server.log_user_id", false);
    s.gw.write_config(&config);
    // SAFETY: plain kill(2) on the gateway child's pid.
    unsafe { libc::kill(s.gw.pid(), libc::SIGHUP) };
    s.gw.wait_until(WAIT, "the reload", || async {
        s.gw.log().contains("config reloaded")
    })
    .await;
    login(&b, &s.gw, "alice", "/").await;
    s.gw.wait_until(WAIT, "a second login.succeeded", || async {
        of_type(&audit_lines(&s.gw), "login.succeeded").len() == 2
    })
    .await;
    let second = of_type(&audit_lines(&s.gw), "login.succeeded")[1].clone();
    assert_eq!(second["user_hashed"], true, "{second}");
    assert_ne!(second["user"], "alice");
}

/// `DELETE /admin/v1/users/{id}` and its `user.revoked` event share one request id: the
/// operator's `X-Request-Id` when well-formed, else the one the answer carries. An over-long
/// or non-printable id is replaced, never echoed, as on the proxy listeners.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_revocation_and_its_event_carry_the_request_id() {
    let s = with_admin(Stack::builder().app(App::Echo)).start().await;
    let admin = reqwest::Client::new();
    let revoke = |id: Option<&'static [u8]>| {
        let mut req = admin
            .delete(format!("{}/admin/v1/users/alice", s.gw.admin_url()))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(id) = id {
            req = req.header(
                "x-request-id",
                reqwest::header::HeaderValue::from_bytes(id).expect("a header value"),
            );
        }
        req.send()
    };
    let answered_id = |resp: &reqwest::Response| {
        resp.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let generated = |id: &str| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());

    login(&browser(), &s.gw, "alice", "/").await;
    let resp = revoke(Some(&b"ops-ticket-4711"[..])).await.expect("revoke");
    assert_eq!(resp.status(), 200);
    assert_eq!(answered_id(&resp), "ops-ticket-4711");

    login(&browser(), &s.gw, "alice", "/").await;
    let resp = revoke(None).await.expect("revoke");
    assert_eq!(resp.status(), 200);
    let fresh = answered_id(&resp);
    assert!(generated(&fresh), "{fresh}");

    const TOO_LONG: &[u8] = &[b'a'; 129];
    login(&browser(), &s.gw, "alice", "/").await;
    let resp = revoke(Some(TOO_LONG)).await.expect("revoke");
    let replaced = answered_id(&resp);
    assert!(generated(&replaced), "{replaced}");

    s.gw.wait_until(WAIT, "three user.revoked events", || async {
        of_type(&audit_lines(&s.gw), "user.revoked").len() == 3
    })
    .await;
    let ids: Vec<Value> = of_type(&audit_lines(&s.gw), "user.revoked")
        .iter()
        .map(|e| e["request_id"].clone())
        .collect();
    assert_eq!(
        ids,
        [
            Value::from("ops-ticket-4711"),
            Value::from(fresh),
            Value::from(replaced)
        ]
    );

    // Every admin API answer has one, a refusal too; a bad id is never echoed.
    for bad in [&b"ticket\t4711"[..], b"ticket 4711", "caf\u{e9}".as_bytes()] {
        let resp = admin
            .get(format!("{}/admin/v1/users", s.gw.admin_url()))
            .header(
                "x-request-id",
                reqwest::header::HeaderValue::from_bytes(bad).expect("a header value"),
            )
            .send()
            .await
            .expect("list");
        assert_eq!(resp.status(), 401, "no token");
        let id = answered_id(&resp);
        assert!(generated(&id), "{bad:?} -> {id}");
    }
}
