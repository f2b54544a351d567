//! The demo's tiny internal app, behind the public listener. It never sees a token: it gets
//! the user's identity headers from the gateway and calls Spotify through the egress listener
//! with the `X-Gateway-User` assertion it received.
//!
//! Its one page shows who is signed in (name and picture, or initials when Spotify has no
//! picture), when their Spotify connection must be renewed, what they are playing and their
//! playlists, with sign-out and disconnect, and a "Play in the browser" panel that fetches the
//! Web Playback SDK's token from the gateway (`/auth/playback-token`, `[playback]`) as the
//! SDK's `getOAuthToken` would, and shows its expiry (the SDK itself loads from Spotify's CDN,
//! which the offline demo cannot reach). In `spotify-gateway demo` it also has a button that
//! ages the user's authorization by 175 days — at the mock Spotify (`/__mock/age`) and in the
//! gateway (`Sessions::age_authorization`) — so the re-consent offer can be tried at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use serde_json::Value;

use crate::proxy::pages::escape;
use crate::server::apps::Apps;

/// How much older the demo's button makes an authorization: inside the last week before
/// Spotify's six months (the gateway counts 180 days), so the next page offers a re-consent.
const DEMO_AGE_DAYS: u64 = 175;

/// What `spotify-gateway demo` gives the sample app beyond the egress listener: the gateway
/// and the mock, for the "age my authorization" button.
#[derive(Clone)]
pub struct Demo {
    /// Every app of the demo gateway (`demo --apps 2`); the request's `X-Gateway-App` picks.
    pub apps: Arc<Apps>,
    /// `http://ADDR` of the mock Spotify.
    pub mock_url: String,
}

/// Where the page sends a user whose gateway session has ended: sign in, then come back.
const LOGIN_HREF: &str = "/auth/login?return_to=%2F";

#[derive(Clone)]
struct App {
    egress: String,
    http: reqwest::Client,
    demo: Option<Demo>,
}

/// Serves the sample app on `listener` until the process ends; `demo` adds the aging button.
pub async fn serve(
    listener: tokio::net::TcpListener,
    egress: SocketAddr,
    demo: Option<Demo>,
) -> std::io::Result<()> {
    let app = App {
        egress: format!("http://{egress}"),
        http: reqwest::Client::new(),
        demo,
    };
    let router = Router::new()
        .route("/", get(home))
        .route("/demo/age", post(age))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(app);
    axum::serve(listener, router).await
}

impl App {
    /// GET through the egress listener on behalf of the user; `(status, json or Null)`.
    /// Status 0 means the egress listener could not be reached.
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
                // 204 (nothing playing) has no body: Null, like any non-JSON answer.
                (status, r.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }
}

async fn home(State(app): State<App>, headers: HeaderMap) -> (StatusCode, Html<String>) {
    let assertion = headers
        .get("x-gateway-user")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if assertion.is_empty() {
        return notice(
            StatusCode::UNAUTHORIZED,
            "Open this app through the gateway",
            "No identity arrived from the gateway: this app only works behind its public \
             listener.",
            None,
        );
    }
    // Three independent calls: made at once, so the page costs one round trip.
    let ((me_status, me), (playing_status, playing), (playlists_status, playlists)) = tokio::join!(
        app.spotify(assertion, "/v1/me"),
        app.spotify(assertion, "/v1/me/player/currently-playing"),
        app.spotify(assertion, "/v1/me/playlists?limit=50"),
    );
    match me_status {
        200 => {}
        // The gateway ended the session (e.g. Spotify revoked the refresh token).
        401 => {
            return notice(
                StatusCode::UNAUTHORIZED,
                "Please sign in again",
                "Spotify no longer accepts this sign-in, so the gateway ended the session.",
                Some((LOGIN_HREF, "Sign in with Spotify")),
            )
        }
        status => {
            let message = match status {
                0 => "The gateway's egress listener could not be reached.".to_string(),
                s => format!("The Spotify call through the gateway failed with status {s}."),
            };
            return notice(
                StatusCode::BAD_GATEWAY,
                "Spotify is not answering",
                &message,
                Some(("/", "Try again")),
            );
        }
    }
    let page = Profile::from_me(&me).page(
        &connection(reauth_by(assertion), app.demo.is_some()),
        &now_playing(playing_status, &playing),
        &playlist_items(playlists_status, &playlists),
    );
    (StatusCode::OK, Html(page))
}

/// `reauth_by` (unix seconds) from the assertion's claims. Read, not verified: the gateway
/// verifies assertions; the page only shows the date.
fn reauth_by(assertion: &str) -> Option<u64> {
    let claims = assertion.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims)
        .ok()?;
    serde_json::from_slice::<Value>(&json).ok()?["reauth_by"].as_u64()
}

/// The "Spotify connection" card: when it must be renewed, disconnecting, and in the demo the
/// aging button.
fn connection(reauth_by: Option<u64>, demo: bool) -> String {
    let when = reauth_by.map(|by| {
        let now = crate::clock::now_ms() / 1000;
        let days = by.saturating_sub(now).div_ceil(24 * 3600);
        format!(
            r#"<p>Spotify asks you to renew this connection every six months: it ends in <strong id="reauth-days">{days}</strong> days.</p>"#
        )
    });
    let age = if demo {
        format!(
            r#"<form method="post" action="/demo/age"><button type="submit" class="signout" id="age">Demo: age my authorization by {DEMO_AGE_DAYS} days</button></form>"#
        )
    } else {
        String::new()
    };
    format!(
        r#"{}<p><a href="/auth/disconnect" id="disconnect">Disconnect and delete my data</a></p>{age}"#,
        when.unwrap_or_default()
    )
}

/// `POST /demo/age` (only in `spotify-gateway demo`): the signed-in user's authorization is
/// `DEMO_AGE_DAYS` older at the mock Spotify and in the gateway; back to the page, where the
/// gateway now offers the re-consent.
async fn age(State(app): State<App>, headers: HeaderMap) -> Response {
    let Some(demo) = &app.demo else {
        return (StatusCode::NOT_FOUND, "not in this build").into_response();
    };
    // Only through the gateway, for its signed-in user.
    let Some(user) = headers
        .get("x-spotify-user-id")
        .and_then(|v| v.to_str().ok())
        .filter(|u| headers.contains_key("x-gateway-user") && !u.is_empty())
    else {
        return (StatusCode::UNAUTHORIZED, "sign in through the gateway").into_response();
    };
    let at_mock = app
        .http
        .post(format!("{}/__mock/age", demo.mock_url))
        .query(&[("user", user), ("days", &DEMO_AGE_DAYS.to_string())])
        .send()
        .await
        .map(|r| r.status().is_success())
        .unwrap_or(false);
    let by = Duration::from_secs(DEMO_AGE_DAYS * 24 * 3600);
    let gateway = headers
        .get("x-gateway-app")
        .and_then(|v| v.to_str().ok())
        .and_then(|name| demo.apps.by_name(name))
        .unwrap_or_else(|| demo.apps.first());
    let in_gateway = gateway.sessions.age_authorization(user, by).await.is_ok();
    if !(at_mock && in_gateway) {
        return (StatusCode::BAD_GATEWAY, "could not age the authorization").into_response();
    }
    (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response()
}

struct Profile {
    name: String,
    /// The Spotify user id. Not the email, country or plan: Spotify withholds those from
    /// development-mode apps (since March 2026), the mode every new app is in.
    details: String,
    image: Option<String>,
}

impl Profile {
    fn from_me(me: &Value) -> Profile {
        let name = me["display_name"]
            .as_str()
            .filter(|n| !n.trim().is_empty())
            .or(me["id"].as_str())
            .unwrap_or("Spotify user")
            .to_string();
        let details = me["id"]
            .as_str()
            .map(|id| format!("Spotify user {id}"))
            .unwrap_or_default();
        // Spotify lists images largest first; the page shows a small circle.
        let image = me["images"]
            .as_array()
            .and_then(|images| images.iter().filter_map(|i| i["url"].as_str()).next_back())
            .filter(|url| url.starts_with("https://"))
            .map(str::to_string);
        Profile {
            name,
            details,
            image,
        }
    }

    /// A picture when Spotify has one, else the initials in a circle.
    fn avatar(&self, class: &str) -> String {
        match &self.image {
            Some(url) => format!(
                r#"<img class="avatar {class}" src="{}" alt="">"#,
                escape(url)
            ),
            None => format!(
                r#"<span class="avatar {class}" aria-hidden="true" style="background:{}">{}</span>"#,
                avatar_colour(&self.name),
                escape(&initials(&self.name)),
            ),
        }
    }

    fn page(&self, connection: &str, now_playing: &str, playlists: &str) -> String {
        let name = escape(&self.name);
        let details = if self.details.is_empty() {
            String::new()
        } else {
            format!(r#"<p class="details">{}</p>"#, escape(&self.details))
        };
        format!(
            r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{name} · Sample app</title>
<link rel="icon" href="data:,">
<style>{STYLE}</style>
</head>
<body>
<header>
<span class="brand">Sample app</span>
<form method="post" action="/auth/logout"><button type="submit" class="signout">Sign out</button></form>
</header>
<main>
<section class="profile" aria-labelledby="user-name">
{avatar}
<div><p class="label">Signed in as</p><h1 id="user-name">{name}</h1>{details}</div>
</section>
<section aria-labelledby="connection-heading">
<h2 id="connection-heading">Spotify connection</h2>
<div id="connection" class="card">{connection}</div>
</section>
<section aria-labelledby="playing-heading">
<h2 id="playing-heading">Now playing</h2>
<div id="now-playing" class="card">{now_playing}</div>
</section>
<section aria-labelledby="playlists-heading">
<h2 id="playlists-heading">Your playlists</h2>
{playlists}
</section>
<section aria-labelledby="playback-heading">
<h2 id="playback-heading">Play in the browser</h2>
<div class="card">{PLAYBACK_PANEL}</div>
</section>
</main>
<script>{PLAYBACK_SCRIPT}</script>
<footer><p>This app holds no Spotify token: every call above went through the gateway's
egress listener with the <code>X-Gateway-User</code> assertion it received.</p></footer>
</body>
</html>
"#,
            avatar = self.avatar("large"),
        )
    }
}

/// The "Play in the browser" card: what Spotify's Web Playback SDK would do here, and the button
/// that gets its token.
const PLAYBACK_PANEL: &str = r#"<p>Spotify's Web Playback SDK plays music in this page and asks the page for an access token. This app holds none: the page fetches it from the gateway (<code>/auth/playback-token</code>), as the SDK's <code>getOAuthToken</code> would. The SDK itself loads from Spotify (<code>sdk.scdn.co</code>), which this offline demo cannot reach, so instead of playing, the panel shows when the token expires.</p>
<p><button type="button" class="signout" id="playback-fetch">Get a playback token</button></p>
<p id="playback-status" class="muted" role="status" aria-live="polite"></p>"#;

/// Fetches the token the way the SDK's `getOAuthToken` callback would, and shows its expiry,
/// never the token.
const PLAYBACK_SCRIPT: &str = r#"
document.getElementById("playback-fetch").addEventListener("click", async () => {
  const out = document.getElementById("playback-status");
  try {
    const resp = await fetch("/auth/playback-token", { credentials: "same-origin" });
    if (resp.status === 404) {
      out.textContent = "Playback is off at the gateway ([playback] enabled = false).";
      return;
    }
    const body = await resp.json();
    if (!resp.ok) {
      out.textContent = "The gateway refused the token (" + resp.status + ", " + body.error + ").";
      return;
    }
    const at = new Date(Date.now() + body.expires_in * 1000);
    out.dataset.expiresIn = String(body.expires_in);
    out.textContent = "Token received: it expires in " + Math.round(body.expires_in / 60) +
      " minutes, at " + at.toLocaleTimeString() + ". The SDK would now connect a player.";
  } catch (e) {
    out.textContent = "The gateway could not be reached.";
  }
});
"#;

/// The "Now playing" card's content.
fn now_playing(status: u16, playing: &Value) -> String {
    let item = &playing["item"];
    let Some(track) = item["name"].as_str().filter(|_| status == 200) else {
        return r#"<p class="muted">Nothing playing</p>"#.to_string();
    };
    let artists = item["artists"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["name"].as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let album = item["album"]["name"].as_str().unwrap_or_default();
    let state = if playing["is_playing"].as_bool() == Some(false) {
        "Paused"
    } else {
        "Playing"
    };
    let album = if album.is_empty() {
        String::new()
    } else {
        format!(r#"<p class="muted">from {}</p>"#, escape(album))
    };
    format!(
        r#"<p class="label">{state}</p><p class="track">{}</p><p>{}</p>{album}"#,
        escape(track),
        escape(&artists),
    )
}

/// The playlists list, or a line saying why there is none.
fn playlist_items(status: u16, playlists: &Value) -> String {
    if status != 200 {
        return format!(
            r#"<p id="playlists" class="muted">Your playlists could not be loaded (status {status}).</p>"#
        );
    }
    let items: Vec<String> = playlists["items"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|p| {
                    let name = p["name"].as_str()?;
                    // `items` since February 2026 (`tracks`, before, is gone for
                    // development-mode apps).
                    let tracks = p["items"]["total"].as_u64().unwrap_or(0);
                    let unit = if tracks == 1 { "track" } else { "tracks" };
                    Some(format!(
                        r#"<li><span class="playlist-name">{}</span><span class="muted">{tracks} {unit}</span></li>"#,
                        escape(name)
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    if items.is_empty() {
        return r#"<p id="playlists" class="muted">No playlists yet.</p>"#.to_string();
    }
    format!(r#"<ul id="playlists">{}</ul>"#, items.concat())
}

/// A page with one message, for when the profile cannot be shown.
fn notice(
    status: StatusCode,
    heading: &str,
    message: &str,
    link: Option<(&str, &str)>,
) -> (StatusCode, Html<String>) {
    let link = link
        .map(|(href, label)| {
            format!(
                r#"<p><a class="button" href="{}">{}</a></p>"#,
                escape(href),
                escape(label)
            )
        })
        .unwrap_or_default();
    let page = format!(
        r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{heading} · Sample app</title><link rel="icon" href="data:,"><style>{STYLE}</style></head>
<body><header><span class="brand">Sample app</span></header>
<main><h1>{heading}</h1><p class="muted">{message}</p>{link}</main></body>
</html>
"#,
        heading = escape(heading),
        message = escape(message),
    );
    (status, Html(page))
}

/// "Alice Andersson" → "AA"; one letter for a one-word name.
fn initials(name: &str) -> String {
    name.split_whitespace()
        .filter_map(|w| w.chars().next())
        .take(2)
        .flat_map(char::to_uppercase)
        .collect()
}

/// A colour picked by the name, so a user keeps the same one on every visit.
fn avatar_colour(name: &str) -> &'static str {
    const COLOURS: [&str; 5] = ["#f573a0", "#509bf5", "#ffc864", "#1ed760", "#b49bc8"];
    let sum = name
        .bytes()
        .fold(0usize, |acc, b| acc.wrapping_add(b as usize));
    COLOURS[sum % COLOURS.len()]
}

const STYLE: &str = r#"
:root{color-scheme:dark}
*{box-sizing:border-box}
body{margin:0;background:#121212;color:#fff;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
header{display:flex;align-items:center;justify-content:space-between;padding:1rem 1.5rem;background:#000}
.brand{font-weight:700;font-size:1.125rem}
main{max-width:44rem;margin:0 auto;padding:2rem 1.5rem}
h1{font-size:2rem;line-height:1.2;margin:0}
h2{font-size:1.25rem;margin:2.5rem 0 1rem}
p{margin:0}
.profile{display:flex;align-items:center;gap:1.5rem}
.avatar{display:inline-flex;align-items:center;justify-content:center;border-radius:50%;color:#000;font-weight:700;object-fit:cover;flex:none}
.avatar.large{width:6rem;height:6rem;font-size:2.25rem}
.label{font-size:.75rem;text-transform:uppercase;letter-spacing:.1em;color:#b3b3b3;font-weight:700}
.details,.muted{color:#b3b3b3}
.card{background:#1f1f1f;border-radius:8px;padding:1rem 1.25rem}
.track{font-size:1.125rem;font-weight:700}
ul{list-style:none;margin:0;padding:0}
li{display:flex;justify-content:space-between;gap:1rem;padding:.75rem 1.25rem;background:#1f1f1f;border-radius:8px;margin-bottom:.5rem}
.playlist-name{font-weight:600}
.signout,.button{display:inline-block;background:transparent;color:#fff;border:1px solid #878787;border-radius:999px;padding:.5rem 1.25rem;font:inherit;font-weight:700;cursor:pointer;text-decoration:none}
.signout:hover,.button:hover{border-color:#fff}
main .button{margin-top:1.5rem}
button:focus-visible,a:focus-visible{outline:3px solid #fff;outline-offset:3px}
footer{max-width:44rem;margin:0 auto;padding:0 1.5rem 2rem;color:#a7a7a7;font-size:.8125rem}
code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace}
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn profile_falls_back_to_initials_and_escapes() {
        let p = Profile::from_me(&json!({
            "id": "alice", "display_name": "Alice <Andersson>", "images": [],
            "email": "alice@example.com", "country": "SE"
        }));
        assert_eq!(
            p.details, "Spotify user alice",
            "nothing development mode withholds"
        );
        let avatar = p.avatar("large");
        // Initials are escaped too ("<Andersson>" starts with '<').
        assert!(avatar.contains(">A&lt;</span>"), "{avatar}");
        let page = p.page("", "", "");
        assert!(page.contains("Alice &lt;Andersson&gt;"));
        assert!(page.contains(r#"action="/auth/logout""#));

        let p = Profile::from_me(&json!({
            "id": "bob",
            "images": [{"url": "https://i.example/big"}, {"url": "https://i.example/small"}]
        }));
        assert_eq!(p.name, "bob");
        assert!(p
            .avatar("large")
            .contains(r#"src="https://i.example/small""#));
        assert_eq!(initials("Alice Andersson"), "AA");
    }

    #[test]
    fn nothing_playing_and_playlists() {
        assert!(now_playing(204, &Value::Null).contains("Nothing playing"));
        let playing = json!({"is_playing": true, "item": {"name": "Dancing Queen",
            "artists": [{"name": "ABBA"}], "album": {"name": "Arrival"}}});
        let card = now_playing(200, &playing);
        assert!(
            card.contains("Dancing Queen") && card.contains("ABBA") && card.contains("Arrival")
        );
        let list = playlist_items(
            200,
            &json!({"items": [{"name": "Mix & Match", "items": {"total": 1}}]}),
        );
        assert!(list.contains("Mix &amp; Match") && list.contains("1 track<"));
        assert!(playlist_items(200, &json!({"items": []})).contains("No playlists yet"));
        assert!(playlist_items(403, &Value::Null).contains("status 403"));
    }
}
