//! Webhooks (issue 17), through the real gateway: audit events delivered, signed, to real
//! HTTP receivers — one that answers 500 twice, one that never answers, one that is down —
//! without delaying sign-in, the overflow and what waited too long dropped; to HTTPS
//! receivers whose certificate the webhook's client verifies (`ca_file`, or the system's
//! roots), and to none whose certificate does not verify; and `[[webhooks]]` mistakes named
//! by key and line.

mod common;

use std::time::Duration;

use common::*;
use mock_spotify::{TestCa, Validity};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);

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

fn delivery_series(webhook: &str, result: &str) -> String {
    format!("spotify_gateway_webhook_deliveries_total{{result=\"{result}\",webhook=\"{webhook}\"}}")
}

/// An https receiver whose certificate comes from a test CA, trusted through the webhook's
/// `ca_file`: the event arrives over TLS, signed, the same event as the audit line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_receiver_is_trusted_through_ca_file_and_gets_signed_events() {
    let ca = Ca::new("webhook CA");
    let receiver =
        WebhookReceiver::start_tls(Answer::Ok, &ca.ca.issue(&["127.0.0.1"], Validity::Current))
            .await;
    assert!(
        receiver.url.starts_with("https://127.0.0.1:"),
        "{}",
        receiver.url
    );
    let (url, ca_file) = (receiver.url.clone(), ca.file().to_string());
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
    let ca = Ca::new("webhook CA");
    let mut receivers = Vec::new();
    let mut hooks = Vec::new();
    for case in REFUSALS {
        let receiver = WebhookReceiver::start_tls(Answer::Ok, &(case.cert)(&ca.ca)).await;
        let mut extra = vec![];
        if case.with_ca_file {
            extra.push(("ca_file", ca.file().into()));
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
