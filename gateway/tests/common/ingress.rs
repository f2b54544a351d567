//! Real ingresses in front of the app, asking the gateway's `/auth/check` (forward-auth):
//! nginx with `auth_request` and Caddy with `forward_auth`, each an unprivileged process on a
//! loopback port with a generated config in a temp dir. The configs are
//! examples/ingress/nginx.conf and examples/ingress/Caddyfile (docs/forward-auth.md), with
//! the addresses put on loopback.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::{free_port, wait_until_explained, READY_TIMEOUT};

/// Which ingress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IngressKind {
    Nginx,
    Caddy,
}

/// A running ingress on `127.0.0.1:port`, in front of the app, asking the gateway.
pub struct Ingress {
    child: Option<Child>,
    pub kind: IngressKind,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Ingress {
    /// A free port for an ingress, to list in `forward_auth.allowed_hosts` before the
    /// gateway starts.
    pub fn port() -> u16 {
        free_port()
    }

    /// Starts `kind` on `port`, protecting the app on `app_port` with the gateway's public
    /// listener on `gateway_port`, and waits until it accepts connections.
    pub async fn start(kind: IngressKind, port: u16, gateway_port: u16, app_port: u16) -> Ingress {
        let dir = tempfile::tempdir().expect("temp dir");
        let child = match kind {
            IngressKind::Nginx => start_nginx(dir.path(), port, gateway_port, app_port),
            IngressKind::Caddy => start_caddy(dir.path(), port, gateway_port, app_port),
        };
        let mut ingress = Ingress {
            child: Some(child),
            kind,
            port,
            dir,
        };
        ingress.wait_ready().await;
        ingress
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the ingress logged (its error log, or Caddy's output).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    async fn wait_ready(&mut self) {
        let port = self.port;
        let child = self.child.as_mut().expect("started");
        let log_path = self.dir.path().join("error.log");
        let kind = self.kind;
        wait_until_explained(
            READY_TIMEOUT,
            format!("{kind:?} to accept connections on 127.0.0.1:{port}"),
            || {
                let exited = child.try_wait().ok().flatten();
                let log_path = &log_path;
                async move {
                    if let Some(status) = exited {
                        panic!(
                            "{kind:?} exited with {status}:\n{}",
                            std::fs::read_to_string(log_path).unwrap_or_default()
                        );
                    }
                    tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .is_ok()
                }
            },
            || std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default(),
        )
        .await;
    }
}

impl Drop for Ingress {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The nginx config: examples/ingress/nginx.conf (the snippet in docs/forward-auth.md) with its
/// addresses on loopback, inside an `http {}` that keeps every file in `dir`.
pub fn nginx_config(dir: &Path, port: u16, gateway_port: u16, app_port: u16) -> String {
    let server = example(
        "nginx.conf",
        &[
            ("listen 80;", format!("listen 127.0.0.1:{port};")),
            ("server_name app.example.com;", "server_name _;".into()),
            (
                "http://spotify-gateway:8080",
                format!("http://127.0.0.1:{gateway_port}"),
            ),
            ("http://app:3000", format!("http://127.0.0.1:{app_port}")),
        ],
    );
    let d = dir.display();
    format!(
        r#"
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 128; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
{server}
}}
"#
    )
}

/// `examples/ingress/{name}` with each `(from, to)` replaced; panics when a `from` is not
/// there (the example changed: the test must follow).
fn example(name: &str, replacements: &[(&str, String)]) -> String {
    let path = super::repo_root().join("examples/ingress").join(name);
    let mut text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    for (from, to) in replacements {
        assert!(
            text.contains(from),
            "{} no longer has {from:?}",
            path.display()
        );
        text = text.replace(from, to);
    }
    text
}

fn start_nginx(dir: &Path, port: u16, gateway_port: u16, app_port: u16) -> Child {
    let config = dir.join("nginx.conf");
    std::fs::write(&config, nginx_config(dir, port, gateway_port, app_port)).expect("write");
    Command::new(binary("nginx", &["/usr/sbin/nginx"]))
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(&config)
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx")
}

/// The Caddyfile: examples/ingress/Caddyfile (the snippet in docs/forward-auth.md) with its
/// addresses on loopback, serving any host over plain http, with no admin endpoint or stored
/// state.
pub fn caddyfile(port: u16, gateway_port: u16, app_port: u16) -> String {
    let site = example(
        "Caddyfile",
        &[
            ("app.example.com {", format!("http://:{port} {{")),
            ("spotify-gateway:8080", format!("127.0.0.1:{gateway_port}")),
            ("app:3000", format!("127.0.0.1:{app_port}")),
        ],
    );
    format!("{{\n    admin off\n    auto_https off\n    persist_config off\n}}\n{site}")
}

fn start_caddy(dir: &Path, port: u16, gateway_port: u16, app_port: u16) -> Child {
    let config = dir.join("Caddyfile");
    std::fs::write(&config, caddyfile(port, gateway_port, app_port)).expect("write");
    let log = std::fs::File::create(dir.join("error.log")).expect("log");
    Command::new(binary("caddy", &[]))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .args(["--adapter", "caddyfile"])
        // Caddy keeps its state under $HOME/XDG dirs: a temp dir of its own.
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start caddy")
}

/// `name` on the PATH (or one of `fallbacks`); panics saying how to get it.
fn binary(name: &str, fallbacks: &[&str]) -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    on_path
        .or_else(|| fallbacks.iter().map(PathBuf::from).find(|p| p.is_file()))
        .unwrap_or_else(|| {
            panic!(
                "{name} is missing: run ./scripts/test.sh, which installs it (and puts it on PATH)"
            )
        })
}
