//! A real `redis-server` for the store tests and the replicas.

use std::process::{Child, Command, Stdio};

use super::{free_port, wait_until, READY_TIMEOUT};

/// The server binary the store tests start: `redis-server`, or what `TEST_REDIS_SERVER`
/// names (`scripts/test.sh` runs the store suite again on Valkey's `valkey-server` so).
pub fn redis_server() -> String {
    std::env::var("TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
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

    /// The keys matching `pattern` (`KEYS`), as the gateway left them.
    pub async fn keys(&self, pattern: &str) -> Vec<String> {
        let client = redis::Client::open(self.url()).expect("redis url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut conn)
            .await
            .expect("keys")
    }

    async fn spawn(&mut self) {
        let mut cmd = Command::new(redis_server());
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
        let this = &*self;
        wait_until(READY_TIMEOUT, "redis-server to answer PING", || {
            this.answers_ping()
        })
        .await;
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

    /// Freezes the server (SIGSTOP): connections stay open and nothing answers, as a store
    /// that hangs; `resume` lets it go on.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("running");
        let sent = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill {signal} redis-server");
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
