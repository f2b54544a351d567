//! Test support: the real gateway binary on loopback ports, next to the mock Spotify.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use mock_spotify::{MockConfig, MockSpotify};
use serde_json::Value;

/// How long a gateway may take to report ready before a test gives up.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

pub const CLIENT_ID: &str = "test-client-id";
pub const CLIENT_SECRET: &str = "test-client-secret-do-not-log";
pub const SESSION_SECRET: &str = "test-session-secret-0123456789abcdef-0123";

/// A loopback port nobody listens on right now, never handed out twice in this process.
///
/// Ports come from 20000-31999, below Linux's ephemeral range (32768+): a port picked here and
/// bound a moment later by a gateway cannot meanwhile be given to another test's `bind(0)` or
/// to an outgoing connection.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static GIVEN: Mutex<Option<(u16, HashSet<u16>)>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    let (next, used) = given.get_or_insert_with(|| {
        // Spread test binaries (and concurrent runs) over the range.
        (
            20000 + (std::process::id() % 600) as u16 * 20,
            HashSet::new(),
        )
    });
    for _ in 0..12000 {
        let port = *next;
        *next = if *next >= 31999 { 20000 } else { *next + 1 };
        if used.insert(port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in 20000-31999");
}

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

/// Ports for one gateway.
#[derive(Clone, Copy)]
pub struct Ports {
    pub public: u16,
    pub egress: u16,
    pub admin: u16,
    /// The internal app behind the public listener.
    pub app: u16,
}

impl Ports {
    pub fn new() -> Ports {
        Ports {
            public: free_port(),
            egress: free_port(),
            admin: free_port(),
            app: free_port(),
        }
    }
}

/// A config for a gateway wired to `mock`; `extra` is appended (more tables) and `replace`
/// edits apply first.
pub fn gateway_config(
    ports: Ports,
    spotify_base: &str,
    replace: &[(&str, &str)],
    extra: &str,
) -> String {
    let mut text = format!(
        r#"
[spotify]
client_id = "{CLIENT_ID}"
client_secret_env = "TEST_CLIENT_SECRET"
flow = "authorization_code"
redirect_uri = "http://127.0.0.1:{public}/auth/callback"
scopes = ["user-read-private", "user-read-email", "user-read-currently-playing", "playlist-read-private"]
accounts_url = "{spotify_base}"
api_url = "{spotify_base}"

[listen]
public = "127.0.0.1:{public}"
egress = "127.0.0.1:{egress}"
admin = "127.0.0.1:{admin}"

[server]
threads = 2
grace_period = "1s"
log_level = "info"

[upstream]
url = "http://127.0.0.1:{app}"
public_paths = ["/public/"]

[session]
secret_env = "TEST_SESSION_SECRET"

[store]
backend = "memory"

[egress]
app_token = true
"#,
        public = ports.public,
        egress = ports.egress,
        admin = ports.admin,
        app = ports.app,
    );
    for (from, to) in replace {
        assert!(text.contains(from), "config template has no {from:?}");
        text = text.replace(from, to);
    }
    text.push_str(extra);
    text
}

/// The gateway binary running as its own process.
pub struct Gateway {
    child: Option<Child>,
    pub ports: Ports,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

impl Gateway {
    /// Starts `spotify-gateway run` with `config` and waits until `/readyz` answers 200.
    pub async fn start(ports: Ports, config: &str) -> Gateway {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("gateway.toml");
        std::fs::write(&config_path, config).expect("write config");
        let mut gw = Gateway {
            child: None,
            ports,
            dir,
            config_path,
        };
        gw.spawn().await;
        gw
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_spotify-gateway"))
            .arg("run")
            .arg("--config")
            .arg(&self.config_path)
            .env("TEST_CLIENT_SECRET", CLIENT_SECRET)
            .env("TEST_SESSION_SECRET", SESSION_SECRET)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start spotify-gateway");
        self.child = Some(child);
        self.wait_ready().await;
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("gateway.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    async fn wait_ready(&mut self) {
        let url = format!("{}/readyz", self.admin_url());
        let client = reqwest::Client::new();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("gateway exited with {status} before ready:\n{}", self.log());
            }
            if let Ok(r) = client.get(&url).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "gateway not ready in time:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn egress_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.egress)
    }
    pub fn public_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.public)
    }
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.admin)
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).expect("running")
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().expect("wait for gateway")
    }

    /// Waits for the process to exit by itself (after a signal the test sent).
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        child.wait().expect("wait for gateway")
    }

    /// Stops the process and starts it again with the same config.
    pub async fn restart(&mut self) {
        let status = self.terminate();
        assert!(status.success(), "gateway exit status {status}");
        self.spawn().await;
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
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

/// Runs the binary with arguments, returning (exit code, stdout, stderr).
pub fn run_cli(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_spotify-gateway"))
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("run spotify-gateway");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

pub fn start_addr() -> SocketAddr {
    "127.0.0.1:0".parse().expect("addr")
}

/// Sends raw bytes (for targets an HTTP client would normalise) and returns the status code
/// and the whole answer.
pub async fn raw_request(port: u16, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// The internal app for tests: answers every request with what it received, as JSON
/// `{"method","path","headers":{name: value}}`.
pub async fn start_echo_app(port: u16) -> tokio::task::JoinHandle<()> {
    use axum::http::{HeaderMap, Method, Uri};
    async fn echo(method: Method, uri: Uri, headers: HeaderMap) -> axum::Json<Value> {
        let mut map = serde_json::Map::new();
        for (name, value) in &headers {
            let value = value.to_str().unwrap_or("<binary>").to_string();
            map.entry(name.as_str().to_string())
                .and_modify(|v| {
                    *v = Value::String(format!("{}, {value}", v.as_str().unwrap_or("")))
                })
                .or_insert(Value::String(value));
        }
        axum::Json(serde_json::json!({
            "method": method.as_str(),
            "path": uri.to_string(),
            "headers": map,
        }))
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind echo app");
    let router = axum::Router::new().fallback(echo);
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    })
}

/// A browser-like client: a cookie jar and no automatic redirects.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

pub fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// The steps of a login, kept so tests can replay or tamper with them.
pub struct LoginTrip {
    pub authorize_url: String,
    pub callback_url: String,
    /// Where the gateway sent the browser after the callback.
    pub landed: String,
    pub set_cookies: Vec<String>,
}

/// Logs `user` in through the gateway's public listener with `browser`, approving at the mock.
pub async fn login(
    browser: &reqwest::Client,
    gw: &Gateway,
    user: &str,
    return_to: &str,
) -> LoginTrip {
    let resp = browser
        .get(format!("{}/auth/login", gw.public_url()))
        .query(&[("return_to", return_to)])
        .send()
        .await
        .expect("login");
    assert_eq!(resp.status(), 302, "login should redirect to Spotify");
    let authorize_url = location(&resp);
    let resp = browser
        .get(format!(
            "{authorize_url}&mock_user={user}&mock_decision=approve"
        ))
        .send()
        .await
        .expect("authorize");
    assert_eq!(
        resp.status(),
        302,
        "mock authorize: {:?}",
        resp.text().await
    );
    let callback_url = location(&resp);
    assert!(callback_url.contains("code="), "{callback_url}");
    let resp = browser.get(&callback_url).send().await.expect("callback");
    let status = resp.status();
    let landed = location(&resp);
    let set_cookies = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        status,
        302,
        "callback: {}",
        resp.text().await.unwrap_or_default()
    );
    LoginTrip {
        authorize_url,
        callback_url,
        landed,
        set_cookies,
    }
}

/// What the internal app received for a request through the public listener.
pub async fn via_public(browser: &reqwest::Client, gw: &Gateway, path: &str) -> (u16, Value) {
    let resp = browser
        .get(format!("{}{path}", gw.public_url()))
        .send()
        .await
        .expect("public");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A real `redis-server` on an ephemeral loopback port, persisting to a temp dir (AOF with
/// fsync on every write) so a stop and start loses nothing.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    password: Option<String>,
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        Self::start_with(None).await
    }

    /// A server that requires `password` (`requirepass`).
    pub async fn start_with_password(password: &str) -> RedisServer {
        Self::start_with(Some(password.to_string())).await
    }

    async fn start_with(password: Option<String>) -> RedisServer {
        let mut server = RedisServer {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("tmp"),
            password,
        };
        server.spawn().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        if let Some(pw) = &self.password {
            cmd.args(["--requirepass", pw]);
        }
        let child = cmd
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is missing: run ./scripts/test.sh, which installs it");
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        while !self.answers_ping().await {
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn answers_ping(&self) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        let mut buf = [0u8; 16];
        s.write_all(b"PING\r\n").await.is_ok()
            && s.read(&mut buf)
                .await
                // With a password set, an unauthenticated PING gets -NOAUTH: it is up.
                .is_ok_and(|n| buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH"))
    }

    /// Kills the server (SIGKILL: no goodbye to clients).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same data.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "still running");
        self.spawn().await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The admin listener's `/metrics` text.
pub async fn scrape(gw: &Gateway) -> String {
    reqwest::get(format!("{}/metrics", gw.admin_url()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

/// The value of the first series on `/metrics` whose line starts with `series` (a name, or a
/// name with its labels in Prometheus' order); `None` when there is none.
pub async fn metric_value(gw: &Gateway, series: &str) -> Option<f64> {
    scrape(gw)
        .await
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
