//! Test support: the real gateway binary on loopback ports next to the mock Spotify, put
//! together by [`Stack::builder`], and [`wait_until`] for whatever takes a moment.
//!
//! ```ignore
//! let s = Stack::builder()
//!     .token_lifetime(Duration::from_secs(2))
//!     .set("egress.trust_user_header", true) // toml_edit: dotted key -> value
//!     .remove("spotify.client_secret_env")
//!     .edit(|doc| doc["spotify"]["scopes"].as_array_mut().unwrap().push("user-top-read"))
//!     .app(App::Echo)
//!     .start()
//!     .await;
//! s.gw.wait_until(Duration::from_secs(5), "the reload", || async { /* condition */ true }).await;
//! ```
//!
//! - `stack.rs`: [`Stack`] and its builder: mock, internal app and gateway in one go.
//! - `config.rs`: the gateway config template and its `toml_edit` edits ([`GatewayConfig`]).
//! - `gateway.rs`: the gateway process ([`Gateway`]).
//! - `mock.rs`: the mock Spotify's config and controls; `apps.rs`: the apps behind the public
//!   listener; `http.rs`: browsers, logins and raw requests; `redis.rs`: a real redis-server; `redis_ha.rs`: a Sentinel set and a Cluster of real processes (`redis_tls.rs`: over TLS with passwords);
//!   `proxy.rs`: a real CONNECT proxy (tinyproxy); `tmpfs.rs`: a small tmpfs to fill up (root);
//!   `ingress.rs`: real nginx and Caddy asking the gateway's `/auth/check`;
//!   `wait.rs`: [`wait_until`]; `webhook.rs`: a real receiver of the gateway's webhooks and
//!   `[[webhooks]]` entries; `audit.rs`: the audit lines in a gateway's log;
//!   `otlp.rs`: a real OTLP/HTTP receiver of the gateway's spans ([`OtlpReceiver`]).
//!   `several_apps.rs`: three `[[apps]]` on three loopback hosts ([`three_apps`]).
//! - `login_by_hand.rs`: a login step by step with explicit cookies ([`pending_login`]);
//!   `snapshot.rs`: what an attack must leave as it was ([`Observe`], [`watched_stack`]);
//!   `test_ca.rs`: a test CA in a file ([`Ca`]) and a mock Spotify on `https://`.
//!
//! Nothing here names a path of the gateway library: the few tests that use it (store_backends.rs,
//! reload.rs, identity.rs, telemetry.rs, browser.rs's sample app) do so themselves.
#![allow(dead_code, unused_imports)]

mod apps;
mod audit;
mod config;
mod gateway;
mod http;
mod ingress;
mod login_by_hand;
mod mock;
mod otlp;
mod proxy;
mod redis;
mod redis_ha;
mod redis_tls;
mod several_apps;
mod snapshot;
mod stack;
mod test_ca;
mod tmpfs;
mod wait;
mod webhook;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;

pub use apps::*;
pub use audit::*;
pub use config::*;
pub use gateway::*;
pub use http::*;
pub use ingress::*;
pub use login_by_hand::*;
pub use mock::*;
pub use otlp::*;
pub use proxy::*;
pub use redis::*;
pub use redis_ha::*;
pub use redis_tls::*;
pub use several_apps::*;
pub use snapshot::*;
pub use stack::*;
pub use test_ca::*;
pub use tmpfs::*;
pub use wait::*;
pub use webhook::*;

pub const CLIENT_ID: &str = "test-client-id";
pub const CLIENT_SECRET: &str = "test-client-secret-do-not-log";
/// `user:password` for the tests' CONNECT proxy (`TEST_PROXY_CREDENTIALS` in the gateway's
/// environment, for `spotify.proxy_credentials_env`).
pub const PROXY_CREDENTIALS: &str = "gateway:proxy-password-do-not-log";
pub const SESSION_SECRET: &str = "test-session-secret-0123456789abcdef-0123";

/// A loopback port nobody listens on right now, never handed out twice on this machine while
/// the process that took it lives.
///
/// Ports come from 20000-31999, below Linux's ephemeral range (32768+): a port picked here and
/// bound a moment later by a gateway cannot meanwhile be given to another test's `bind(0)` or
/// to an outgoing connection. Test binaries run side by side (`cargo nextest` runs each test in
/// its own process), so a port is also claimed across processes: an exclusive `flock` on
/// `<tmp>/spotify-gateway-test-ports/<port>`, held until this process exits (the kernel drops
/// it then, even after a crash), and a port whose lock another process holds is skipped.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::fs::File;
    use std::os::fd::AsRawFd;
    use std::sync::Mutex;
    struct Given {
        next: u16,
        used: HashSet<u16>,
        /// The lock files of the ports handed out: dropping one would release its port.
        held: Vec<File>,
    }
    static GIVEN: Mutex<Option<Given>> = Mutex::new(None);
    let dir = std::env::temp_dir().join("spotify-gateway-test-ports");
    std::fs::create_dir_all(&dir).expect("create the port lock directory");
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    let g = given.get_or_insert_with(|| Given {
        // Spread test processes over the range, so that they rarely meet at the locks.
        next: 20000 + (std::process::id() % 600) as u16 * 20,
        used: HashSet::new(),
        held: Vec::new(),
    });
    for _ in 0..12000 {
        let port = g.next;
        g.next = if g.next >= 31999 { 20000 } else { g.next + 1 };
        if !g.used.insert(port) {
            continue;
        }
        let Ok(lock) = File::create(dir.join(port.to_string())) else {
            continue;
        };
        // SAFETY: flock on a descriptor this function owns; no memory is shared.
        let claimed = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if claimed && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            g.held.push(lock);
            return port;
        }
    }
    panic!("no free loopback port in 20000-31999");
}

/// Ports for one gateway.
#[derive(Clone, Copy, Debug)]
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

    /// The gateway's callback on these ports, as registered at the mock.
    pub fn callback_url(&self) -> String {
        format!("http://127.0.0.1:{}/auth/callback", self.public)
    }
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
