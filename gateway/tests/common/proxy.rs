//! A real HTTP CONNECT proxy (Debian's `tinyproxy`) on a loopback port, as clusters without
//! direct egress put in front of Spotify. Its log tells which tunnels it opened. And a frozen
//! one ([`FrozenProxy`]): it takes connections and never answers.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{free_port, wait_until, READY_TIMEOUT};

/// A proxy that has frozen: it accepts every connection and never reads or answers, as
/// tinyproxy does under SIGSTOP (the kernel still completes the handshake) or a proxy stuck
/// on its own upstream. The connections stay open until it is dropped.
pub struct FrozenProxy {
    pub port: u16,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FrozenProxy {
    pub async fn start() -> FrozenProxy {
        let port = free_port();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the frozen proxy");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
        FrozenProxy {
            port,
            accepted,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// How many connections it has taken.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for FrozenProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub struct Tinyproxy {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Tinyproxy {
    /// A proxy that lets loopback clients CONNECT to any port; with `credentials`
    /// (`user`, `password`) it requires HTTP Basic proxy authentication.
    pub async fn start(credentials: Option<(&str, &str)>) -> Tinyproxy {
        let dir = tempfile::tempdir().expect("tmp");
        // tinyproxy started as root drops to `nobody`, which must be able to write its log.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
                .expect("chmod");
        }
        let port = free_port();
        let log = dir.path().join("tinyproxy.log");
        // No ConnectPort line: CONNECT is allowed to any port (the mock's is ephemeral).
        let mut conf = format!(
            "User nobody\nGroup nogroup\nPort {port}\nListen 127.0.0.1\nTimeout 30\n\
             LogFile \"{}\"\nLogLevel Connect\nMaxClients 200\nAllow 127.0.0.1\n",
            log.display()
        );
        if let Some((user, password)) = credentials {
            conf.push_str(&format!("BasicAuth {user} {password}\n"));
        }
        let conf_path = dir.path().join("tinyproxy.conf");
        std::fs::write(&conf_path, conf).expect("write tinyproxy.conf");
        let child = Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tinyproxy is missing: run ./scripts/test.sh, which installs it");
        let proxy = Tinyproxy {
            child: Some(child),
            port,
            dir,
        };
        wait_until(READY_TIMEOUT, "tinyproxy to accept connections", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        proxy
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// How many CONNECT tunnels to `target` (`host:port`) the proxy was asked for.
    pub fn connects_to(&self, target: &str) -> usize {
        let log =
            std::fs::read_to_string(self.dir.path().join("tinyproxy.log")).unwrap_or_default();
        let wanted = format!("CONNECT {target} ");
        log.lines().filter(|l| l.contains(&wanted)).count()
    }

    /// Kills the proxy.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        self.stop();
    }
}
