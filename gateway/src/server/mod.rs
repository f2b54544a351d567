//! Builds the pingora server from our config (never pingora's YAML) and runs it: the public,
//! egress and admin listeners, and a lifecycle task that flips `/readyz` on shutdown.

pub mod apps;
pub mod errors;
pub mod guards;
pub mod reload;
pub mod state;

pub use errors::{ReloadError, StartError};

use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;

use crate::admin::AdminApp;
use crate::config::Config;
use crate::net::tls_roots::Trust;
use crate::proxy::egress::EgressApps;
use crate::proxy::public::PublicApps;
use crate::server::apps::{Apps, IntoApps};
use crate::server::guards::{ConnectionLimit, Guard, KeepOpen, RequestGuard};
use crate::server::state::Gateway;

/// Extra time after the grace period for runtimes to wind down before the process exits.
const RUNTIME_SHUTDOWN_TIMEOUT_SECS: u64 = 5;

/// Runs the gateway until SIGTERM (graceful) or SIGINT (fast). With `config_path`, SIGHUP
/// reloads what can change without new listeners.
pub fn run(config: Config, config_path: Option<std::path::PathBuf>) -> Result<(), StartError> {
    check_addresses_free(&config)?;
    run_gateway(Apps::new(config, config_path)?)
}

/// Runs already wired apps (the demo keeps a handle on them) until SIGTERM.
pub fn run_gateway(apps: impl IntoApps) -> Result<(), StartError> {
    let apps = apps.into_apps();
    check_addresses_free(&apps.first().config)?;
    let traces = Arc::clone(&apps.first().traces);
    build(apps)?.run(RunArgs::default());
    // The drain is over: the last requests' spans are queued; send them before the exit.
    if !traces.flush(crate::telemetry::traces::FLUSH_WITHIN) {
        tracing::warn!("spans still queued at the exit were not all sent to the collector");
    }
    Ok(())
}

/// Fails fast, naming the key, when a listen address is taken: pingora would panic in that
/// listener's thread and leave a half-started process behind.
fn check_addresses_free(config: &Config) -> Result<(), StartError> {
    let l = &config.listen;
    let public = l.public.iter().map(|a| ("listen.public", *a));
    for (key, addr) in public.chain([("listen.egress", l.egress), ("listen.admin", l.admin)]) {
        std::net::TcpListener::bind(addr).map_err(|source| StartError::Listen {
            key,
            addr,
            source,
        })?;
    }
    Ok(())
}

/// The pingora server with every service added, not yet running.
pub fn build(apps: impl IntoApps) -> Result<Server, StartError> {
    let apps = apps.into_apps();
    let gw = Arc::clone(apps.first());
    let mut server = Server::new_with_opt_and_conf(None, server_conf(&gw.config, None));
    server.bootstrap();
    let listen = gw.config.listen.clone();

    let fd_limit = crate::server::guards::raise_fd_limit();
    let limits = &gw.config.server;
    let (public_max, egress_max, admin_max) = crate::server::guards::default_limits(fd_limit);
    let guard = |listener: &str, max: Option<usize>, default: usize| {
        let m = &gw.metrics;
        Arc::new(Guard {
            max_connections: max.unwrap_or(default),
            header_deadline: limits.header_read_timeout,
            open: m.open_connections.with_label_values(&[listener]),
            refused: m.connections_refused.with_label_values(&[listener]),
            header_timeouts: m.header_timeouts.with_label_values(&[listener]),
        })
    };
    let conf = &server.configuration;
    let public_guard = guard("public", limits.max_connections_public, public_max);
    let public_app = pingora::proxy::http_proxy(conf, PublicApps::new(&apps));
    let public = guarded("public", public_app, &public_guard, &listen.public);
    let egress_guard = guard("egress", limits.max_connections_egress, egress_max);
    // The egress proxy's connector gets the trust set once (read from the bundle while it is
    // built): pingora then clones one TLS config, and its session cache, per connection, so
    // a reconnection to Spotify resumes instead of paying a full handshake.
    //
    // One connector serves every app (`[[apps]]`), so it trusts the union of their roots:
    // the system's plus every app's `spotify.ca_file`. Per-peer CA lists for apps whose
    // files differ would not keep them apart: pingora's pool does not key connections by
    // their CA list (`HttpPeer`'s reuse hash), so an app would reuse a connection another
    // app's CA verified whenever both name the same API. The union says plainly what is
    // trusted (docs/connecting-to-spotify.md) and keeps one TLS config, and its resumption,
    // for all of them.
    let roots = Trust::connector_roots_of(apps.all().iter().map(|gw| gw.trust.as_ref()))
        .map_err(StartError::Clients)?;
    let egress_conf = Arc::new(server_conf(&gw.config, roots.as_ref().map(|r| r.path())));
    let egress_app = pingora::proxy::http_proxy(&egress_conf, EgressApps::new(&apps));
    drop(roots);
    let egress = guarded("egress", egress_app, &egress_guard, &[listen.egress]);
    let admin_guard = guard("admin", limits.max_connections_admin, admin_max);
    let mut admin = guarded(
        "admin",
        AdminApp::new(Arc::clone(&apps)),
        &admin_guard,
        &[listen.admin],
    );
    // Scrapes and probes are light; one thread keeps them off the proxies' runtimes.
    admin.threads = Some(1);
    // Probes must see `/readyz` fail during the drain, not a refused connection.
    let admin = KeepOpen::new(admin);
    let (public_limit, egress_limit) = (public_guard.max_connections, egress_guard.max_connections);

    let lifecycle = background_service("lifecycle", Lifecycle { apps });

    server.add_service(lifecycle);
    server.add_service(public);
    server.add_service(egress);
    server.add_service(admin);
    tracing::info!(
        public = %addresses(&listen.public),
        egress = %listen.egress,
        admin = %listen.admin,
        fd_limit,
        public_connections = public_limit,
        egress_connections = egress_limit,
        "spotify-gateway starting"
    );
    let egress_cfg = &gw.config.egress;
    if egress_cfg.trust_user_header && egress_cfg.allow_trusted_header_on_network {
        tracing::warn!(
            egress = %listen.egress,
            "SECURITY WARNING: egress.allow_trusted_header_on_network = true: a plain \
             X-Spotify-User-Id is believed from any peer that reaches the egress listener, so \
             every such peer can act as any signed-in user. Only a network policy protects \
             the users' tokens now."
        );
    }
    Ok(server)
}

/// pingora's settings from ours; `ca_file` the roots its connector reads (the egress proxy's).
fn server_conf(config: &Config, ca_file: Option<String>) -> ServerConf {
    let settings = &config.server;
    ServerConf {
        threads: settings.threads,
        // After SIGTERM pingora stops accepting, then waits this long for in-flight requests.
        grace_period_seconds: Some(settings.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(RUNTIME_SHUTDOWN_TIMEOUT_SECS),
        ca_file,
        ..ServerConf::default()
    }
}

/// A listening service for `app` on `addr`, inside its listener's guard: the header deadline and
/// the request's cut around the HTTP app, the connection limit around the connection.
fn guarded<A: pingora::apps::HttpServerApp + Send + Sync + 'static>(
    name: &str,
    app: A,
    guard: &Arc<Guard>,
    addrs: &[std::net::SocketAddr],
) -> Service<ConnectionLimit<RequestGuard<A>>> {
    let app = RequestGuard::new(app, Arc::clone(guard));
    let mut service = Service::new(
        name.to_string(),
        ConnectionLimit::new(app, Arc::clone(guard)),
    );
    for addr in addrs {
        service.add_tcp(&addr.to_string());
    }
    service
}

/// `a, b` for the log.
fn addresses(addrs: &[std::net::SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// How long start-up may take to bind a listener before we log it.
const BIND_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where this process reaches its own listener on `addr`: loopback when it listens on every
/// address.
fn reachable(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    if addr.ip().is_unspecified() {
        let loopback: std::net::IpAddr = if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        std::net::SocketAddr::new(loopback, addr.port())
    } else {
        addr
    }
}

async fn wait_until_accepting(addr: std::net::SocketAddr) {
    let target = reachable(addr);
    let started = std::time::Instant::now();
    while tokio::net::TcpStream::connect(target).await.is_err() {
        if started.elapsed() > BIND_WAIT {
            tracing::error!(%addr, "listener does not accept connections; /readyz stays failing");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// How often expired sessions and logins are removed from the store.
const HOUSEKEEPING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
/// How often refreshed sessions (and purge notices) the store did not take are written again.
const UNSAVED_RETRY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// How often the shared HTTP/2 connection to the API is looked at (one `readlink`): a
/// connection Spotify closed is warmed again within this, before callers dial their own.
const API_CONNECTION_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

/// Housekeeping while running; marks the gateway as shutting down the moment pingora
/// broadcasts it, so `/readyz` fails while in-flight requests finish.
struct Lifecycle {
    apps: Arc<Apps>,
}

#[async_trait]
impl BackgroundService for Lifecycle {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // pingora reports a listening service ready before it binds, so wait until the
        // proxies accept connections before `/readyz` says so.
        let listen = &self.apps.first().config.listen;
        for addr in listen.public.iter().chain([&listen.egress]) {
            wait_until_accepting(*addr).await;
        }
        self.apps.mark_listening();
        // Each app's connection to its API, warmed through the one egress listener.
        let egress = reachable(listen.egress);
        let http2 = |gw: &&Arc<Gateway>| gw.api_connection.enabled();
        for gw in self.apps.all().iter().filter(http2) {
            warm(gw, egress);
        }
        let mut api_check = tokio::time::interval(API_CONNECTION_CHECK_INTERVAL);
        api_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tick = tokio::time::interval(HOUSEKEEPING_INTERVAL);
        let mut retry_unsaved = tokio::time::interval(UNSAVED_RETRY_INTERVAL);
        // Handling SIGHUP also stops it from terminating the process (its default).
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot handle SIGHUP; config reload is unavailable");
                None
            }
        };
        while !*shutdown.borrow() {
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                _ = tick.tick() => {
                    for gw in self.apps.all() {
                        gw.sessions.housekeeping().await;
                    }
                }
                _ = api_check.tick(), if self.apps.all().iter().any(|gw| http2(&gw)) => {
                    for gw in self.apps.all().iter().filter(|gw| gw.api_connection.check()) {
                        warm(gw, egress);
                    }
                }
                _ = retry_unsaved.tick() => self.save_unsaved().await,
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => None } } => {
                    match self.apps.reload() {
                        Ok(report) => {
                            tracing::info!(apps = ?report.apps, applied = ?report.applied, "config reloaded");
                            for key in &report.restart_needed {
                                tracing::warn!(key, "{key} changed: it takes effect after a restart");
                            }
                        }
                        Err(e) => tracing::error!("config reload failed, keeping the running config: {e}"),
                    }
                }
            }
        }
        self.apps.begin_shutdown();
        // One more try for refreshed sessions the store has not taken, before the exit.
        self.save_unsaved().await;
        tracing::info!("shutdown started: /readyz now fails, finishing in-flight requests");
        let queued = self.apps.first().events.webhooks().queued();
        if queued > 0 {
            tracing::warn!(
                queued,
                "webhook events are still queued at shutdown: delivery goes on during \
                 server.grace_period; what is left at the exit is lost (the audit log has them)"
            );
        }
    }
}

/// Warms `gw`'s connection to its API in a task of its own: a warm-up call to the egress
/// listener at `egress` that names the app, for the router (`proxy::egress::by_app`).
fn warm(gw: &Arc<Gateway>, egress: std::net::SocketAddr) {
    let api = Arc::clone(&gw.api_connection);
    let app = gw.app.name.clone();
    tokio::spawn(async move { api.warm(egress, &app).await });
}

impl Lifecycle {
    /// Writes again what the store did not take, in every app.
    async fn save_unsaved(&self) {
        for gw in self.apps.all() {
            gw.sessions.save_unsaved().await;
            gw.sessions.publish_unpublished_purges().await;
        }
    }
}
