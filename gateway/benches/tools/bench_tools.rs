//! `spotify-gateway-bench`: helpers for `benches/load.sh`. Built only with the `bench-tools`
//! feature; the production binary has none of this. (Just over 600 lines: the command line
//! of every helper is one `clap` enum here; the larger helpers have files of their own.)
//!
//! ```text
//! cargo build --release -p spotify-gateway --features bench-tools --bin spotify-gateway-bench
//! spotify-gateway-bench seeded --config gw.toml --sessions 100000   # gateway + hot sessions
//! spotify-gateway-bench startup --bin target/release/spotify-gateway --config gw.toml \
//!     --admin 127.0.0.1:9090 --runs 10                              # exec -> /readyz 200
//! spotify-gateway-bench storm --egress 127.0.0.1:8081 --assertion "$A" \
//!     --mock http://127.0.0.1:8900 --user alice --calls 200         # refresh storm
//! spotify-gateway-bench bare-proxy --listen 127.0.0.1:8082 --upstream 127.0.0.1:3000 \
//!     --set-header "Authorization: Bearer x" --threads 2            # pingora, nothing else
//! spotify-gateway-bench bare-proxy --listen 127.0.0.1:8083 --upstream 127.0.0.1:3443 \
//!     --tls --ca ca.pem --sni 127.0.0.1 --h2 --set-header "Host: 127.0.0.1:3443"  # over TLS
//! spotify-gateway-bench zipf-load --target http://127.0.0.1:8081 --clients 50 --tracks 1000 \
//!     --s 1.1 --duration 30s --rate 16 --users-file users --user-rate 4 --seed 1  # quota.sh
//! spotify-gateway-bench delay-proxy --listen 127.0.0.1:8443 --upstream 127.0.0.1:3443 \
//!     --delay 40ms                                                  # Spotify's distance
//! ```

mod delay_proxy;
#[path = "../support/seed.rs"]
mod seed;
mod zipf_load;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use clap::{Parser, Subcommand};
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::RunArgs;
use rustls::pki_types::pem::PemObject;
use spotify_gateway::config::{CaFile, Config};
use spotify_gateway::net::tls_roots::Trust;
use spotify_gateway::server;
use spotify_gateway::server::state::Gateway;
use spotify_gateway::telemetry::logging;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The gateway binary's allocator (src/main.rs), so the bare proxy, the seeded gateway and the
/// gateway are measured on the same footing.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tokio::net::TcpStream;

#[derive(Parser)]
#[command(
    name = "spotify-gateway-bench",
    about = "Benchmark helpers for benches/load.sh"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the gateway (as `spotify-gateway run`) with N hot sessions seeded first.
    Seeded {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        sessions: usize,
    },
    /// Time from exec of `BIN run --config FILE` to `/readyz` answering 200, several times.
    Startup {
        #[arg(long)]
        bin: PathBuf,
        #[arg(long)]
        config: PathBuf,
        /// The admin listener of that config.
        #[arg(long)]
        admin: SocketAddr,
        #[arg(long, default_value_t = 10)]
        runs: usize,
    },
    /// N concurrent calls for a user whose token was just expired at the mock.
    Storm {
        /// The egress listener.
        #[arg(long)]
        egress: SocketAddr,
        /// `X-Gateway-User` for that user.
        #[arg(long)]
        assertion: String,
        /// The mock Spotify (for `/__mock/expire` and `/__mock/stats`).
        #[arg(long)]
        mock: String,
        #[arg(long, default_value = "alice")]
        user: String,
        #[arg(long, default_value_t = 200)]
        calls: usize,
        #[arg(long, default_value = "/v1/me")]
        path: String,
    },
    /// A pingora proxy that only sets static request headers: pingora's own cost, the floor
    /// under the gateway's.
    BareProxy {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        upstream: SocketAddr,
        /// `Name: value`, set on every upstream request (repeat for several).
        #[arg(long = "set-header")]
        set_headers: Vec<String>,
        /// `Name`, removed from every upstream request (repeat for several).
        #[arg(long = "remove-header")]
        remove_headers: Vec<String>,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// pingora's `work_stealing = false`: one single-threaded runtime per thread.
        #[arg(long)]
        no_steal: bool,
        /// TLS to the upstream, its certificate verified (pingora's default, as the gateway).
        #[arg(long)]
        tls: bool,
        /// Extra roots (PEM) beside the system's, as `spotify.ca_file`; with `--tls`.
        #[arg(long, requires = "tls")]
        ca: Option<PathBuf>,
        /// The name sent in SNI and verified in the certificate (default: the upstream's
        /// IP, as the gateway does for an IP-literal `api_url`); with `--tls`.
        #[arg(long, requires = "tls")]
        sni: Option<String>,
        /// Offer `h2` then `http/1.1` in ALPN, 100 streams per connection: the gateway's
        /// egress settings (`proxy::upstream`); with `--tls`.
        #[arg(long, requires = "tls")]
        h2: bool,
    },
    /// A TCP proxy that delays each direction by `delay` (Spotify's distance, where this
    /// kernel has no `tc netem`); prints a line per connection accepted.
    DelayProxy {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        upstream: SocketAddr,
        #[arg(long, value_parser = humantime::parse_duration, default_value = "40ms")]
        delay: Duration,
    },
    /// Open-loop load for benches/quota.sh: Zipf-distributed catalogue GETs over the mock's
    /// generated tracks from N clients, plus `GET /v1/me` per signed-in user; one result line.
    ZipfLoad {
        /// Base URL of the contender (`http://127.0.0.1:PORT`).
        #[arg(long)]
        target: String,
        #[arg(long, default_value_t = 50)]
        clients: usize,
        #[arg(long, default_value_t = 1000)]
        tracks: usize,
        /// The Zipf exponent.
        #[arg(long, default_value_t = 1.1)]
        s: f64,
        #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
        duration: Duration,
        /// Catalogue requests per second, all clients together (Poisson arrivals).
        #[arg(long, default_value_t = 16.0)]
        rate: f64,
        /// One header value per line, one user each (`X-Gateway-User` assertions).
        #[arg(long)]
        users_file: Option<PathBuf>,
        /// `GET /v1/me` per second, all users together (Poisson arrivals, users in turn).
        #[arg(long, default_value_t = 4.0)]
        user_rate: f64,
        #[arg(long, default_value = "X-Gateway-User")]
        user_header: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Per request, connecting to the whole body.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
        timeout: Duration,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Cmd::Seeded { config, sessions } => seeded(config, sessions),
        Cmd::Startup {
            bin,
            config,
            admin,
            runs,
        } => startup(&bin, &config, admin, runs),
        Cmd::Storm {
            egress,
            assertion,
            mock,
            user,
            calls,
            path,
        } => runtime()
            .and_then(|rt| rt.block_on(storm(egress, &assertion, &mock, &user, calls, &path))),
        Cmd::BareProxy {
            listen,
            upstream,
            set_headers,
            remove_headers,
            threads,
            no_steal,
            tls,
            ca,
            sni,
            h2,
        } => upstream_tls(tls, ca.as_deref(), sni, upstream, h2).and_then(|tls| {
            bare_proxy(
                listen,
                upstream,
                tls,
                set_headers,
                remove_headers,
                threads,
                !no_steal,
            )
        }),
        Cmd::DelayProxy {
            listen,
            upstream,
            delay,
        } => runtime().and_then(|rt| rt.block_on(delay_proxy::run(listen, upstream, delay))),
        Cmd::ZipfLoad {
            target,
            clients,
            tracks,
            s,
            duration,
            rate,
            users_file,
            user_rate,
            user_header,
            seed,
            timeout,
        } => runtime().and_then(|rt| {
            rt.block_on(zipf_load::run(zipf_load::Options {
                target: &target,
                clients,
                tracks,
                s,
                duration,
                rate,
                users_file: users_file.as_deref(),
                user_rate,
                user_header: &user_header,
                seed,
                timeout,
            }))
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type Res<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn runtime() -> Res<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

// -- seeded -----------------------------------------------------------------------------------

fn seeded(path: PathBuf, sessions: usize) -> Res<()> {
    let config = Config::load(&path)?;
    logging::init(config.server.log_format, &config.server.log_level);
    let gw = Gateway::new(config, Some(path))?;
    let started = Instant::now();
    let rt = runtime()?;
    rt.block_on(async {
        for i in 0..sessions {
            seed::seed(&gw.sessions, i).await?;
        }
        // Settle the cache's bookkeeping so the figure is the steady state.
        gw.sessions.housekeeping().await;
        Ok::<_, spotify_gateway::store::StoreError>(())
    })?;
    drop(rt);
    // Seeding leaves garbage (JSON, sealed copies) in the allocator's free pages; give it
    // back, so RSS counts the sessions and not the way they were made.
    // SAFETY: mi_collect only returns free memory to the OS; mimalloc is this binary's
    // allocator (`ALLOCATOR` above).
    unsafe { mi_collect(true) };
    eprintln!(
        "seeded {sessions} hot sessions in {} ms",
        started.elapsed().as_millis()
    );
    server::build(gw)?.run(RunArgs::default());
    Ok(())
}

unsafe extern "C" {
    /// mimalloc (linked through the `mimalloc` crate): return free memory to the system.
    fn mi_collect(force: bool);
}

// -- bare pingora -----------------------------------------------------------------------------

struct Bare {
    upstream: SocketAddr,
    tls: Option<UpstreamTls>,
    set: Vec<(String, String)>,
    remove: Vec<String>,
}

/// How the bare proxy speaks TLS to its upstream: what `proxy::upstream` sets on the
/// gateway's peer, and nothing more.
struct UpstreamTls {
    sni: String,
    /// `--ca`: the gateway's trust set, given to the connector as the gateway gives it.
    trust: Option<Trust>,
    h2: bool,
}

/// The gateway's `H2_STREAMS_PER_CONNECTION` (`proxy::upstream`), so both pool alike.
const H2_STREAMS_PER_CONNECTION: usize = 100;

fn upstream_tls(
    tls: bool,
    ca: Option<&Path>,
    sni: Option<String>,
    upstream: SocketAddr,
    h2: bool,
) -> Res<Option<UpstreamTls>> {
    if !tls {
        return Ok(None);
    }
    let trust = match ca {
        Some(path) => {
            let text = std::fs::read(path).map_err(|e| format!("--ca {path:?}: {e}"))?;
            let certs = rustls::pki_types::CertificateDer::pem_slice_iter(&text)
                .map(|c| c.map(|c| c.to_vec()))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let file = CaFile {
                path: path.to_path_buf(),
                certs,
            };
            // The gateway's trust set (system roots + the file), built by the same code.
            Some(Trust::load(Some(&file))?)
        }
        None => None,
    };
    let sni = sni.unwrap_or_else(|| upstream.ip().to_string());
    Ok(Some(UpstreamTls { sni, trust, h2 }))
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();
    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let Some(tls) = &self.tls else {
            return Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())));
        };
        let mut peer = HttpPeer::new(self.upstream, true, tls.sni.clone());
        if tls.h2 {
            peer.options.set_http_version(2, 1);
            peer.options.max_h2_streams = H2_STREAMS_PER_CONNECTION;
        }
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        _ctx: &mut (),
    ) -> Result<()> {
        for name in &self.remove {
            upstream.remove_header(name.as_str());
        }
        for (name, value) in &self.set {
            upstream.insert_header(name.clone(), value.as_str())?;
        }
        Ok(())
    }
}

fn bare_proxy(
    listen: SocketAddr,
    upstream: SocketAddr,
    tls: Option<UpstreamTls>,
    set_headers: Vec<String>,
    remove: Vec<String>,
    threads: usize,
    work_stealing: bool,
) -> Res<()> {
    let mut set = Vec::new();
    for h in set_headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("--set-header {h:?}: expected \"Name: value\""))?;
        set.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    // As `server::build` does: the roots go to the connector once, not to each peer.
    let roots = match tls.as_ref().and_then(|t| t.trust.as_ref()) {
        Some(trust) => trust.connector_roots()?,
        None => None,
    };
    let conf = ServerConf {
        threads,
        work_stealing,
        ca_file: roots.as_ref().map(|r| r.path()),
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = pingora::server::Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let bare = Bare {
        upstream,
        tls,
        set,
        remove,
    };
    let mut service =
        pingora::proxy::http_proxy_service_with_name(&server.configuration, bare, "bare");
    drop(roots);
    service.add_tcp(&listen.to_string());
    server.add_service(service);
    server.run(RunArgs::default());
    Ok(())
}

// -- startup ----------------------------------------------------------------------------------

/// How long one start may take before the run is abandoned.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

fn startup(bin: &PathBuf, config: &PathBuf, admin: SocketAddr, runs: usize) -> Res<()> {
    let rt = runtime()?;
    let mut times = Vec::with_capacity(runs);
    for run in 1..=runs {
        let started = Instant::now();
        let mut child = Command::new(bin)
            .arg("run")
            .arg("--config")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let ready = rt.block_on(async {
            loop {
                if readyz(admin).await == Some(200) {
                    return Some(started.elapsed());
                }
                if started.elapsed() > READY_TIMEOUT {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        // SIGTERM, as an orchestrator stops it, so the store is closed cleanly for the next run.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let exited = child.wait()?;
        match ready {
            Some(t) => {
                println!(
                    "startup run {run}: ready in {:.1} ms (exit {exited})",
                    ms(t)
                );
                times.push(t);
            }
            None => return Err(format!("run {run}: not ready within {READY_TIMEOUT:?}").into()),
        }
    }
    times.sort();
    println!(
        "startup: median {:.1} ms, min {:.1} ms, max {:.1} ms over {runs} runs",
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1])
    );
    Ok(())
}

/// The status of `GET /readyz`, or `None` when nothing answers yet.
async fn readyz(admin: SocketAddr) -> Option<u16> {
    let (status, _) = http_get(admin, "/readyz", &[]).await.ok()?;
    Some(status)
}

// -- storm ------------------------------------------------------------------------------------

async fn storm(
    egress: SocketAddr,
    assertion: &str,
    mock: &str,
    user: &str,
    calls: usize,
    path: &str,
) -> Res<()> {
    let mock_addr: SocketAddr = mock
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()?;
    let refreshes = |stats: &serde_json::Value| stats["token_requests"]["refresh_token"].as_u64();
    let before = mock_json(mock_addr, "GET", "/__mock/stats").await?;

    // Connections first, so the figure is the refresh and not N TCP handshakes.
    let mut conns = Vec::with_capacity(calls);
    for _ in 0..calls {
        let c = TcpStream::connect(egress).await?;
        c.set_nodelay(true)?;
        conns.push(c);
    }
    let expired = mock_json(mock_addr, "POST", &format!("/__mock/expire?user={user}")).await?;
    let request = Arc::new(format!(
        "GET {path} HTTP/1.1\r\nHost: {egress}\r\nX-Gateway-User: {assertion}\r\nConnection: close\r\n\r\n"
    ));
    let barrier = Arc::new(tokio::sync::Barrier::new(calls));
    let mut tasks = Vec::with_capacity(calls);
    for mut conn in conns {
        let request = request.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let t = Instant::now();
            conn.write_all(request.as_bytes()).await?;
            let mut answer = Vec::new();
            conn.read_to_end(&mut answer).await?;
            Ok::<_, std::io::Error>((t.elapsed(), status_of(&answer)))
        }));
    }
    let mut times = Vec::with_capacity(calls);
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for task in tasks {
        let (t, status) = task.await??;
        times.push(t);
        *statuses.entry(status).or_default() += 1;
    }
    let after = mock_json(mock_addr, "GET", "/__mock/stats").await?;
    times.sort();
    let pct = |p: f64| times[((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1];
    let token_requests = refreshes(&after).unwrap_or(0) - refreshes(&before).unwrap_or(0);
    println!(
        "storm: {calls} concurrent calls after expiring {} token(s) of {user}; statuses {statuses:?}",
        expired["expired_access_tokens"]
    );
    println!(
        "storm: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(times[times.len() - 1])
    );
    println!("storm: token_requests(refresh_token) at the mock = {token_requests}");
    Ok(())
}

async fn mock_json(addr: SocketAddr, method: &str, target: &str) -> Res<serde_json::Value> {
    let (status, body) = http(addr, method, target, &[]).await?;
    if !(200..300).contains(&status) {
        return Err(format!("{method} {target} at the mock answered {status}").into());
    }
    Ok(serde_json::from_slice(&body)?)
}

// -- a minimal HTTP/1.1 client (Connection: close), enough for loopback control calls --------

async fn http_get(addr: SocketAddr, target: &str, headers: &[&str]) -> Res<(u16, Vec<u8>)> {
    http(addr, "GET", target, headers).await
}

async fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[&str],
) -> Res<(u16, Vec<u8>)> {
    let mut conn = TcpStream::connect(addr).await?;
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    conn.write_all(req.as_bytes()).await?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer)).await??;
    let status = status_of(&answer);
    let body = match find(&answer, b"\r\n\r\n") {
        Some(at) => answer[at + 4..].to_vec(),
        None => Vec::new(),
    };
    Ok((status, body))
}

fn status_of(answer: &[u8]) -> u16 {
    std::str::from_utf8(&answer[..answer.len().min(16)])
        .ok()
        .and_then(|s| s.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
