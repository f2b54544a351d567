//! The gateway binary running as its own process.

use std::fmt::Display;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{
    wait_until_explained, Deadline, GatewayConfig, Ports, CLIENT_SECRET, PROXY_CREDENTIALS,
    SESSION_SECRET,
};

/// How long a gateway may take to report ready before a test gives up.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The gateway binary running as its own process.
pub struct Gateway {
    child: Option<Child>,
    pub ports: Ports,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    /// The process's file-descriptor limit (soft and hard), when a test lowers it.
    fd_limit: Option<u64>,
    /// Extra environment of the process (e.g. `SSL_CERT_FILE`).
    env: Vec<(String, String)>,
}

impl Gateway {
    /// Starts `spotify-gateway run` with `config` (for a gateway on `ports`) and waits until
    /// `/readyz` answers 200.
    pub async fn start(ports: Ports, config: &GatewayConfig) -> Gateway {
        Self::start_limited(ports, config, None).await
    }

    /// [`Gateway::start`] with extra environment variables for the process.
    pub async fn start_with_env(
        ports: Ports,
        config: &GatewayConfig,
        env: Vec<(String, String)>,
    ) -> Gateway {
        Self::start_full(ports, config, None, env).await
    }

    /// [`Gateway::start`] with the process's file-descriptor limit (`ulimit -n`, soft and
    /// hard) set to `fd_limit`.
    pub async fn start_limited(
        ports: Ports,
        config: &GatewayConfig,
        fd_limit: Option<u64>,
    ) -> Gateway {
        Self::start_full(ports, config, fd_limit, Vec::new()).await
    }

    async fn start_full(
        ports: Ports,
        config: &GatewayConfig,
        fd_limit: Option<u64>,
        env: Vec<(String, String)>,
    ) -> Gateway {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("gateway.toml");
        config.write(&config_path);
        let mut gw = Gateway {
            child: None,
            ports,
            dir,
            config_path,
            fd_limit,
            env,
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
        let mut command = Command::new(env!("CARGO_BIN_EXE_spotify-gateway"));
        if let Some(limit) = self.fd_limit {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; the closure allocates nothing.
            unsafe {
                command.pre_exec(move || {
                    let rlimit = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let child = command
            .arg("run")
            .arg("--config")
            .arg(&self.config_path)
            .env("TEST_CLIENT_SECRET", CLIENT_SECRET)
            .env("TEST_SESSION_SECRET", SESSION_SECRET)
            .env("TEST_PROXY_CREDENTIALS", PROXY_CREDENTIALS)
            .env_remove("RUST_LOG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
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
        read_log(&self.log_path())
    }

    async fn wait_ready(&mut self) {
        let url = format!("{}/readyz", self.admin_url());
        let client = reqwest::Client::new();
        let log_path = self.log_path();
        let child = self.child.as_mut().expect("spawned");
        wait_until_explained(
            READY_TIMEOUT,
            "the gateway's /readyz to answer 200",
            || {
                let exited = child.try_wait().ok().flatten();
                let (client, url, log_path) = (&client, &url, &log_path);
                async move {
                    if let Some(status) = exited {
                        panic!(
                            "gateway exited with {status} before ready:\n{}",
                            read_log(log_path)
                        );
                    }
                    client
                        .get(url)
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == 200)
                }
            },
            || read_log(&log_path),
        )
        .await;
    }

    /// [`super::wait_until`] for something this gateway does; the panic shows its log.
    pub async fn wait_until<F, Fut>(&self, within: impl Deadline, what: impl Display, condition: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        wait_until_explained(within, what, condition, || self.log()).await;
    }

    /// The config file as it is now.
    pub fn config(&self) -> GatewayConfig {
        let text = std::fs::read_to_string(&self.config_path).expect("read config");
        GatewayConfig::parse(&text)
    }

    /// Replaces the config file (for a SIGHUP to pick up).
    pub fn write_config(&self, config: &GatewayConfig) {
        config.write(&self.config_path);
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

    /// Moves this gateway's clock (`clock::now_ms`, the one every expiry is stored in) `by`
    /// forward, as if that time had passed for it: a token, a session deadline or a cool-down
    /// runs out without the test waiting for it. Timers on a monotonic clock (tokio's, the
    /// refresh failure hold) and the mock Spotify's clock do not move.
    pub async fn advance_clock(&self, by: Duration) {
        let url = format!(
            "{}/test/clock?advance_ms={}",
            self.admin_url(),
            by.as_millis()
        );
        let resp = reqwest::Client::new()
            .post(url)
            .send()
            .await
            .expect("the gateway's test clock");
        assert_eq!(
            resp.status(),
            200,
            "POST /test/clock: is the gateway built with the test-clock feature?"
        );
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

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
