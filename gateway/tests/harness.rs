//! The test harness itself (tests/common): config edits through `toml_edit`, and `wait_until`.
//! No gateway runs here.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;

fn ports() -> Ports {
    Ports {
        public: 1001,
        egress: 1002,
        admin: 1003,
        app: 1004,
    }
}

#[test]
fn set_replaces_a_value_in_place_and_adds_a_new_key_to_its_table() {
    let template = GatewayConfig::template(ports(), "http://127.0.0.1:9").to_string();
    let edited = GatewayConfig::template(ports(), "http://127.0.0.1:9")
        .set("spotify.flow", "pkce")
        .set("egress.trust_user_header", true)
        .set("egress.max_retries", 0)
        .set("upstream.public_paths", ["/public/", "/open/"])
        .to_string();
    let line_of = |text: &str, prefix: &str| text.lines().position(|l| l.starts_with(prefix));
    // In place: the same line as in the template.
    assert_eq!(
        line_of(&template, "flow = "),
        line_of(&edited, "flow = \"pkce\"")
    );
    assert!(
        edited.contains("public_paths = [\"/public/\", \"/open/\"]"),
        "{edited}"
    );
    // New keys: at the end of [egress], the last table.
    let egress = edited.split("[egress]").nth(1).expect("[egress]");
    assert!(egress.contains("trust_user_header = true\n"), "{edited}");
    assert!(egress.contains("max_retries = 0\n"), "{edited}");
    // The result is TOML with what was set, and only that changed.
    let doc: toml_edit::DocumentMut = edited.parse().expect("TOML");
    assert_eq!(doc["spotify"]["flow"].as_str(), Some("pkce"));
    assert_eq!(doc["egress"]["trust_user_header"].as_bool(), Some(true));
    assert_eq!(doc["egress"]["app_token"].as_bool(), Some(true));
    assert_eq!(
        edited.lines().count(),
        template.lines().count() + 2,
        "{edited}"
    );
}

#[test]
fn remove_and_edit_change_the_document() {
    let edited = GatewayConfig::template(ports(), "http://127.0.0.1:9")
        .remove("spotify.client_secret_env")
        .edit(|doc| doc["metrics"] = toml_edit::table())
        .set("metrics.extra", "x")
        .to_string();
    assert!(!edited.contains("client_secret_env"), "{edited}");
    assert!(edited.contains("[metrics]\nextra = \"x\""), "{edited}");
}

#[test]
#[should_panic(expected = "the config has no table [egres]")]
fn a_typo_in_a_table_name_panics_naming_the_table() {
    let _ = GatewayConfig::template(ports(), "http://127.0.0.1:9").set("egres.app_token", false);
}

#[test]
#[should_panic(expected = "the config has no key `spotify.no_such_key` to remove")]
fn removing_a_key_that_is_not_there_panics() {
    let _ = GatewayConfig::template(ports(), "http://127.0.0.1:9").remove("spotify.no_such_key");
}

#[tokio::test]
async fn wait_until_returns_as_soon_as_the_condition_holds() {
    let checks = AtomicUsize::new(0);
    let started = Instant::now();
    wait_until(Duration::from_secs(10), "the third check", || async {
        checks.fetch_add(1, Ordering::SeqCst) == 2
    })
    .await;
    assert_eq!(checks.load(Ordering::SeqCst), 3);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
#[should_panic(expected = "waiting for something that never happens")]
async fn wait_until_panics_naming_what_it_waited_for() {
    wait_until(
        Instant::now() + Duration::from_millis(100),
        "something that never happens",
        || async { false },
    )
    .await;
}
