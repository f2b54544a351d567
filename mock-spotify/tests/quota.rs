//! The developer account's quota, as Spotify counts it since July 2026: a rolling 30-second
//! window with a budget (from `MockConfig` or `POST /__mock/quota`), 429 with `Retry-After`
//! past it, and `QUOTA_EXCEEDED` with a long `Retry-After` when the control switches it on;
//! `/__mock/stats` counts what the limiter saw and refused.

mod common;

use reqwest::StatusCode;
use serde_json::{json, Value};

use mock_spotify::{MockConfig, MockSpotify};

use common::{api, app_token, client, header, start_with};

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
