// Over 600 lines: one Chromium driver (the WebDriver wrapper at the top) serves every page flow;
// split by flow, each file would repeat it.
//! The login as a person does it, in headless Chromium: the demo's sample app behind the real
//! gateway, the mock Spotify's consent page, sign-out, Cancel, a session that ended on another
//! device, the re-consent offer before Spotify's refresh token ends, disconnecting, and the
//! "Play in the browser" panel fetching the Web Playback SDK's token (`[playback]`), and two
//! apps of one gateway (`[[apps]]`) signed into in one browser.
//!
//! Chromium is driven over WebDriver: fantoccini talks to a chromedriver that each test starts
//! on a free loopback port, with a fresh profile directory. Needs Debian's `chromium` and
//! `chromium-driver` (`scripts/test.sh` installs them).
//!
//! Every step leaves a PNG screenshot in `target/browser-artifacts/` at the workspace root,
//! e.g. `target/browser-artifacts/approve-3-app.png`, for a person to look at.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// Longest wait for a page to show what a step expects; generous for a 2-core CI machine.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for chromedriver to answer `/status`.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(20);
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The gateway's `server.app_name` in these tests: its pages must carry it.
const APP_NAME: &str = "Browser Test Gateway";
/// The mock's default app name, shown on its consent page.
const MOCK_APP_NAME: &str = "Spotify Gateway Demo";

/// A chromedriver process in its own process group, so that dropping it also ends the
/// Chromium it started even when a test fails before closing the WebDriver session.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    async fn start() -> Driver {
        use std::os::unix::process::CommandExt;
        for path in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(path).exists(),
                "{path} is missing: `apt-get install chromium chromium-driver` (scripts/test.sh \
                 does it)"
            );
        }
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let mut driver = Driver { child, port };
        let url = format!("{}/status", driver.url());
        let child = &mut driver.child;
        wait_until(DRIVER_TIMEOUT, "chromedriver to report ready", || {
            let exited = child.try_wait().expect("chromedriver status");
            let url = &url;
            async move {
                if let Some(status) = exited {
                    panic!("chromedriver exited with {status}");
                }
                let Ok(r) = reqwest::get(url).await else {
                    return false;
                };
                let body: Value = r.json().await.unwrap_or(Value::Null);
                body["value"]["ready"] == true
            }
        })
        .await;
        driver
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this test created for its own chromedriver.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// One headless Chromium with a fresh profile, and where its screenshots go.
struct Browser {
    client: Client,
    artifacts: PathBuf,
    prefix: &'static str,
    // Dropped after `client` is closed: the driver, then the profile directory.
    _driver: Driver,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start(prefix: &'static str) -> Browser {
        let driver = Driver::start().await;
        let profile = tempfile::tempdir().expect("profile dir");
        let args = [
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            // Tall enough that the whole consent page fits in one screenshot.
            "--window-size=1024,1280".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!("a JSON object literal")
        };
        // chromedriver speaks plain http on loopback: no TLS connector needed.
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&driver.url())
            .await
            .expect("WebDriver session with headless Chromium");
        let artifacts = repo_root().join("target").join("browser-artifacts");
        std::fs::create_dir_all(&artifacts).expect("artifact dir");
        Browser {
            client,
            artifacts,
            prefix,
            _driver: driver,
            _profile: profile,
        }
    }

    /// Saves a screenshot of the page as `<prefix>-<step>.png`.
    async fn snap(&self, step: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let path = self.artifacts.join(format!("{}-{step}.png", self.prefix));
        std::fs::write(&path, png).expect("write screenshot");
    }

    /// Waits (bounded) for the element that marks the page a step expects.
    async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(STEP_TIMEOUT)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => {
                let url = self.client.current_url().await.map(|u| u.to_string());
                let source = self.client.source().await.unwrap_or_default();
                panic!("no {css:?} within {STEP_TIMEOUT:?} ({e}); at {url:?}:\n{source}");
            }
        }
    }

    /// Waits (bounded) until the page's `h1#heading` reads `expected`. After a click that
    /// navigates, the old page's heading may still be there, or go stale between finding it
    /// and reading it: only the new page's heading ends the wait.
    async fn wait_for_heading(&self, expected: &str) {
        let deadline = std::time::Instant::now() + STEP_TIMEOUT;
        let mut last = None;
        loop {
            if let Ok(heading) = self.client.find(Locator::Css("h1#heading")).await {
                if let Ok(text) = heading.text().await {
                    if text == expected {
                        return;
                    }
                    last = Some(text);
                }
            }
            if std::time::Instant::now() >= deadline {
                let url = self.client.current_url().await.map(|u| u.to_string());
                panic!("the heading {expected:?} within {STEP_TIMEOUT:?}; last seen {last:?} at {url:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .expect("text")
    }

    async fn url(&self) -> String {
        self.client.current_url().await.expect("url").to_string()
    }

    async fn title(&self) -> String {
        self.client.title().await.expect("title")
    }

    async fn close(self) {
        self.client
            .close()
            .await
            .expect("close the WebDriver session");
    }
}

/// The mock Spotify, the gateway and the demo's sample app (the one use of the gateway
/// library in this file) on ephemeral loopback ports.
async fn start_stack() -> Stack {
    start_stack_with(|b| b).await
}

/// [`start_stack`] with more changes to the builder.
async fn start_stack_with(change: impl FnOnce(StackBuilder) -> StackBuilder) -> Stack {
    change(Stack::builder())
        .app(App::custom(|listener, ports| {
            let egress = format!("127.0.0.1:{}", ports.egress)
                .parse()
                .expect("egress addr");
            tokio::spawn(async move {
                let _ = spotify_gateway::demo::sample_app::serve(listener, egress, None).await;
            })
        }))
        .set("server.app_name", APP_NAME)
        .start()
        .await
}

/// The steps through the sample app and the consent page that several tests share.
trait SampleApp {
    async fn open_app_until_consent(&self, b: &Browser);
    async fn agree_as_alice(&self, b: &Browser);
}

impl SampleApp for Stack {
    /// Opens the sample app in `b` and checks that it lands on the mock's consent page.
    async fn open_app_until_consent(&self, b: &Browser) {
        b.client
            .goto(&format!("{}/", self.gw.public_url()))
            .await
            .expect("open the app");
        b.wait_for("button.agree").await;
        let url = b.url().await;
        // The gateway sent the browser to sign in, and the sign-in to the mock's authorize.
        assert!(
            url.starts_with(&format!("{}/authorize?", self.mock.base_url())),
            "{url}"
        );
        assert!(url.contains("client_id=test-client-id"), "{url}");
        let callback = format!("127.0.0.1%3A{}%2Fauth%2Fcallback", self.gw.ports.public);
        assert!(url.contains(&callback), "{url}");
        assert_eq!(b.title().await, "Authorize - Spotify");
        let heading = b.text("h1").await;
        assert!(heading.contains(MOCK_APP_NAME), "{heading}");
        // Scopes in plain words, and both users to pick from.
        let scopes = b.text("ul[aria-labelledby=scopes]").await;
        assert!(scopes.contains("View your email address"), "{scopes}");
        assert!(
            scopes.contains("Read your currently playing content"),
            "{scopes}"
        );
        let users = b.text("fieldset").await;
        assert!(users.contains("Alice Andersson") && users.contains("Bob Baker"));
        b.wait_for("button.cancel").await;
    }

    /// On the consent page: picks Alice, agrees, and checks the app page that follows.
    async fn agree_as_alice(&self, b: &Browser) {
        let bob = b.wait_for("input[name=user][value=bob]").await;
        bob.click().await.expect("pick Bob");
        let alice = b.wait_for("input[name=user][value=alice]").await;
        alice.click().await.expect("pick Alice");
        assert!(alice.is_selected().await.expect("selected"));
        assert!(!bob.is_selected().await.expect("selected"));
        b.client
            .find(Locator::Css("button.agree"))
            .await
            .expect("Agree")
            .click()
            .await
            .expect("click Agree");
        b.wait_for("#user-name").await;
        assert_eq!(b.url().await, format!("{}/", self.gw.public_url()));
        assert_eq!(b.text("#user-name").await, "Alice Andersson");
        assert_eq!(b.title().await, "Alice Andersson · Sample app");
        // No picture in the mock's profile: initials in a circle.
        assert_eq!(b.text(".profile .avatar").await, "AA");
        let playing = b.text("#now-playing").await;
        assert!(
            playing.contains("Dancing Queen") && playing.contains("ABBA"),
            "{playing}"
        );
        let playlists = b.text("#playlists").await;
        assert!(
            playlists.contains("Dancing in the Kitchen") && playlists.contains("Late Night Soul"),
            "{playlists}"
        );
    }
}

/// Open the app → sign in at the consent page as Alice → the app shows her → sign out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_with_agree_then_sign_out() {
    let s = start_stack().await;
    let b = Browser::start("approve").await;

    s.open_app_until_consent(&b).await;
    b.snap("1-consent").await;
    s.agree_as_alice(&b).await;
    b.snap("2-app").await;
    // The page's Spotify calls reached Spotify (through the egress listener: the app has
    // no other way there).
    let api_paths: Vec<String> = mock_requests(&s.mock)
        .await
        .into_iter()
        .filter(|r| r["target"] == "api")
        .filter_map(|r| r["path"].as_str().map(str::to_string))
        .collect();
    for path in [
        "/v1/me",
        "/v1/me/player/currently-playing",
        "/v1/me/playlists",
    ] {
        assert!(
            api_paths.iter().any(|p| p.split('?').next() == Some(path)),
            "{path} not in {api_paths:?}"
        );
    }

    b.client
        .find(Locator::Css("button.signout"))
        .await
        .expect("Sign out")
        .click()
        .await
        .expect("click Sign out");
    b.wait_for_heading("Signed out").await;
    assert_eq!(b.title().await, format!("Signed out · {APP_NAME}"));
    assert_eq!(b.text(".brand").await, APP_NAME);
    let button = b
        .client
        .find(Locator::Css("a.button"))
        .await
        .expect("button");
    assert_eq!(button.text().await.expect("text"), "Sign in with Spotify");
    assert_eq!(
        button.attr("href").await.expect("href").as_deref(),
        Some("/auth/login")
    );
    b.snap("3-signed-out").await;

    // The session is gone: opening the app asks to sign in again.
    s.open_app_until_consent(&b).await;
    b.close().await;
}

/// Cancel on the consent page → the gateway's access-denied page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_at_consent_shows_access_denied() {
    let s = start_stack().await;
    let b = Browser::start("cancel").await;

    s.open_app_until_consent(&b).await;
    b.snap("1-consent").await;
    b.client
        .find(Locator::Css("button.cancel"))
        .await
        .expect("Cancel")
        .click()
        .await
        .expect("click Cancel");
    b.wait_for_heading("Access denied").await;
    assert_eq!(b.title().await, format!("Access denied · {APP_NAME}"));
    let url = b.url().await;
    assert!(
        url.starts_with(&format!("{}/auth/callback?", s.gw.public_url())),
        "{url}"
    );
    let message = b.text(".message").await;
    assert!(message.contains(APP_NAME), "{message}");
    b.wait_for("a.button.spotify").await;
    b.snap("2-access-denied").await;
    b.close().await;
}

/// Signed in, then signed out on another device: the next page says the session has
/// expired and its button signs in again and comes back; API callers still get 401 JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_ended_elsewhere_shows_expired_page() {
    let s = start_stack().await;
    let b = Browser::start("expired").await;
    s.open_app_until_consent(&b).await;
    s.agree_as_alice(&b).await;

    // WebDriver sees HttpOnly cookies: take the session cookie to "another device".
    let cookie = b
        .client
        .get_named_cookie("spotify_gateway_session")
        .await
        .expect("session cookie");
    let cookie = format!("{}={}", cookie.name(), cookie.value());
    let other_device = reqwest::Client::new();
    let resp = other_device
        .post(format!("{}/auth/logout", s.gw.public_url()))
        .header("cookie", &cookie)
        .header("accept", "application/json")
        .send()
        .await
        .expect("logout elsewhere");
    assert_eq!(resp.status(), 200);

    // An API caller with the dead cookie still gets 401 JSON, not a page.
    let resp = other_device
        .get(format!("{}/", s.gw.public_url()))
        .header("cookie", &cookie)
        .header("accept", "application/json")
        .send()
        .await
        .expect("api call");
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "unauthenticated");

    b.client.refresh().await.expect("reload");
    b.wait_for_heading("Your session has expired").await;
    assert_eq!(
        b.title().await,
        format!("Your session has expired · {APP_NAME}")
    );
    let button = b
        .client
        .find(Locator::Css("a.button"))
        .await
        .expect("button");
    assert_eq!(button.text().await.expect("text"), "Sign in with Spotify");
    assert_eq!(
        button.attr("href").await.expect("href").as_deref(),
        Some("/auth/login?return_to=%2F")
    );
    b.snap("1-session-expired").await;

    button.click().await.expect("click Sign in");
    b.wait_for("button.agree").await;
    s.agree_as_alice(&b).await;
    b.snap("2-signed-in-again").await;
    b.close().await;
}

/// Clicks the element `css` names.
async fn click(b: &Browser, css: &str) {
    b.wait_for(css)
        .await
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

/// A session within a week of its deadline: the page load offers "Renew with Spotify"; one
/// click, consent, and the browser is back on the page with a new session replacing the old.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_consent_offer_renews_in_one_click_and_comes_back() {
    let s = start_stack_with(|b| b.set("session.reauth_after", "6d")).await;
    let b = Browser::start("reconsent").await;
    s.open_app_until_consent(&b).await;
    click(&b, "input[name=user][value=alice]").await;
    click(&b, "button.agree").await;
    // Back from Spotify, the first page is the offer: this session ends in 6 days.
    b.wait_for_heading("Renew your Spotify connection").await;
    assert_eq!(
        b.title().await,
        format!("Renew your Spotify connection · {APP_NAME}")
    );
    let message = b.text(".message").await;
    assert!(message.contains("in 6 days"), "{message}");
    b.snap("1-offer").await;
    let old = b
        .client
        .get_named_cookie("spotify_gateway_session")
        .await
        .expect("session cookie");
    let old = format!("{}={}", old.name(), old.value());

    click(&b, "a.button.spotify").await;
    b.wait_for("button.agree").await;
    b.snap("2-consent-again").await;
    click(&b, "input[name=user][value=alice]").await;
    click(&b, "button.agree").await;
    b.wait_for("#user-name").await;
    assert_eq!(b.url().await, format!("{}/", s.gw.public_url()));
    assert_eq!(b.text("#user-name").await, "Alice Andersson");
    b.snap("3-renewed").await;
    // The old session was replaced.
    let resp = reqwest::Client::new()
        .get(format!("{}/auth/userinfo", s.gw.public_url()))
        .header("cookie", &old)
        .send()
        .await
        .expect("userinfo");
    assert_eq!(resp.status(), 401, "the old session is gone");
    let new = b
        .client
        .get_named_cookie("spotify_gateway_session")
        .await
        .expect("session cookie");
    assert_ne!(format!("{}={}", new.name(), new.value()), old);
    b.close().await;
}

/// From the app: "Disconnect and delete my data" → the confirmation → the gateway deletes the
/// session and links to Spotify's page for removing the app's access; the app asks to sign in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_page_deletes_the_session_and_links_to_spotify() {
    let s = start_stack().await;
    let b = Browser::start("disconnect").await;
    s.open_app_until_consent(&b).await;
    s.agree_as_alice(&b).await;
    click(&b, "a#disconnect").await;
    b.wait_for_heading("Disconnect your Spotify account").await;
    b.snap("1-confirm").await;

    click(&b, "button.danger").await;
    b.wait_for_heading("Disconnected").await;
    assert_eq!(b.title().await, format!("Disconnected · {APP_NAME}"));
    let link = b
        .client
        .find(Locator::Css("a.button.spotify"))
        .await
        .expect("link to Spotify");
    assert_eq!(
        link.attr("href").await.expect("href").as_deref(),
        Some("https://www.spotify.com/account/apps/")
    );
    b.snap("2-disconnected").await;
    // Nothing is left: the app asks to sign in again.
    s.open_app_until_consent(&b).await;
    b.close().await;
}

/// The sample app's "Play in the browser" panel, with `[playback]` on: the page's script
/// fetches the Web Playback SDK's token from the gateway as the SDK would, and shows its expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_play_panel_fetches_the_playback_token_from_the_page() {
    let s = start_stack_with(|b| {
        b.set(
            "spotify.scopes",
            [
                "user-read-private",
                "user-read-email",
                "user-read-currently-playing",
                "playlist-read-private",
                "streaming",
            ],
        )
        .edit(|doc| doc["playback"] = toml_edit::table())
        .set("playback.enabled", true)
    })
    .await;
    let b = Browser::start("playback").await;
    s.open_app_until_consent(&b).await;
    s.agree_as_alice(&b).await;
    click(&b, "button#playback-fetch").await;
    b.wait_for("#playback-status[data-expires-in]").await;
    let status = b.text("#playback-status").await;
    assert!(status.contains("Token received"), "{status}");
    assert!(status.contains("expires in"), "{status}");
    let expires_in: u64 = b
        .client
        .find(Locator::Css("#playback-status"))
        .await
        .expect("status")
        .attr("data-expires-in")
        .await
        .expect("attr")
        .expect("set")
        .parse()
        .expect("seconds");
    assert!((3000..=3600).contains(&expires_in), "{expires_in}");
    b.snap("1-token").await;
    // The browser's own fetch: same-origin metadata, so the gateway issued it.
    assert_eq!(
        s.metric("spotify_gateway_playback_tokens_total{app=\"default\",result=\"issued\"}")
            .await,
        1.0
    );
    assert_eq!(
        s.metric("spotify_gateway_playback_tokens_total{app=\"default\",result=\"cross_site\"}")
            .await,
        0.0
    );
    b.close().await;
}

/// Two apps of one gateway (`[[apps]]`) in one browser: Alice signs into `radio` (PKCE) and
/// `charts` on their own hosts, each at its own client id; both pages show her; signing out
/// of one leaves the other signed in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_apps_in_one_browser_each_signed_in_on_its_own() {
    let s = start_stack_with(three_apps).await;
    let b = Browser::start("two-apps").await;
    let port = s.ports.public;
    for app in [&RADIO, &CHARTS] {
        let home = format!("{}/", app.public_url(port));
        b.client.goto(&home).await.expect("open the app");
        b.wait_for("button.agree").await;
        let url = b.url().await;
        assert!(
            url.contains(&format!("client_id={}", app.client_id)),
            "{url}"
        );
        let heading = b.text("h1").await;
        assert!(
            heading.contains(&format!("{} (test)", app.name)),
            "{heading}"
        );
        let alice = b.wait_for("input[name=user][value=alice]").await;
        alice.click().await.expect("pick Alice");
        click(&b, "button.agree").await;
        b.wait_for("#user-name").await;
        assert_eq!(b.url().await, home);
        assert_eq!(b.text("#user-name").await, "Alice Andersson");
        b.snap(&format!("1-{}", app.name)).await;
    }
    // Each app's page called Spotify with its own app's token.
    let clients: std::collections::BTreeSet<String> = mock_requests(&s.mock)
        .await
        .into_iter()
        .filter(|r| r["target"] == "api")
        .filter_map(|r| r["client_id"].as_str().map(str::to_string))
        .collect();
    let expected: std::collections::BTreeSet<String> =
        [RADIO.client_id, CHARTS.client_id].map(String::from).into();
    assert_eq!(clients, expected);
    // Radio again: still signed in, no consent page.
    b.client
        .goto(&format!("{}/", RADIO.public_url(port)))
        .await
        .expect("open radio");
    b.wait_for("#user-name").await;
    click(&b, "button.signout").await;
    b.wait_for_heading("Signed out").await;
    // The page says which app the user signed out of.
    assert_eq!(b.title().await, format!("Signed out · {APP_NAME} (radio)"));
    b.snap("2-radio-signed-out").await;
    // Charts is still signed in; radio asks to sign in again.
    b.client
        .goto(&format!("{}/", CHARTS.public_url(port)))
        .await
        .expect("open charts");
    b.wait_for("#user-name").await;
    assert_eq!(b.text("#user-name").await, "Alice Andersson");
    b.client
        .goto(&format!("{}/", RADIO.public_url(port)))
        .await
        .expect("open radio");
    b.wait_for("button.agree").await;
    b.snap("3-radio-asks-again").await;
    b.close().await;
}
