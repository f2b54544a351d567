//! The gateway against Spotify as it is in 2026 (the mock follows it): `account_id` end to
//! end, refresh tokens that end (re-consent before the deadline, the deadline itself),
//! development-mode users who are not registered, who may sign in (`[access]`), a user who
//! disconnects, and the 2026 paths passing untouched.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::*;
use serde_json::Value;

/// The claims of an assertion (read, not verified: the gateway verifies them).
fn claims_of(assertion: &str) -> Value {
    let payload = assertion.split('.').nth(1).expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("claims")
}

/// alice's `account_id` as Spotify (the mock) reports it.
async fn account_id_at_spotify(s: &Stack, assertion: &str) -> String {
    let me: Value = s
        .egress_get_as(assertion, "/v1/me")
        .await
        .json()
        .await
        .expect("json");
    me["account_id"].as_str().expect("account_id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_id_reaches_the_app_the_assertion_and_userinfo_and_names_a_user_on_egress() {
    let s = Stack::builder()
        .app(App::Echo)
        .set("egress.trust_user_header", true)
        .start()
        .await;
    let b = browser();
    login(&b, &s.gw, "alice", "/").await;
    let assertion = s.assertion(&b).await;
    let account = account_id_at_spotify(&s, &assertion).await;
    assert_ne!(account, "alice");

    // To the app: the gateway's value, never the client's.
    let resp = b
        .get(format!("{}/app", s.gw.public_url()))
        .header("x-spotify-account-id", "acc-SPOOFED")
        .send()
        .await
        .expect("app");
    let seen: Value = resp.json().await.expect("json");
    assert_eq!(seen["headers"]["x-spotify-account-id"], account.as_str());
    assert_eq!(seen["headers"]["x-spotify-user-id"], "alice");
    let claims = claims_of(
        seen["headers"]["x-gateway-user"]
            .as_str()
            .expect("assertion"),
    );
    assert_eq!(claims["account_id"], account.as_str());
    assert_eq!(claims["sub"], "alice");
    let (status, info) = s.userinfo(&b).await;
    assert_eq!(status, 200);
    assert_eq!(info["account_id"], account.as_str());

    // Trusted-header mode: the account id names alice, in either header.
    for header in ["x-spotify-account-id", "x-spotify-user-id"] {
        let resp = s
            .http
            .get(format!("{}/v1/me", s.gw.egress_url()))
            .header(header, &account)
            .send()
            .await
            .expect("egress");
        assert_eq!(resp.status(), 200, "{header}");
        let me: Value = resp.json().await.expect("json");
        assert_eq!(me["id"], "alice", "{header}");
        // Neither header travels on to Spotify.
        let sent = s.last_api_request().await;
        assert!(sent["headers"].get("x-spotify-account-id").is_none());
        assert!(sent["headers"].get("x-spotify-user-id").is_none());
    }
    let resp = s
        .http
        .get(format!("{}/v1/me", s.gw.egress_url()))
        .header("x-spotify-account-id", "acc-nobody")
        .send()
        .await
        .expect("egress");
    assert_eq!(resp.status(), 401, "an account id with no session");
}
