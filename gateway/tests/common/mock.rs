//! The mock Spotify: its config for tests, and its `/__mock/*` controls.

use std::time::Duration;

pub use mock_spotify::{MockConfig, MockSpotify};
use serde_json::Value;

use super::{start_addr, CLIENT_ID, CLIENT_SECRET};

pub fn mock_config(public_port: u16, token_lifetime: Duration) -> MockConfig {
    MockConfig {
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        redirect_uris: vec![format!("http://127.0.0.1:{public_port}/auth/callback")],
        token_lifetime,
        ..MockConfig::default()
    }
}

/// A mock Spotify on a free loopback port, with [`mock_config`].
pub async fn start_mock(public_port: u16, token_lifetime: Duration) -> MockSpotify {
    MockSpotify::start(start_addr(), mock_config(public_port, token_lifetime))
        .await
        .expect("mock spotify")
}

/// `GET /__mock/stats` of the mock.
pub async fn mock_stats(mock: &MockSpotify) -> Value {
    reqwest::get(format!("{}/__mock/stats", mock.base_url()))
        .await
        .expect("mock stats")
        .json()
        .await
        .expect("stats json")
}

pub async fn token_requests(mock: &MockSpotify, grant: &str) -> u64 {
    mock_stats(mock).await["token_requests"][grant]
        .as_u64()
        .expect("counter")
}

/// The requests that reached the mock, oldest first.
pub async fn mock_requests(mock: &MockSpotify) -> Vec<Value> {
    reqwest::get(format!("{}/__mock/requests", mock.base_url()))
        .await
        .expect("mock requests")
        .json()
        .await
        .expect("requests json")
}

pub async fn mock_post(mock: &MockSpotify, path: &str, body: Option<Value>) {
    let client = reqwest::Client::new();
    let mut req = client.post(format!("{}{path}", mock.base_url()));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("mock control");
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
}

/// A token fetched straight from the mock, to compare the gateway's answers with Spotify's.
pub async fn direct_token(mock: &MockSpotify) -> String {
    let resp: Value = reqwest::Client::new()
        .post(format!("{}/api/token", mock.base_url()))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    resp["access_token"].as_str().expect("token").to_string()
}
