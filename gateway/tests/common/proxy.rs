//! A real HTTP CONNECT proxy (Debian's `tinyproxy`) on a loopback port, as clusters without
//! direct egress put in front of Spotify. Its log tells which tunnels it opened.

use std::process::{Child, Command, Stdio};

use super::{free_port, wait_until, READY_TIMEOUT};

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
