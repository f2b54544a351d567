//! Audit events and webhooks (issue 17), through the real gateway: every event type reached
//! by what causes it, as one JSON line on the log target `audit` (users hashed unless
//! `server.log_user_id`), and delivered, signed, to real HTTP receivers — one that answers
//! 500 twice, one that never answers, one that is down — and to HTTPS receivers whose
//! certificate the webhook's client verifies (`ca_file`, or the system's roots).

mod common;

use std::time::Duration;

use common::*;
use mock_spotify::{TestCa, Validity};
use serde_json::{json, Value};

const WEBHOOK_SECRET: &str = "test-webhook-secret-do-not-log-0123";
const WEBHOOK_SECRET_VAR: &str = "TEST_WEBHOOK_SECRET";
const ADMIN_TOKEN: &str = "test-admin-token-for-events-0123";
const WAIT: Duration = Duration::from_secs(15);

/// The audit lines in the gateway's log: each a whole line that is one JSON object with an
/// `evt_` id.
fn audit_lines(gw: &Gateway) -> Vec<Value> {
    gw.log()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|v| v["id"].as_str().is_some_and(|id| id.starts_with("evt_")))
        .collect()
}

fn of_type<'a>(lines: &'a [Value], kind: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["type"] == kind).collect()
}

/// Waits until the log has an audit line of `kind`, and returns the lines of that kind.
async fn wait_for_event(gw: &Gateway, kind: &str) -> Vec<Value> {
    gw.wait_until(WAIT, format!("an audit line of type {kind}"), || async {
        !of_type(&audit_lines(gw), kind).is_empty()
    })
    .await;
    of_type(&audit_lines(gw), kind)
        .into_iter()
        .cloned()
        .collect()
}

/// `[[webhooks]]` entries, as TOML tables.
fn webhooks(doc: &mut toml_edit::DocumentMut, hooks: &[toml_edit::Table]) {
    let mut array = toml_edit::ArrayOfTables::new();
    for hook in hooks {
        array.push(hook.clone());
    }
    doc["webhooks"] = toml_edit::Item::ArrayOfTables(array);
}

fn hook(name: &str, url: &str, extra: &[(&str, toml_edit::Value)]) -> toml_edit::Table {
    let mut t = toml_edit::Table::new();
    t["name"] = toml_edit::value(name);
    t["url"] = toml_edit::value(url);
    t["secret_env"] = toml_edit::value(WEBHOOK_SECRET_VAR);
    for (k, v) in extra {
        t[*k] = toml_edit::Item::Value(v.clone());
    }
    t
}

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

/// `POST /auth/disconnect` with the form token its JSON answer gives, from the gateway's
/// own origin.
async fn disconnect(b: &reqwest::Client, gw: &Gateway) -> u16 {
    let form: Value = b
        .get(format!("{}/auth/disconnect", gw.public_url()))
        .send()
        .await
        .expect("disconnect form")
        .json()
        .await
        .expect("json");
    let token = form["csrf_token"].as_str().expect("token").to_string();
    b.post(format!("{}/auth/disconnect", gw.public_url()))
        .header("origin", gw.public_url())
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .expect("disconnect")
        .status()
        .as_u16()
}

async fn logout(b: &reqwest::Client, gw: &Gateway) {
    let resp = b
        .post(format!("{}/auth/logout", gw.public_url()))
        .send()
        .await
        .expect("logout");
    assert_eq!(resp.status(), 200);
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
    assert_eq!(disconnect(&b3, &s.gw).await, 200);
    let b4 = browser();
    login(&b4, &s.gw, "alice", "/").await;
    let resp = reqwest::Client::new()
        .delete(format!("{}/admin/v1/users/alice", s.gw.admin_url()))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("revoke");
    assert_eq!(resp.status(), 200);

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
            "spotify_gateway_audit_events_total{type=\"login.succeeded\"}",
            5.0,
        ),
        (
            "spotify_gateway_audit_events_total{type=\"session.ended\"}",
            1.0,
        ),
        (
            "spotify_gateway_audit_events_total{type=\"login.denied\"}",
            1.0,
        ),
        (
            "spotify_gateway_sessions_ended_total{reason=\"signed_out\"}",
            1.0,
        ),
        (
            "spotify_gateway_sessions_ended_total{reason=\"invalid_grant\"}",
            1.0,
        ),
        (
            "spotify_gateway_sessions_ended_total{reason=\"disconnected\"}",
            1.0,
        ),
        (
            "spotify_gateway_sessions_ended_total{reason=\"revoked\"}",
            1.0,
        ),
        (
            "spotify_gateway_sessions_ended_total{reason=\"deadline\"}",
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
        s.metric("spotify_gateway_sessions_ended_total{reason=\"deadline\"}")
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

/// A receiver that answers 500 twice, then 200: three attempts of the same event, each signed
/// (checked with the receiver's own HMAC), and the counters say retried 2, delivered 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_event_is_retried_after_two_500s_and_then_delivered() {
    let receiver = WebhookReceiver::start(Answer::FailFirst(2)).await;
    let url = receiver.url.clone();
    let s = Stack::builder()
        .app(App::Echo)
        .env(WEBHOOK_SECRET_VAR, WEBHOOK_SECRET)
        .edit(move |doc| {
            let only_logins =
                toml_edit::Value::from(toml_edit::Array::from_iter(["login.succeeded"]));
            webhooks(doc, &[hook("audit", &url, &[("events", only_logins)])]);
        })
        .start()
        .await;
    assert_eq!(
        s.metric("spotify_gateway_webhook_failing{webhook=\"audit\"}")
            .await,
        0.0,
        "initialised"
    );
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    logout(&b, &s.gw).await; // not wanted by this webhook
    s.gw.wait_until(WAIT, "three attempts at the receiver", || async {
        receiver.received().len() >= 3
    })
    .await;
    let got = receiver.received();
    assert_eq!(got.len(), 3, "{got:#?}");
    let statuses: Vec<Option<u16>> = got.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [Some(500), Some(500), Some(200)]);
    let id = got[0].event_id().to_string();
    assert!(id.starts_with("evt_"), "{id}");
    for r in &got {
        assert_eq!(r.event_id(), id, "the same event each time");
        assert_eq!(r.header("content-type"), "application/json");
        assert!(r.header("user-agent").starts_with("spotify-gateway/"));
        let sig = r.header("spotify-gateway-signature");
        assert!(sig.starts_with("t=") && sig.contains(",v1="), "{sig}");
        assert!(signature_valid(WEBHOOK_SECRET, sig, &r.body), "{sig}");
        // A tampered body or another secret does not verify.
        let mut tampered = r.body.clone();
        tampered[1] ^= 0x01;
        assert!(!signature_valid(WEBHOOK_SECRET, sig, &tampered));
        assert!(!signature_valid("another-secret", sig, &r.body));
        assert_eq!(r.json()["type"], "login.succeeded");
    }
    // The body is the audit line's event.
    let audit = wait_for_event(&s.gw, "login.succeeded").await;
    assert_eq!(got[0].json(), audit[0]);
    for (result, value) in [("delivered", 1.0), ("retried", 2.0), ("dropped", 0.0)] {
        let series = format!(
            "spotify_gateway_webhook_deliveries_total{{result=\"{result}\",webhook=\"audit\"}}"
        );
        assert_eq!(s.metric(&series).await, value, "{series}");
    }
    assert_eq!(
        s.metric("spotify_gateway_webhook_failing{webhook=\"audit\"}")
            .await,
        0.0
    );
    assert!(!s.gw.log().contains(WEBHOOK_SECRET));
}

/// One receiver never answers, another is down: sign-in completes while the first still holds
/// the first delivery's connection open (so the request path did not wait for it), the stuck
/// webhook's small queue fills and drops the rest, and the down one retries then gives up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receivers_that_hang_or_are_down_never_delay_sign_in_and_overflow_is_dropped() {
    let stuck = WebhookReceiver::start(Answer::Never).await;
    let down = format!("http://127.0.0.1:{}/hook", free_port());
    let stuck_url = stuck.url.clone();
    let s = Stack::builder()
        .app(App::Echo)
        .env(WEBHOOK_SECRET_VAR, WEBHOOK_SECRET)
        .edit(move |doc| {
            webhooks(
                doc,
                &[
                    hook(
                        "stuck",
                        &stuck_url,
                        &[("queue_size", 4.into()), ("timeout", "60s".into())],
                    ),
                    hook("down", &down, &[("give_up_after", "2s".into())]),
                ],
            );
        })
        .start()
        .await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    assert_eq!(s.userinfo(&b).await.0, 200, "signed in");
    s.gw.wait_until(
        WAIT,
        "the stuck receiver to hold the first delivery",
        || async { stuck.held() == 1 },
    )
    .await;
    // More sign-ins and sign-outs while it holds it: 2 more events per round.
    for _ in 0..4 {
        logout(&b, &s.gw).await;
        login(&b, &s.gw, "alice", "/").await;
        assert_eq!(s.userinfo(&b).await.0, 200, "signed in again");
    }
    // 9 events: one held, four queued, four dropped.
    assert_eq!(stuck.held(), 1);
    assert_eq!(stuck.received().len(), 1);
    let series = |name: &str, result: &str| {
        format!(
            "spotify_gateway_webhook_deliveries_total{{result=\"{result}\",webhook=\"{name}\"}}"
        )
    };
    assert_eq!(s.metric(&series("stuck", "dropped")).await, 4.0);
    assert_eq!(s.metric(&series("stuck", "delivered")).await, 0.0);
    assert_eq!(
        s.metric("spotify_gateway_webhook_queue_depth{webhook=\"stuck\"}")
            .await,
        4.0
    );
    // The down receiver: attempts fail at once, are retried, then given up (2 s) and dropped.
    s.gw.wait_until(WAIT, "the down webhook to retry and give up", || async {
        s.metric(&series("down", "retried")).await >= 1.0
            && s.metric(&series("down", "dropped")).await >= 1.0
    })
    .await;
    assert_eq!(
        s.metric("spotify_gateway_webhook_failing{webhook=\"down\"}")
            .await,
        1.0
    );
    assert_eq!(s.metric(&series("down", "delivered")).await, 0.0);
    let log = s.gw.log();
    assert!(log.contains("webhook delivery given up"), "{log}");
    // The operator reads why: the cause under reqwest's "error sending request".
    assert!(log.contains("Connection refused"), "{log}");
    assert!(!log.contains(WEBHOOK_SECRET));
}

/// `give_up_after` counts from when an event was queued: events that waited behind a failing
/// delivery past it are given up without an attempt, not retried one outage each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_that_waited_past_give_up_after_behind_a_failing_one_are_dropped_unsent() {
    let stuck = WebhookReceiver::start(Answer::Never).await;
    let stuck_url = stuck.url.clone();
    let s = Stack::builder()
        .app(App::Echo)
        .env(WEBHOOK_SECRET_VAR, WEBHOOK_SECRET)
        .edit(move |doc| {
            webhooks(
                doc,
                &[hook(
                    "slow",
                    &stuck_url,
                    &[("timeout", "3s".into()), ("give_up_after", "1s".into())],
                )],
            );
        })
        .start()
        .await;
    let b = browser();
    // Three events at once: the first one's attempt hangs until its 3 s timeout.
    login(&b, &s.gw, "alice", "/").await;
    logout(&b, &s.gw).await;
    login(&b, &s.gw, "alice", "/").await;
    let dropped = "spotify_gateway_webhook_deliveries_total{result=\"dropped\",webhook=\"slow\"}";
    s.gw.wait_until(WAIT, "all three events to be given up", || async {
        s.metric(dropped).await == 3.0
    })
    .await;
    // Only the first was ever sent: the two behind it were past give_up_after when its
    // attempt timed out.
    assert_eq!(stuck.received().len(), 1, "{:#?}", stuck.received());
    assert_eq!(
        s.metric("spotify_gateway_webhook_deliveries_total{result=\"retried\",webhook=\"slow\"}")
            .await,
        0.0
    );
    let log = s.gw.log();
    assert!(
        log.contains("waited in the queue past webhooks.give_up_after"),
        "{log}"
    );
}

/// Config mistakes name the key of the entry and its line; an inline secret is refused.
#[tokio::test]
async fn webhook_config_mistakes_name_the_key_and_the_line() {
    let ports = Ports::new();
    let base = GatewayConfig::template(ports, "http://127.0.0.1:1")
        .doc()
        .to_string();
    for (entry, key, needle) in [
        (
            "url = \"https://hooks.example/a\"\nsecret = \"inline\"\n",
            "webhooks[0].secret",
            "never inline",
        ),
        ("url = \"https://hooks.example/a\"\n", "webhooks[0].secret_env", "missing"),
        (
            "url = \"ftp://hooks.example/a\"\nsecret_env = \"TEST_WEBHOOK_SECRET\"\n",
            "webhooks[0].url",
            "http",
        ),
        (
            "url = \"https://hooks.example/a\"\nsecret_env = \"TEST_WEBHOOK_SECRET\"\nevents = [\"login.ok\"]\n",
            "webhooks[0].events",
            "login.succeeded",
        ),
        (
            "url = \"https://hooks.example/a\"\nsecret_env = \"TEST_WEBHOOK_SECRET\"\nqueue_size = 0\n",
            "webhooks[0].queue_size",
            "out of range",
        ),
    ] {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("gateway.toml");
        let text = format!("{base}\n[[webhooks]]\n{entry}");
        let line = text.lines().count() - entry.lines().count()
            + entry
                .lines()
                .position(|l| l.starts_with(key.rsplit('.').next().unwrap_or_default()))
                .map_or(1, |p| p + 1);
        std::fs::write(&path, &text).expect("write");
        let (code, _, err) = run_cli(
            &["check-config", "--config", path.to_str().expect("path")],
            &[
                ("TEST_CLIENT_SECRET", CLIENT_SECRET),
                ("TEST_SESSION_SECRET", SESSION_SECRET),
                ("TEST_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ],
        );
        assert_ne!(code, 0, "{entry}");
        assert!(
            err.contains(&format!("line {line}, key `{key}`")),
            "{entry}: want line {line} {key}: {err}"
        );
        assert!(err.contains(needle), "{entry}: {err}");
        assert!(!err.contains("inline\""), "the value is not echoed: {err}");
    }
}

/// A test CA with its certificate in a file a webhook's `ca_file` can name.
struct CaFile {
    ca: TestCa,
    _dir: tempfile::TempDir,
    path: String,
}

impl CaFile {
    fn new(name: &str) -> CaFile {
        let ca = TestCa::new(name);
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, ca.cert_pem()).expect("write the CA");
        CaFile {
            ca,
            path: path.display().to_string(),
            _dir: dir,
        }
    }
}

fn delivery_series(webhook: &str, result: &str) -> String {
    format!("spotify_gateway_webhook_deliveries_total{{result=\"{result}\",webhook=\"{webhook}\"}}")
}

/// An https receiver whose certificate comes from a test CA, trusted through the webhook's
/// `ca_file`: the event arrives over TLS, signed, the same event as the audit line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_receiver_is_trusted_through_ca_file_and_gets_signed_events() {
    let ca = CaFile::new("webhook CA");
    let receiver =
        WebhookReceiver::start_tls(Answer::Ok, &ca.ca.issue(&["127.0.0.1"], Validity::Current))
            .await;
    assert!(
        receiver.url.starts_with("https://127.0.0.1:"),
        "{}",
        receiver.url
    );
    let (url, ca_file) = (receiver.url.clone(), ca.path.clone());
    let s = Stack::builder()
        .app(App::Echo)
        .env(WEBHOOK_SECRET_VAR, WEBHOOK_SECRET)
        .edit(move |doc| {
            webhooks(
                doc,
                &[hook(
                    "secure",
                    &url,
                    &[("ca_file", ca_file.as_str().into())],
                )],
            );
        })
        .start()
        .await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    logout(&b, &s.gw).await;
    s.gw.wait_until(WAIT, "two deliveries over TLS", || async {
        receiver.received().len() >= 2
    })
    .await;
    let got = receiver.received();
    let types: Vec<Value> = got.iter().map(|r| r.json()["type"].clone()).collect();
    assert_eq!(types, ["login.succeeded", "session.signed_out"], "{got:#?}");
    for r in &got {
        let sig = r.header("spotify-gateway-signature");
        assert!(signature_valid(WEBHOOK_SECRET, sig, &r.body), "{sig}");
    }
    let audit = wait_for_event(&s.gw, "login.succeeded").await;
    assert_eq!(got[0].json(), audit[0]);
    assert_eq!(receiver.refused(), 0);
    s.gw.wait_until(WAIT, "both counted as delivered", || async {
        s.metric(&delivery_series("secure", "delivered")).await == 2.0
    })
    .await;
    assert_eq!(s.metric(&delivery_series("secure", "retried")).await, 0.0);
    assert_eq!(
        s.metric("spotify_gateway_webhook_failing{webhook=\"secure\"}")
            .await,
        0.0
    );
}

/// One way a receiver's certificate can fail the webhook client's verification.
struct Refusal {
    webhook: &'static str,
    /// Whether the webhook names the test CA as its `ca_file`.
    with_ca_file: bool,
    /// The cause and the remedy the log line must carry.
    cause: &'static str,
    remedy: &'static str,
    cert: fn(trusted: &TestCa) -> mock_spotify::MockTls,
}

const REFUSALS: &[Refusal] = &[
    Refusal {
        webhook: "system-roots",
        with_ca_file: false,
        cause: "certificate not trusted",
        remedy: "set this webhook's ca_file",
        cert: |trusted| trusted.issue(&["127.0.0.1"], Validity::Current),
    },
    Refusal {
        webhook: "other-ca",
        with_ca_file: true,
        cause: "certificate not trusted",
        remedy: "set this webhook's ca_file",
        cert: |_| TestCa::new("a CA nobody trusts").issue(&["127.0.0.1"], Validity::Current),
    },
    Refusal {
        webhook: "expired",
        with_ca_file: true,
        cause: "certificate expired",
        remedy: "renewed",
        cert: |trusted| trusted.issue(&["127.0.0.1"], Validity::Expired),
    },
    Refusal {
        webhook: "wrong-name",
        with_ca_file: true,
        cause: "certificate for the wrong name",
        remedy: "check the host in this webhook's url",
        cert: |trusted| trusted.issue(&["wrong.example"], Validity::Current),
    },
];

/// Receivers whose certificate does not verify — from a CA only in a `ca_file` the webhook
/// does not name (system roots only), from another CA, expired, for another name — get no
/// event: each attempt is refused in the handshake and retried, the webhook is failing, and
/// the log line for the attempt names the webhook, the cause and what the operator can do.
/// Sign-in completes meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_receivers_with_certificates_that_do_not_verify_get_nothing_and_the_log_says_why() {
    let ca = CaFile::new("webhook CA");
    let mut receivers = Vec::new();
    let mut hooks = Vec::new();
    for case in REFUSALS {
        let receiver = WebhookReceiver::start_tls(Answer::Ok, &(case.cert)(&ca.ca)).await;
        let mut extra = vec![];
        if case.with_ca_file {
            extra.push(("ca_file", ca.path.as_str().into()));
        }
        hooks.push(hook(case.webhook, &receiver.url, &extra));
        receivers.push(receiver);
    }
    let s = Stack::builder()
        .app(App::Echo)
        .env(WEBHOOK_SECRET_VAR, WEBHOOK_SECRET)
        .edit(move |doc| webhooks(doc, &hooks))
        .start()
        .await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    assert_eq!(s.userinfo(&b).await.0, 200, "signed in");

    for (case, receiver) in REFUSALS.iter().zip(&receivers) {
        let name = case.webhook;
        s.gw.wait_until(
            WAIT,
            format!("{name}: a refused attempt retried"),
            || async {
                receiver.refused() >= 2 && s.metric(&delivery_series(name, "retried")).await >= 1.0
            },
        )
        .await;
        assert!(
            receiver.received().is_empty(),
            "{name}: nothing got through"
        );
        assert_eq!(
            s.metric(&delivery_series(name, "delivered")).await,
            0.0,
            "{name}"
        );
        assert_eq!(
            s.metric(&format!(
                "spotify_gateway_webhook_failing{{webhook=\"{name}\"}}"
            ))
            .await,
            1.0,
            "{name}"
        );
        let log = s.gw.log();
        let line = log
            .lines()
            .find(|l| {
                l.contains("webhook delivery failed, will retry")
                    && l.contains(&format!("webhook={name} "))
            })
            .unwrap_or_else(|| panic!("{name}: no log line for the failed attempt\n{log}"));
        assert!(line.contains("WARN"), "{name}: {line}");
        assert!(line.contains(case.cause), "{name}: {line}");
        assert!(line.contains(case.remedy), "{name}: {line}");
        assert!(!line.contains(&receiver.url), "{name}: no URL: {line}");
    }
    // The webhooks' trouble is not Spotify's: that counter stays at zero.
    assert_eq!(
        s.metric("spotify_gateway_upstream_tls_failures_total")
            .await,
        0.0
    );
    assert_eq!(s.userinfo(&b).await.0, 200, "still signed in");
    assert!(!s.gw.log().contains(WEBHOOK_SECRET));
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
