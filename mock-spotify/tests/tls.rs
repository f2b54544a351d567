//! The mock over HTTPS: a client that trusts the test CA gets the same answers as over plain
//! HTTP, links point at `https://`, and a client that does not trust the CA is refused.

mod common;

use mock_spotify::{MockConfig, TestCa, Validity};
use serde_json::Value;

/// A client whose only root is `ca`.
fn trusting(ca: &TestCa) -> reqwest::Client {
    let root = reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).expect("CA pem");
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(root)
        .build()
        .expect("client")
}

#[tokio::test]
async fn serves_https_with_a_certificate_from_the_test_ca() {
    let ca = TestCa::new("mock test CA");
    let m = common::start_with(MockConfig {
        tls: Some(ca.issue(&["127.0.0.1", "localhost"], Validity::Current)),
        ..MockConfig::default()
    })
    .await;
    assert!(
        m.base_url().starts_with("https://127.0.0.1:"),
        "{}",
        m.base_url()
    );
    let http = trusting(&ca);
    let token: Value = http
        .post(format!("{}/api/token", m.base_url()))
        .basic_auth("demo-client-id", Some("demo-client-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token over TLS")
        .json()
        .await
        .expect("json");
    let bearer = token["access_token"].as_str().expect("access token");
    let page: Value = http
        .get(format!(
            "{}/v1/search?q=abba&type=track&limit=1",
            m.base_url()
        ))
        .bearer_auth(bearer)
        .send()
        .await
        .expect("search over TLS")
        .json()
        .await
        .expect("json");
    let next = page["tracks"]["next"].as_str().expect("a next link");
    assert!(next.starts_with(&format!("{}/v1/", m.base_url())), "{next}");
    // One pooled HTTP/1.1 connection (reqwest offers no h2 here), one full handshake.
    let stats: Value = http
        .get(format!("{}/__mock/stats", m.base_url()))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    let wire = &stats["connections"];
    assert_eq!(wire["tls_handshakes"], 1, "{wire}");
    assert_eq!(wire["tls_handshakes_h2"], 0, "{wire}");
    assert_eq!(wire["tls_resumed"], 0, "{wire}");
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_ca_is_refused() {
    let ca = TestCa::new("mock test CA");
    let m = common::start_with(MockConfig {
        tls: Some(ca.issue(&["127.0.0.1"], Validity::Current)),
        ..MockConfig::default()
    })
    .await;
    let err = trusting(&TestCa::new("another CA"))
        .get(format!("{}/__mock/stats", m.base_url()))
        .send()
        .await
        .expect_err("an unknown issuer is refused");
    let chain = format!("{err:?}");
    assert!(chain.contains("UnknownIssuer"), "{chain}");
    // The mock keeps serving clients that do trust it.
    let ok = trusting(&ca)
        .get(format!("{}/__mock/stats", m.base_url()))
        .send()
        .await
        .expect("stats");
    assert!(ok.status().is_success());
}

#[tokio::test]
async fn an_expired_certificate_is_refused() {
    let ca = TestCa::new("mock test CA");
    let m = common::start_with(MockConfig {
        tls: Some(ca.issue(&["127.0.0.1"], Validity::Expired)),
        ..MockConfig::default()
    })
    .await;
    let err = trusting(&ca)
        .get(format!("{}/__mock/stats", m.base_url()))
        .send()
        .await
        .expect_err("an expired certificate is refused");
    let chain = format!("{err:?}");
    assert!(chain.contains("Expired"), "{chain}");
}
