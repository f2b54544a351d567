//! SIGHUP through the real gateway: a key that applies live takes effect at once (scopes,
//! public paths, forward-auth hosts), a key that needs a restart is named in the log (and left
//! as it was), a session-secret rotation applies live while the sessions sealed with the old
//! secret keep working, and a broken file (even one that crashes the TOML parser) changes
//! nothing and leaves the next SIGHUP handled.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

// The gateway library, as this file uses it.
use spotify_gateway::crypto::Keyring;
use spotify_gateway::proxy::assertion::verify;
use spotify_gateway::secret::Secret;

const ROTATED_SECRET: &str = "rotated-session-secret-0123456789abcdef-0123";

/// Writes `config`, sends SIGHUP and waits until the gateway has logged the `n`th reload.
async fn reload(s: &Stack, config: &GatewayConfig, n: usize) {
    s.gw.write_config(config);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(s.gw.pid(), libc::SIGHUP) };
    s.gw.wait_until(
        Duration::from_secs(5),
        "the reload to be logged",
        || async { s.gw.log().matches("config reloaded").count() >= n },
    )
    .await;
}

/// An egress call for `user` by the plain trusted header: status and body.
async fn as_user(s: &Stack, user: &str) -> (u16, Value) {
    let resp = s
        .http
        .get(format!("{}/v1/me", s.gw.egress_url()))
        .header("x-spotify-user-id", user)
        .send()
        .await
        .expect("egress");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_key_applies_at_once_and_a_restart_key_is_named() {
    let s = Stack::builder()
        .set("egress.trust_user_header", true)
        .app(App::Echo)
        .start()
        .await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    let (status, me) = as_user(&s, "alice").await;
    assert_eq!(status, 200, "trusted before the reload: {me}");
    assert_eq!(me["id"], "alice");

    let edited =
        s.gw.config()
            .set("egress.trust_user_header", false)
            .set("egress.public_base_url", "http://gateway.internal:8081")
            .set("session.lifetime", "1d");
    reload(&s, &edited, 1).await;

    // Live: the operator turned the trusted header off, and it is off.
    let (status, body) = as_user(&s, "alice").await;
    assert_eq!(status, 401, "no longer trusted: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not trusted"),
        "{body}"
    );
    // Restart-only keys are named, each on its own line.
    let log = s.gw.log();
    for key in ["egress.public_base_url", "session.lifetime"] {
        assert!(
            log.contains(&format!("{key} changed: it takes effect after a restart")),
            "{key} not named:\n{log}"
        );
    }
    assert!(
        !log.contains("egress.trust_user_header changed"),
        "a live key is not reported as waiting for a restart:\n{log}"
    );
    // ...and they did not change: paging links still lead to the old base.
    let resp = s
        .http
        .get(format!(
            "{}/v1/search?q=abba&type=track&limit=2",
            s.gw.egress_url()
        ))
        .send()
        .await
        .expect("search");
    let page: Value = resp.json().await.expect("json");
    let next = page["tracks"]["next"].as_str().expect("next link");
    assert!(next.starts_with(&s.gw.egress_url()), "{next}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_secret_rotation_applies_live_and_keeps_old_sessions() {
    let s = Stack::builder().app(App::Echo).start().await;
    let old = Keyring::new(&Secret::runtime(SESSION_SECRET), None);
    let new = Keyring::new(&Secret::runtime(ROTATED_SECRET), None);
    let before = browser();
    login(&before, &s.gw, "alice", "/").await;
    let assertion = s.assertion(&before).await;
    assert!(
        verify(&old, &assertion).is_some(),
        "signed with the old secret"
    );

    let rotated =
        s.gw.config()
            .remove("session.secret_env")
            .set("session.secret", ROTATED_SECRET)
            .set("session.previous_secret_env", "TEST_SESSION_SECRET");
    reload(&s, &rotated, 1).await;
    assert!(
        !s.gw.log().contains("session.secret changed"),
        "a rotation needs no restart:\n{}",
        s.gw.log()
    );

    // The session sealed before the rotation still opens, and what the app now receives is
    // signed with the new secret alone.
    let (status, info) = s.userinfo(&before).await;
    assert_eq!(status, 200, "{info}");
    let assertion = s.assertion(&before).await;
    assert!(
        verify(&new, &assertion).is_some(),
        "signed with the new secret"
    );
    assert!(verify(&old, &assertion).is_none(), "not with the old one");
    // Egress accepts it.
    let resp = s.egress_get_as(&assertion, "/v1/me").await;
    assert_eq!(resp.status(), 200);

    // A new login after the rotation works end to end.
    let after = browser();
    login(&after, &s.gw, "bob", "/").await;
    let (status, info) = s.userinfo(&after).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["user_id"], "bob");
}

/// `/auth/check` for `host` from loopback, without a session: its status.
async fn check_status(s: &Stack, host: &str) -> u16 {
    s.http
        .get(format!("{}/auth/check", s.gw.public_url()))
        .header("x-forwarded-host", host)
        .header("x-forwarded-uri", "/")
        .send()
        .await
        .expect("check")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_hosts_change_live_and_forward_auth_turns_off_live() {
    let s = Stack::builder()
        .forward_auth(&["a.test"], &["127.0.0.1/32"])
        .start()
        .await;
    assert_eq!(check_status(&s, "a.test").await, 401);
    assert_eq!(check_status(&s, "b.test").await, 403);
    let more = s.gw.config().edit(|doc| {
        doc["forward_auth"]["allowed_hosts"] =
            toml_edit::value(toml_edit::Array::from_iter(["a.test", "b.test"]));
    });
    reload(&s, &more, 1).await;
    assert!(
        s.gw.log().contains("forward_auth.allowed_hosts"),
        "the reload names the key"
    );
    assert_eq!(check_status(&s, "b.test").await, 401);
    let off = s.gw.config().edit(|doc| {
        doc.remove("forward_auth");
    });
    reload(&s, &off, 2).await;
    assert_eq!(check_status(&s, "a.test").await, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_scopes_and_public_paths_and_keeps_the_old_config_on_error() {
    let s = Stack::builder().app(App::Echo).start().await;
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

/// toml_edit 0.23 panics on some malformed input (found by fuzz/config_parse). The gateway
/// must refuse such a file with a clear error: at start-up, and at SIGHUP without losing the
/// task that handles the next SIGHUP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_that_crashes_the_toml_parser_is_refused_at_start_and_on_reload() {
    const CRASHER: &str = "==\n.=";
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, CRASHER).expect("write");
    for command in ["check-config", "run"] {
        let (code, _out, err) = run_cli(&[command, "--config", path.to_str().expect("path")], &[]);
        assert_eq!(code, 2, "{command}: {err}");
        assert!(err.contains("key `(syntax)`"), "{command}: {err}");
    }

    let s = watched_stack(Stack::builder()).await;
    let original = s.gw.config();
    // Not TOML at all, so written as it is.
    std::fs::write(&s.gw.config_path, CRASHER).expect("write");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(s.gw.pid(), libc::SIGHUP) };
    s.gw.wait_until(
        Duration::from_secs(5),
        "the reload error in the log",
        || async { s.gw.log().contains("config reload failed") },
    )
    .await;
    // The next SIGHUP, with a good file, is still handled.
    let opened = original.set("upstream.public_paths", ["/public/", "/open/"]);
    s.gw.write_config(&opened);
    // SAFETY: as above.
    unsafe { libc::kill(s.gw.pid(), libc::SIGHUP) };
    s.gw.wait_until(
        Duration::from_secs(5),
        "the second reload to make /open/ public",
        || async {
            let resp = plain()
                .get(format!("{}/open/x", s.gw.public_url()))
                .send()
                .await
                .expect("open path");
            resp.status() == 200
        },
    )
    .await;
}
