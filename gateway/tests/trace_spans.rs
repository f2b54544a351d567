//! The spans inside a request, through the real gateway to a real OTLP receiver
//! (`common/otlp.rs`): the login's calls (the code exchange, `/v1/me`) and store operations,
//! the session lookup, a token refresh and the followers that wait for it (linked to it), the
//! route template of an egress call, a retry, the budget's wait, the cool-down, forward-auth's
//! check, a webhook delivery, and the app each span is for.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

/// OTLP span kinds and the error status.
const INTERNAL: i32 = 1;
const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const ERROR: i32 = 2;

/// A stack with tracing on, every trace kept, exporting to `receiver`.
fn traced(receiver: &OtlpReceiver) -> StackBuilder {
    Stack::builder()
        .app(App::Echo)
        .edit(|doc| doc["tracing"] = toml_edit::table())
        .set("tracing.enabled", true)
        .set("tracing.otlp_endpoint", receiver.url.as_str())
        .set("tracing.sample_ratio", 1.0)
}

/// The spans of one trace named `name`, children of `parent`.
fn children(receiver: &OtlpReceiver, parent: &ExportedSpan, name: &str) -> Vec<ExportedSpan> {
    receiver
        .spans()
        .into_iter()
        .filter(|s| s.parent_span_id == parent.span_id && s.name == name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_and_a_refreshed_call_show_their_calls_lookups_and_store_operations() {
    let receiver = OtlpReceiver::start().await;
    let lifetime = Duration::from_secs(60);
    let s = traced(&receiver).token_lifetime(lifetime).start().await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    let callback = receiver
        .span("the callback", |sp| {
            sp.attr("http.route") == Some("/auth/callback")
        })
        .await;
    // The code exchange and `/v1/me` are the callback's client spans.
    let exchange = receiver
        .span("the code exchange", |sp| {
            sp.name == "POST /api/token" && sp.parent_span_id == callback.span_id
        })
        .await;
    assert_eq!(exchange.kind, CLIENT);
    assert_eq!(
        exchange.attr("oauth.grant_type"),
        Some("authorization_code")
    );
    assert_eq!(
        exchange.attr("server.address"),
        Some("127.0.0.1"),
        "{exchange:?}"
    );
    assert_ne!(exchange.status, ERROR);
    let me = receiver
        .span("the /v1/me call", |sp| {
            sp.name == "GET /v1/me" && sp.parent_span_id == callback.span_id
        })
        .await;
    assert_eq!(me.kind, CLIENT);
    assert_eq!(me.attr("http.response.status_code"), Some("200"));
    assert_eq!(me.attr("http.request.method"), Some("GET"));
    // The session it stored: a store operation, with its backend and operation.
    let stored = receiver
        .span("a store write of the login", |sp| {
            sp.name == "store"
                && sp.trace_id == callback.trace_id
                && sp.attr("gateway.store.op") == Some("put")
        })
        .await;
    assert_eq!(
        stored.attr("gateway.store.backend"),
        Some("memory"),
        "{stored:?}"
    );

    // An egress call whose token ran out: the session lookup, the refresh and its own calls.
    let assertion = s.assertion(&b).await;
    s.gw.advance_clock(lifetime).await;
    let resp = s
        .egress_as(&assertion, "/v1/me")
        .header("x-request-id", "req-refreshed")
        .send()
        .await
        .expect("egress");
    assert_eq!(resp.status(), 200);
    let request = receiver.request_span("req-refreshed").await;
    assert_eq!(request.kind, SERVER);
    assert_eq!(request.attr("http.request.method"), Some("GET"));
    assert_eq!(request.attr("server.address"), Some("127.0.0.1"));
    let lookup = receiver
        .span("the session lookup", |sp| {
            sp.name == "session lookup" && sp.parent_span_id == request.span_id
        })
        .await;
    assert_eq!(lookup.kind, INTERNAL);
    assert_eq!(lookup.attr("gateway.session.lookup"), Some("found"));
    let refresh = receiver
        .span("the refresh", |sp| {
            sp.name == "token refresh" && sp.parent_span_id == request.span_id
        })
        .await;
    let token_call = receiver
        .span("the refresh's token request", |sp| {
            sp.name == "POST /api/token" && sp.parent_span_id == refresh.span_id
        })
        .await;
    assert_eq!(token_call.attr("oauth.grant_type"), Some("refresh_token"));
    let lock = receiver
        .span("the refresh's store lock", |sp| {
            sp.name == "store"
                && sp.parent_span_id == refresh.span_id
                && sp.attr("gateway.store.op") == Some("lock")
        })
        .await;
    assert_eq!(lock.attr("gateway.store.backend"), Some("memory"));
    // The call to Spotify, by OpenTelemetry's HTTP conventions for a client span.
    let call = receiver
        .span("the call", |sp| {
            sp.name == "spotify call" && sp.parent_span_id == request.span_id
        })
        .await;
    assert_eq!(call.attr("http.request.method"), Some("GET"));
    assert_eq!(call.attr("url.template"), Some("/v1/me"));
    assert_eq!(call.attr("server.address"), Some("127.0.0.1"));
    assert!(call.attr("server.port").is_some(), "{call:?}");

    // The user as the audit events name them: the keyed hash, never the id.
    let events = wait_for_event(&s.gw, "login.succeeded").await;
    let hash = events[0]["user"].as_str().expect("hashed user");
    assert_ne!(hash, "alice");
    assert_eq!(request.attr("enduser.pseudo.id"), Some(hash), "{request:?}");
    assert_eq!(request.attr("enduser.id"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_followers_of_a_refresh_link_to_the_leaders_span() {
    let receiver = OtlpReceiver::start().await;
    let lifetime = Duration::from_secs(60);
    let s = traced(&receiver).token_lifetime(lifetime).start().await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    let assertion = s.assertion(&b).await;
    s.gw.advance_clock(lifetime).await;
    // A slow token endpoint: the calls arriving meanwhile wait for the one refresh.
    s.fault(json!({"target": "token", "delay_ms": 3000, "times": 1}))
        .await;
    let calls = (0..3).map(|i| {
        s.egress_as(&assertion, "/v1/me")
            .header("x-request-id", format!("req-wave-{i}"))
            .send()
    });
    for resp in futures::future::join_all(calls).await {
        assert_eq!(resp.expect("egress").status(), 200);
    }
    let refresh = receiver
        .span("the leader's refresh", |sp| sp.name == "token refresh")
        .await;
    let follower = receiver
        .span("a follower's wait", |sp| sp.name == "token refresh wait")
        .await;
    assert_eq!(
        follower.links,
        vec![(refresh.trace_id.clone(), refresh.span_id.clone())],
        "{follower:?}"
    );
    assert_ne!(
        follower.trace_id, refresh.trace_id,
        "another request's trace"
    );
    let refreshes = receiver
        .spans()
        .into_iter()
        .filter(|sp| sp.name == "token refresh")
        .count();
    assert_eq!(refreshes, 1, "one refresh for the three calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_egress_call_shows_its_template_retries_budget_and_cool_down() {
    let receiver = OtlpReceiver::start().await;
    let s = traced(&receiver)
        .set("egress.budget_per_30s", 100)
        .start()
        .await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    let assertion = s.assertion(&b).await;

    // The route template, never the id; the budget's wait is a span.
    let resp = s
        .egress_as(&assertion, "/v1/playlists/p1secretish9/items?limit=2")
        .header("x-request-id", "req-items")
        .send()
        .await
        .expect("egress");
    assert!(resp.status().as_u16() < 500, "{}", resp.status());
    let items = receiver.request_span("req-items").await;
    assert_eq!(
        items.attr("spotify.endpoint"),
        Some("/v1/playlists/{id}/items")
    );
    let budget = receiver
        .span("the budget's wait", |sp| {
            sp.name == "budget wait" && sp.parent_span_id == items.span_id
        })
        .await;
    assert_ne!(budget.status, ERROR);
    let resp = s
        .egress_as(&assertion, "/v1/me/player/play")
        .header("x-request-id", "req-play")
        .send()
        .await
        .expect("egress");
    assert!(resp.status().as_u16() < 500, "{}", resp.status());
    let play = receiver.request_span("req-play").await;
    assert_eq!(play.attr("spotify.endpoint"), Some("/v1/me/player/play"));

    // A 503, then the retry: the backoff and each attempt with its number.
    s.fault(json!({"target": "api", "status": 503, "times": 1}))
        .await;
    let resp = s
        .egress_as(&assertion, "/v1/me")
        .header("x-request-id", "req-retried")
        .send()
        .await
        .expect("egress");
    assert_eq!(resp.status(), 200);
    let retried = receiver.request_span("req-retried").await;
    let backoff = children(&receiver, &retried, "retry backoff");
    assert_eq!(backoff.len(), 1, "{backoff:?}");
    assert_eq!(backoff[0].attr("http.request.resend_count"), Some("1"));
    let mut attempts = children(&receiver, &retried, "spotify call");
    attempts.sort_by_key(|sp| sp.attr("http.request.resend_count").map(str::to_string));
    let seen: Vec<_> = attempts
        .iter()
        .map(|sp| {
            (
                sp.attr("http.request.resend_count"),
                sp.attr("http.response.status_code"),
                sp.status == ERROR,
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (Some("0"), Some("503"), true),
            (Some("1"), Some("200"), false)
        ]
    );

    // Spotify's 429: the next call is answered by the cool-down, in a span that says so.
    s.fault(json!({"target": "api", "status": 429, "retry_after": 60, "times": 1}))
        .await;
    let first = s
        .egress_as(&assertion, "/v1/me")
        .send()
        .await
        .expect("egress");
    assert_eq!(first.status(), 429);
    let resp = s
        .egress_as(&assertion, "/v1/me/player")
        .header("x-request-id", "req-held")
        .send()
        .await
        .expect("egress");
    assert_eq!(resp.status(), 429);
    let held = receiver.request_span("req-held").await;
    let hold = children(&receiver, &held, "cool-down hold");
    assert_eq!(hold.len(), 1, "{held:?}");
    assert_eq!(
        hold[0].attr("spotify.cool_down.reason"),
        Some("rate_limited")
    );
    assert!(children(&receiver, &held, "spotify call").is_empty());
    // Nothing exported names the playlist's id.
    assert!(!receiver.dump().contains("p1secretish9"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_a_webhook_and_log_user_id_have_their_spans() {
    let receiver = OtlpReceiver::start().await;
    let hooks = WebhookReceiver::start(Answer::Ok).await;
    let url = hooks.url.clone();
    let s = traced(&receiver)
        .forward_auth(&["app.example.test"], &["127.0.0.1/32"])
        .set("server.log_user_id", true)
        .env(WEBHOOK_SECRET_VAR, WEBHOOK_SECRET)
        .edit(move |doc| {
            let only_logins =
                toml_edit::Value::from(toml_edit::Array::from_iter(["login.succeeded"]));
            webhooks(doc, &[hook("audit", &url, &[("events", only_logins)])]);
        })
        .start()
        .await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    let callback = receiver
        .span("the callback", |sp| {
            sp.attr("http.route") == Some("/auth/callback")
        })
        .await;
    // The login's event, delivered: a client span under the callback that made it.
    let delivery = receiver
        .span("the webhook delivery", |sp| sp.name == "webhook delivery")
        .await;
    assert_eq!(delivery.kind, CLIENT);
    assert_eq!(delivery.parent_span_id, callback.span_id);
    assert_eq!(delivery.attr("gateway.event.type"), Some("login.succeeded"));
    assert_eq!(delivery.attr("gateway.webhook"), Some("audit"));
    assert_eq!(delivery.attr("http.response.status_code"), Some("200"));

    let resp = b
        .get(format!("{}/auth/check", s.gw.public_url()))
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "app.example.test")
        .header("x-forwarded-uri", "/reports")
        .header("x-request-id", "req-check")
        .send()
        .await
        .expect("check");
    assert_eq!(resp.status(), 200);
    let request = receiver.request_span("req-check").await;
    let check = children(&receiver, &request, "forward-auth check");
    assert_eq!(check.len(), 1, "{request:?}");
    assert_eq!(
        check[0].attr("gateway.forward_auth.result"),
        Some("allowed")
    );
    assert_eq!(children(&receiver, &check[0], "session lookup").len(), 1);
    // `server.log_user_id` is on: the plain id, as the audit events have it.
    assert_eq!(request.attr("enduser.id"), Some("alice"), "{request:?}");
    assert_eq!(request.attr("enduser.pseudo.id"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_apps_spans_name_that_app() {
    let receiver = OtlpReceiver::start().await;
    let s = three_apps(traced(&receiver)).start().await;
    let port = s.ports.public;
    for app in [&RADIO, &CHARTS] {
        let b = browser();
        let url = format!("{}/auth/login?return_to=%2Fapp", app.public_url(port));
        login_from(&b, &url, "alice").await;
        let seen: serde_json::Value = b
            .get(format!("{}/app", app.public_url(port)))
            .send()
            .await
            .expect("public")
            .json()
            .await
            .expect("echo");
        let assertion = seen["headers"]["x-gateway-user"]
            .as_str()
            .expect("assertion")
            .to_string();
        let id = format!("req-{}", app.name);
        let resp = s
            .egress_as(&assertion, "/v1/me")
            .header("x-request-id", id.as_str())
            .send()
            .await
            .expect("egress");
        assert_eq!(resp.status(), 200);
        let call = receiver
            .span("the app's egress call", |sp| {
                sp.attr("gateway.request_id") == Some(id.as_str())
            })
            .await;
        assert_eq!(call.attr("gateway.app"), Some(app.name), "{call:?}");
        let callback = receiver
            .span("the app's callback", |sp| {
                sp.attr("http.route") == Some("/auth/callback")
                    && sp.attr("server.address") == Some(app.host)
            })
            .await;
        assert_eq!(callback.attr("gateway.app"), Some(app.name), "{callback:?}");
    }
}

/// What users run speaks TLS to Spotify: over HTTPS (verified through `spotify.ca_file`) the
/// login's code exchange and `/v1/me`, and an egress call's attempt, are client spans with
/// the same attributes, the attempt naming the protocol it spoke.
#[tokio::test]
async fn over_tls_the_login_and_an_egress_call_have_their_client_spans() {
    let receiver = OtlpReceiver::start().await;
    let ca = Ca::new("trace spans CA");
    let s = traced(&receiver).mock_over_tls(&ca).start().await;
    assert!(s.mock.base_url().starts_with("https://"));
    // The browser meets the mock on https:// too: it trusts only the test CA.
    let b = ca.browser();
    login(&b, &s.gw, "alice", "/").await;
    let callback = receiver
        .span("the callback", |sp| {
            sp.attr("http.route") == Some("/auth/callback")
        })
        .await;
    for name in ["POST /api/token", "GET /v1/me"] {
        let call = receiver
            .span(name, |sp| {
                sp.name == name && sp.parent_span_id == callback.span_id
            })
            .await;
        assert_eq!(call.kind, CLIENT, "{call:?}");
        assert_eq!(call.attr("server.address"), Some("127.0.0.1"), "{call:?}");
        assert_ne!(call.status, ERROR, "{call:?}");
    }
    let assertion = s.assertion(&b).await;
    let resp = s
        .egress_as(&assertion, "/v1/me")
        .header("x-request-id", "req-tls")
        .send()
        .await
        .expect("egress");
    assert_eq!(resp.status(), 200);
    let request = receiver.request_span("req-tls").await;
    let call = receiver
        .span("the call to Spotify over TLS", |sp| {
            sp.name == "spotify call" && sp.parent_span_id == request.span_id
        })
        .await;
    assert_eq!(call.attr("http.response.status_code"), Some("200"));
    assert!(call.attr("network.protocol.name").is_some(), "{call:?}");
}
