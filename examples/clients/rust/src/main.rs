//! An internal app that talks to Spotify only through the gateway's egress listener: no
//! client secret, no Spotify token. Against `spotify-gateway demo`:
//!
//! ```text
//! cargo run -p example-client
//! ```
//!
//! It signs Alice in through the demo's mock Spotify (as her browser would), then searches,
//! follows the `next` links page by page, and reads her profile and playlists.

use serde_json::Value;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

#[tokio::main]
async fn main() -> Result<()> {
    let public = env_or("GATEWAY_PUBLIC", "http://127.0.0.1:8080");
    let egress = env_or("GATEWAY_EGRESS", "http://127.0.0.1:8081");
    let user = env_or("SPOTIFY_USER", "alice");

    sign_in(&public, &user).await?;
    let api = reqwest::Client::new();

    // App-token call: no user needed. Follow Spotify's own `next` links: the gateway rewrote
    // them to itself, so they stay on the gateway.
    let mut url = format!("{egress}/v1/search?q=abba&type=track&limit=10");
    let mut page_no = 1;
    loop {
        let page: Value = api
            .get(&url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let tracks = &page["tracks"];
        let names: Vec<&str> = tracks["items"]
            .as_array()
            .map(|items| items.iter().filter_map(|t| t["name"].as_str()).collect())
            .unwrap_or_default();
        println!(
            "search page {page_no}: {} tracks, first: {:?}",
            names.len(),
            names.first()
        );
        match tracks["next"].as_str() {
            Some(next) => url = next.to_string(),
            None => break,
        }
        page_no += 1;
    }

    // User calls: the demo trusts X-Spotify-User-Id from loopback (egress.trust_user_header);
    // an app behind the public listener would forward the X-Gateway-User it received instead.
    let me: Value = api
        .get(format!("{egress}/v1/me"))
        .header("x-spotify-user-id", &user)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    // Spotify asks apps to key users by `account_id` (2026) rather than `id`.
    println!(
        "profile: {} ({}, account {})",
        me["display_name"],
        me["id"],
        me["account_id"].as_str().unwrap_or("none")
    );
    let playlists: Value = api
        .get(format!("{egress}/v1/me/playlists"))
        .header("x-spotify-user-id", &user)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    for p in playlists["items"].as_array().into_iter().flatten() {
        println!("playlist: {} ({} items)", p["name"], p["items"]["total"]);
    }
    // Since February 2026 a playlist's entries are at /playlists/{id}/items, `item` in each
    // (the old /tracks path answers 403 to development-mode apps).
    let first = &playlists["items"][0];
    let entries: Value = api
        .get(format!(
            "{egress}/v1/playlists/{}/items?limit=5",
            first["id"].as_str().unwrap_or("")
        ))
        .header("x-spotify-user-id", &user)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    println!(
        "items of {}: {}, first: {}",
        first["name"], entries["total"], entries["items"][0]["item"]["name"]
    );
    Ok(())
}

/// Logs `user` in through the gateway, approving at the demo's mock Spotify.
async fn sign_in(public: &str, user: &str) -> Result<()> {
    let mut browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none());
    // `spotify-gateway demo --tls`: the browser must trust the mock Spotify's test CA, as it
    // trusts Spotify's real certificate.
    if let Ok(ca) = std::env::var("DEMO_CA_FILE") {
        let pem = std::fs::read(&ca).map_err(|e| format!("DEMO_CA_FILE {ca}: {e}"))?;
        browser = browser.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
    }
    let browser = browser.build()?;
    let login = browser.get(format!("{public}/auth/login")).send().await?;
    let authorize = location(&login)?;
    let consent = browser
        .get(format!(
            "{authorize}&mock_user={user}&mock_decision=approve"
        ))
        .send()
        .await?;
    let callback = browser.get(location(&consent)?).send().await?;
    if callback.status() != 302 {
        return Err(format!("login failed: {}", callback.status()).into());
    }
    println!("signed in as {user}");
    Ok(())
}

fn location(resp: &reqwest::Response) -> Result<String> {
    Ok(resp
        .headers()
        .get("location")
        .ok_or_else(|| format!("expected a redirect, got {}", resp.status()))?
        .to_str()?
        .to_string())
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}
