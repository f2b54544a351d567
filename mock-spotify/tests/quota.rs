//! The developer account's quota, as Spotify counts it since July 2026: a rolling 30-second
//! window with a budget (from `MockConfig` or `POST /__mock/quota`), 429 with `Retry-After`
//! past it, and `QUOTA_EXCEEDED` with a long `Retry-After` when the control switches it on;
//! `/__mock/stats` counts what the limiter saw and refused.

mod common;

use reqwest::StatusCode;
use serde_json::{json, Value};

use mock_spotify::{MockConfig, MockSpotify};

use common::{api, app_token, client, header, start_with, token};

const TRACK: &str = "/v1/search?q=abba&type=track";

async fn quota(m: &MockSpotify, body: Value) -> StatusCode {
    let url = format!("{}/__mock/quota", m.base_url());
    let resp = client().post(url).json(&body).send().await.expect("quota");
    resp.status()
}

async fn stats(m: &MockSpotify) -> Value {
    let url = format!("{}/__mock/stats", m.base_url());
    client()
        .get(url)
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("json")
}

#[tokio::test]
async fn the_rolling_window_refuses_past_the_budget_with_retry_after() {
    let m = start_with(MockConfig {
        quota_per_30s: Some(3),
        ..MockConfig::default()
    })
    .await;
    let token = app_token(&m).await;
    for _ in 0..3 {
        assert_eq!(api(&m, TRACK, Some(&token)).await.0, StatusCode::OK);
    }
    let (status, headers, body) = api(&m, TRACK, Some(&token)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let secs: u64 = header(&headers, "retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=30).contains(&secs), "{secs}");
    assert_eq!(body["error"]["status"], 429);
    assert!(body["error"].get("reason").is_none(), "{body}");

    let q = &stats(&m).await["quota"];
    assert_eq!(q["seen"], 4);
    assert_eq!(q["allowed"], 3);
    assert_eq!(q["refused"]["rate_limited"], 1);

    // The control lifts the budget; reset puts the configured one back.
    assert_eq!(
        quota(&m, json!({"budget_per_30s": null})).await,
        StatusCode::OK
    );
    assert_eq!(api(&m, TRACK, Some(&token)).await.0, StatusCode::OK);
    let url = format!("{}/__mock/reset", m.base_url());
    client().post(url).send().await.expect("reset");
    assert_eq!(stats(&m).await["quota"]["budget_per_30s"], 3);
}

#[tokio::test]
async fn quota_exceeded_answers_in_spotifys_shape_until_lifted() {
    let m = start_with(MockConfig::default()).await;
    let token = app_token(&m).await;
    let on = json!({"quota_exceeded": true, "retry_after": 86400});
    assert_eq!(quota(&m, on).await, StatusCode::OK);
    let (status, headers, body) = api(&m, TRACK, Some(&token)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&headers, "retry-after"), Some("86400"));
    assert_eq!(
        body,
        json!({"error": {"status": 429, "message": "Too many requests", "reason": "QUOTA_EXCEEDED"}})
    );
    let q = &stats(&m).await["quota"];
    assert_eq!(q["refused"]["quota_exceeded"], 1);
    assert_eq!(q["quota_exceeded_on"], true);

    assert_eq!(
        quota(&m, json!({"quota_exceeded": false})).await,
        StatusCode::OK
    );
    assert_eq!(api(&m, TRACK, Some(&token)).await.0, StatusCode::OK);
    assert_eq!(
        quota(&m, json!({"retry_after": 5})).await,
        StatusCode::BAD_REQUEST,
        "retry_after belongs to quota_exceeded"
    );
}

/// Two more clients, one of the main client's developer account and one of another: each has
/// its own window, and `QUOTA_EXCEEDED` is the account's.
#[tokio::test]
async fn each_client_has_its_window_and_the_account_its_quota() {
    let other = |id: &str, account: &str| mock_spotify::MockClient {
        client_id: id.into(),
        client_secret: format!("{id}-secret"),
        redirect_uris: vec!["http://127.0.0.1:8080/auth/callback".into()],
        app_name: id.into(),
        mode: mock_spotify::AppMode::Development,
        registered: vec!["alice".into()],
        developer_account: account.into(),
    };
    let m = start_with(MockConfig {
        other_clients: vec![other("sister", "default"), other("stranger", "elsewhere")],
        ..MockConfig::default()
    })
    .await;
    let mut tokens = Vec::new();
    for (id, secret) in [
        ("demo-client-id", "demo-client-secret"),
        ("sister", "sister-secret"),
        ("stranger", "stranger-secret"),
    ] {
        let (status, body) = token(
            &m,
            Some((id, secret)),
            &[("grant_type", "client_credentials")],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        tokens.push(body["access_token"].as_str().expect("token").to_string());
    }
    let (main, sister, stranger) = (&tokens[0], &tokens[1], &tokens[2]);
    // A plain 429 for one client only.
    assert_eq!(
        quota(&m, json!({"client_id": "sister", "budget_per_30s": 0})).await,
        StatusCode::OK
    );
    assert_eq!(
        api(&m, TRACK, Some(sister)).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(api(&m, TRACK, Some(main)).await.0, StatusCode::OK);
    quota(&m, json!({"client_id": "sister", "budget_per_30s": null})).await;
    // The account's quota: both of its clients, not the other account's.
    quota(&m, json!({"account": "default", "quota_exceeded": true})).await;
    for t in [main, sister] {
        let (status, _, body) = api(&m, TRACK, Some(t)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(body["error"]["reason"], "QUOTA_EXCEEDED", "{body}");
    }
    assert_eq!(api(&m, TRACK, Some(stranger)).await.0, StatusCode::OK);
    assert_eq!(
        quota(&m, json!({"account": "nobody", "quota_exceeded": true})).await,
        StatusCode::NOT_FOUND
    );
    let log: Value = client()
        .get(format!("{}/__mock/requests", m.base_url()))
        .send()
        .await
        .expect("log")
        .json()
        .await
        .expect("json");
    let last = log.as_array().and_then(|l| l.last()).expect("an entry");
    assert_eq!(last["client_id"], "stranger", "{last}");
}
