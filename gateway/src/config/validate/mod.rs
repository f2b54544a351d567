//! From the file's format to the validated config: every value checked, every secret read
//! from where it lives (inline, env, file), cross-checks between keys. Each problem is
//! collected with its key and line, so one run reports them all.
//!
//! One `Validator` method per config table, each destructuring its table exhaustively (a
//! new key does not compile until it is checked): the small tables here, `[spotify]` in
//! `spotify.rs`, `[session]` and `[forward_auth]` in `session.rs`, `[store]` in `store.rs` (`[[webhooks]]` is whole in
//! `config/webhooks.rs`).

mod apps;
mod session;
mod spotify;
mod store;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use url::Url;

use super::file::*;
use super::values::Validator;
use super::*;

/// `egress.cache_size` when not set: Spotify's cacheable answers are few and small.
const DEFAULT_CACHE_SIZE: u64 = 4 << 20;
const MAX_CACHE_SIZE: u64 = 1 << 30;
/// A slow client gets this long for a whole request header (idle keep-alive time included):
/// ample for any real client, short enough that one trickling bytes cannot hold a connection.
const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The `product` values of Spotify's user object.
const SPOTIFY_PRODUCTS: [&str; 3] = ["premium", "free", "open"];
/// Longest `server.app_name`: it is a page title and heading, not a paragraph.
const MAX_APP_NAME_CHARS: usize = 60;

impl Validator<'_> {
    pub(super) fn validate(&mut self, file: FileConfig) -> Option<Config> {
        // Exhaustive destructuring: a new file field cannot be forgotten here.
        let FileConfig {
            spotify,
            listen,
            server,
            upstream,
            session,
            store,
            egress,
            forward_auth,
            access,
            admin,
            playback,
            webhooks,
            tracing,
            apps,
        } = file;
        let listen = self.listen(listen);
        let apps = self.apps(spotify, upstream, access, apps);
        let server = self.server(server);
        let session = self.session(session);
        let store = self.store(store);
        let egress = listen.as_ref().and_then(|l| self.egress(egress, l.egress));
        let forward_auth = match forward_auth {
            Some(f) => Some(self.forward_auth(f)?),
            None => None,
        };
        let admin = self.admin(admin);
        let playback = self.playback(playback);
        let webhooks = self.webhooks(webhooks);
        let tracing = self.tracing(tracing);
        let config = Config {
            apps: apps?,
            listen: listen?,
            server: server?,
            session: session?,
            store: store?,
            egress: egress?,
            forward_auth,
            playback: playback?,
            admin: admin?,
            webhooks: webhooks?,
            tracing: tracing?,
        };
        self.cross_checks(&config);
        Some(config)
    }

    fn cross_checks(&mut self, c: &Config) {
        let several = c.apps.len() > 1;
        for (i, app) in c.apps.iter().enumerate() {
            self.app_scope = several.then(|| format!("apps[{i}]"));
            self.app_checks(c, app);
        }
        self.app_scope = None;
    }

    /// What one app's keys must agree with, in the app and in the shared tables.
    fn app_checks(&mut self, c: &Config, app: &AppConfig) {
        // Browsers refuse a `Domain` that does not cover the host setting the cookie: the
        // callback on the redirect URI's host.
        if let (Some(domain), Some(host)) = (
            &c.session.cookie_domain,
            app.spotify.redirect_uri.host_str(),
        ) {
            let host = host.to_ascii_lowercase();
            if host != *domain && !host.ends_with(&format!(".{domain}")) {
                self.issue(
                    "session.cookie_domain",
                    format!(
                        "{domain:?} does not cover {host:?}, the host of spotify.redirect_uri \
                         where the session cookie is set; browsers would refuse the cookie"
                    ),
                );
            }
        }
        if !app.access.allowed_products.is_empty()
            && !app.spotify.scopes.iter().any(|s| s == "user-read-private")
        {
            self.issue(
                "access.allowed_products",
                "Spotify tells the product only with the user-read-private scope: add it to \
                 spotify.scopes",
            );
        }
        // Keys of the shared tables name the app in their message when there are several.
        let of_app = match &self.app_scope {
            Some(scope) => format!(" ({scope}, {:?})", app.name),
            None => String::new(),
        };
        if c.playback.enabled && !app.spotify.scopes.iter().any(|s| s == "streaming") {
            self.issue(
                "playback.enabled",
                format!(
                    "the playback token is given only to sessions with the streaming scope: \
                     add \"streaming\" to spotify.scopes{of_app} (the Web Playback SDK also \
                     needs user-read-email and user-read-private)"
                ),
            );
        }
        if app.spotify.client_secret.is_none() {
            if app.spotify.flow == Flow::AuthorizationCode {
                self.issue(
                    "spotify.client_secret",
                    "flow = \"authorization_code\" needs the client secret: set one of \
                     client_secret_env, client_secret_file (or use flow = \"pkce\")",
                );
            }
            // Among several apps one may be a public client: it has no app token (egress).
            if c.egress.app_token && c.apps.len() == 1 {
                self.issue(
                    "egress.app_token",
                    format!(
                        "app_token = true uses the client-credentials flow, which needs \
                         spotify.client_secret_env or spotify.client_secret_file{of_app}"
                    ),
                );
            }
        }
    }

    fn admin(&mut self, a: FileAdmin) -> Option<AdminConfig> {
        let FileAdmin {
            token_env,
            token_file,
        } = a;
        // No inline form: the token opens every user's sessions to an operator, so it never
        // sits in a config file that is read by many.
        let token = self
            .secret("admin", "token", None, token_env, token_file)
            .ok()?;
        Some(AdminConfig { token })
    }

    fn tracing(&mut self, t: FileTracing) -> Option<TracingConfig> {
        let FileTracing {
            enabled,
            otlp_endpoint,
            service_name,
            sample_ratio,
            headers_env,
            headers_file,
        } = t;
        let defaults = TracingConfig::default();
        // No inline form: the headers usually carry a tracing backend's API key.
        let headers = self
            .secret("tracing", "headers", None, headers_env, headers_file)
            .ok()?;
        let otlp_endpoint = match otlp_endpoint {
            Some(url) => Some(self.url("tracing.otlp_endpoint", &url)?),
            None => None,
        };
        let sample_ratio = sample_ratio.unwrap_or(defaults.sample_ratio);
        if !(0.0..=1.0).contains(&sample_ratio) {
            self.issue(
                "tracing.sample_ratio",
                format!("{sample_ratio} is out of range: 0 (none) to 1 (every trace)"),
            );
            return None;
        }
        if service_name.as_ref().is_some_and(|n| n.trim().is_empty()) {
            self.issue("tracing.service_name", "is empty");
            return None;
        }
        Some(TracingConfig {
            enabled,
            otlp_endpoint,
            service_name,
            sample_ratio,
            headers,
        })
    }

    fn playback(&mut self, p: FilePlayback) -> Option<PlaybackConfig> {
        let FilePlayback {
            enabled,
            max_per_minute,
        } = p;
        if !(1..=60).contains(&max_per_minute) {
            self.issue(
                "playback.max_per_minute",
                format!("{max_per_minute} is out of range: 1 to 60 tokens per session a minute"),
            );
            return None;
        }
        Some(PlaybackConfig {
            enabled,
            max_per_minute,
        })
    }

    fn access(&mut self, a: FileAccess) -> Option<AccessConfig> {
        let FileAccess {
            allowed_users,
            allowed_products,
        } = a;
        for user in &allowed_users {
            if user.is_empty() || user.contains(char::is_whitespace) {
                self.issue(
                    "access.allowed_users",
                    format!("{user:?} is not a Spotify user id or account id"),
                );
            }
        }
        let mut products = Vec::new();
        for product in &allowed_products {
            let lower = product.to_ascii_lowercase();
            if !SPOTIFY_PRODUCTS.contains(&lower.as_str()) {
                self.issue(
                    "access.allowed_products",
                    format!(
                        "{product:?} is not a Spotify product; use {}",
                        SPOTIFY_PRODUCTS.join(", ")
                    ),
                );
            }
            products.push(lower);
        }
        Some(AccessConfig {
            allowed_users,
            allowed_products: products,
        })
    }

    fn listen(&mut self, l: FileListen) -> Option<ListenConfig> {
        let FileListen {
            public,
            egress,
            admin,
        } = l;
        let public = self.public_addrs(public);
        let egress = self.addr("listen.egress", &egress);
        let admin = self.addr("listen.admin", &admin);
        let (public, egress, admin) = (public?, egress?, admin?);
        if public.contains(&egress) || public.contains(&admin) || egress == admin {
            self.issue(
                "listen",
                "public, egress and admin must be different addresses",
            );
        }
        Some(ListenConfig {
            public,
            egress,
            admin,
        })
    }

    /// `listen.public`: one address or a list, none twice, and none beside an unspecified
    /// address (`0.0.0.0`) on its port, which takes every address already.
    fn public_addrs(&mut self, public: Addresses) -> Option<Vec<SocketAddr>> {
        let listed = match public {
            Addresses::One(a) => vec![a],
            Addresses::Many(list) => list,
        };
        if listed.is_empty() {
            self.issue("listen.public", "needs an address");
            return None;
        }
        let addrs: Vec<Option<SocketAddr>> = listed
            .iter()
            .map(|a| self.addr("listen.public", a))
            .collect();
        let addrs: Vec<SocketAddr> = addrs.into_iter().collect::<Option<_>>()?;
        for (i, a) in addrs.iter().enumerate() {
            let clash = addrs[..i].iter().find(|b| {
                *b == a
                    || (b.port() == a.port()
                        && (a.ip().is_unspecified() || b.ip().is_unspecified()))
            });
            if let Some(b) = clash {
                self.issue(
                    "listen.public",
                    format!("{a} and {b} take the same address: list each address once"),
                );
                return None;
            }
        }
        Some(addrs)
    }

    fn server(&mut self, s: FileServer) -> Option<ServerSettings> {
        let FileServer {
            threads,
            grace_period,
            log_format,
            log_level,
            app_name,
            log_user_id,
            header_read_timeout,
            max_connections_public,
            max_connections_egress,
            max_connections_admin,
        } = s;
        let header_read_timeout = match header_read_timeout {
            None => Some(DEFAULT_HEADER_READ_TIMEOUT),
            Some(t) => match self.duration("server.header_read_timeout", &t) {
                Some(d) if d < Duration::from_secs(1) => {
                    self.issue("server.header_read_timeout", "must be at least 1s");
                    None
                }
                d => d,
            },
        };
        for (key, max) in [
            ("server.max_connections_public", max_connections_public),
            ("server.max_connections_egress", max_connections_egress),
            ("server.max_connections_admin", max_connections_admin),
        ] {
            if max == Some(0) {
                self.issue(
                    key,
                    "must be at least 1 (leave it out to derive it from ulimit -n)",
                );
            }
        }
        let threads = threads.unwrap_or(2);
        if !(1..=256).contains(&threads) {
            self.issue("server.threads", "must be between 1 and 256");
        }
        let grace_period = match grace_period {
            None => Some(Duration::from_secs(10)),
            Some(g) => self.duration("server.grace_period", &g),
        };
        let log_format = match log_format.as_deref() {
            None | Some("text") => Some(LogFormat::Text),
            Some("json") => Some(LogFormat::Json),
            Some(other) => {
                self.issue(
                    "server.log_format",
                    format!("{other:?} is not a log format; use \"text\" or \"json\""),
                );
                None
            }
        };
        let log_level = log_level.unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            self.issue(
                "server.log_level",
                format!("{log_level:?} is not a level or filter such as \"info\" or \"debug\""),
            );
        }
        let app_name = match app_name {
            None => Some(DEFAULT_APP_NAME.to_string()),
            Some(name) => {
                let name = name.trim().to_string();
                if name.is_empty()
                    || name.chars().count() > MAX_APP_NAME_CHARS
                    || name.chars().any(char::is_control)
                {
                    self.issue(
                        "server.app_name",
                        format!(
                            "must be 1 to {MAX_APP_NAME_CHARS} characters without control \
                             characters, such as \"Acme Music\""
                        ),
                    );
                    None
                } else {
                    Some(name)
                }
            }
        };
        Some(ServerSettings {
            threads,
            grace_period: grace_period?,
            log_format: log_format?,
            log_level,
            app_name: app_name?,
            log_user_id: log_user_id.unwrap_or(false),
            header_read_timeout: header_read_timeout?,
            max_connections_public,
            max_connections_egress,
            max_connections_admin,
        })
    }

    fn upstream(&mut self, u: FileUpstream) -> Option<UpstreamConfig> {
        let FileUpstream { url, public_paths } = u;
        let url = self.url("upstream.url", &url);
        for p in &public_paths {
            if !p.starts_with('/') {
                self.issue(
                    "upstream.public_paths",
                    format!("{p:?} must be a path starting with /"),
                );
            }
            if p.starts_with("/auth/") {
                self.issue(
                    "upstream.public_paths",
                    format!("{p:?} is the gateway's own /auth/ route"),
                );
            }
        }
        Some(UpstreamConfig {
            url: url?,
            public_paths,
        })
    }

    fn egress(&mut self, e: FileEgress, egress_addr: SocketAddr) -> Option<EgressConfig> {
        let FileEgress {
            app_token,
            trust_user_header,
            allow_trusted_header_on_network,
            public_base_url,
            connect_timeout,
            read_timeout,
            total_timeout,
            max_retries,
            coalesce,
            cache_size,
            budget_per_30s,
        } = e;
        // A plain user id is only as trustworthy as the set of peers that can send it: the
        // pod itself. On a network address anyone who reaches the port could be any user.
        if trust_user_header
            && !egress_addr.ip().to_canonical().is_loopback()
            && !allow_trusted_header_on_network
        {
            self.issue(
                "egress.trust_user_header",
                format!(
                    "trust_user_header = true believes a plain X-Spotify-User-Id, and \
                     listen.egress = \"{egress_addr}\" is not a loopback address: anyone who \
                     can reach it could act as any signed-in user. Bind the egress listener to \
                     127.0.0.1, or send the signed X-Gateway-User instead, or, only if a network \
                     policy limits who reaches the port, set \
                     egress.allow_trusted_header_on_network = true"
                ),
            );
        }
        let mut timeout = |key: &str, value: Option<String>, default: u64| match value {
            None => Some(Duration::from_secs(default)),
            Some(v) => match self.duration(key, &v) {
                Some(d) if d.is_zero() => {
                    self.issue(key, "must be longer than zero");
                    None
                }
                d => d,
            },
        };
        let connect_timeout = timeout("egress.connect_timeout", connect_timeout, 3);
        let read_timeout = timeout("egress.read_timeout", read_timeout, 10);
        let total_timeout = timeout("egress.total_timeout", total_timeout, 30);
        let max_retries = max_retries.unwrap_or(2);
        if max_retries > 10 {
            self.issue("egress.max_retries", "at most 10");
        }
        if budget_per_30s == Some(0) {
            self.issue(
                "egress.budget_per_30s",
                "must be at least 1 (leave it out for no budget)",
            );
        }
        let cache_size = cache_size.unwrap_or(DEFAULT_CACHE_SIZE);
        if cache_size > MAX_CACHE_SIZE {
            self.issue(
                "egress.cache_size",
                format!("at most {MAX_CACHE_SIZE} bytes (1 GiB); 0 turns the cache off"),
            );
        }
        let public_base_url = match public_base_url {
            Some(u) => self.url("egress.public_base_url", &u)?,
            None => {
                let host = if egress_addr.ip().is_unspecified() {
                    SocketAddr::new(IpAddr::from([127, 0, 0, 1]), egress_addr.port())
                } else {
                    egress_addr
                };
                Url::parse(&format!("http://{host}")).ok()?
            }
        };
        Some(EgressConfig {
            app_token,
            trust_user_header,
            allow_trusted_header_on_network,
            public_base_url,
            connect_timeout: connect_timeout?,
            read_timeout: read_timeout?,
            total_timeout: total_timeout?,
            max_retries,
            coalesce: coalesce.unwrap_or(true),
            cache_size,
            budget_per_30s,
        })
    }
}
