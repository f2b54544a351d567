//! The demo's tiny internal app, behind the public listener. It never sees a token: it gets
//! the user's identity headers from the gateway and calls Spotify through the egress listener
//! with the `X-Gateway-User` assertion it received.

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Html;
use axum::routing::get;
use axum::Router;
use serde_json::Value;

use crate::pages::escape;

#[derive(Clone)]
struct App {
    egress: String,
    http: reqwest::Client,
}

/// Serves the sample app on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, egress: SocketAddr) -> std::io::Result<()> {
    let app = App {
        egress: format!("http://{egress}"),
        http: reqwest::Client::new(),
    };
    let router = Router::new()
        .route("/", get(home))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(app);
    axum::serve(listener, router).await
}

impl App {
    /// GET through the egress listener on behalf of the user; `(status, json or Null)`.
    async fn spotify(&self, assertion: &str, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.egress))
            .header("x-gateway-user", assertion)
            .send()
            .await;
        match resp {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }
}

async fn home(State(app): State<App>, headers: HeaderMap) -> (StatusCode, Html<String>) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let assertion = header("x-gateway-user");
    if assertion.is_empty() {
        return (
            StatusCode::UNAUTHORIZED,
            Html("<p>No identity from the gateway: open this app through it.</p>".into()),
        );
    }
    let (me_status, me) = app.spotify(&assertion, "/v1/me").await;
    if me_status != 200 {
        let msg = format!("Spotify call through the gateway failed ({me_status}).");
        return (StatusCode::BAD_GATEWAY, Html(escape(&msg)));
    }
    let name = me["display_name"].as_str().unwrap_or("(no name)");
    let (playing_status, playing) = app
        .spotify(&assertion, "/v1/me/player/currently-playing")
        .await;
    let now_playing = match (playing_status, playing["item"]["name"].as_str()) {
        (200, Some(track)) => {
            let artist = playing["item"]["artists"][0]["name"].as_str().unwrap_or("");
            format!("Now playing: {} by {}", escape(track), escape(artist))
        }
        _ => "Nothing playing".to_string(),
    };
    let (_, playlists) = app.spotify(&assertion, "/v1/me/playlists").await;
    let items: String = playlists["items"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|p| p["name"].as_str())
                .map(|n| format!("<li>{}</li>", escape(n)))
                .collect()
        })
        .unwrap_or_default();
    let page = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sample app</title>
<style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}}</style>
</head><body>
<h1>Signed in as {name}</h1>
<p id="playing">{now_playing}</p>
<h2>Your playlists</h2>
<ul id="playlists">{items}</ul>
<p><a href="/auth/logout">Sign out</a></p>
<p><small>This app holds no Spotify token: every call above went through the gateway's
egress listener with the <code>X-Gateway-User</code> assertion it received.</small></p>
</body></html>"#,
        name = escape(name),
    );
    (StatusCode::OK, Html(page))
}
