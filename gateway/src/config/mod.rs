//! Configuration in layers, as in river: the file format (`file`: serde, every table rejects
//! unknown keys), the validation that turns it into the [`Config`] the rest of the gateway
//! uses (`validate`), and errors that name the key and the line (`errors`).
//!
//! This file holds the validated types of every table: the contract `server/reload.rs` diffs
//! exhaustively. Their unit tests are in `tests.rs`.
//!
//! Why this file is over 600 lines: it is the one list of validated types, one struct per
//! table (now with `[[apps]]`, the Redis shapes and `[tracing]`), which `server/reload.rs`
//! destructures field by field so that a new key cannot be left out of a reload; splitting it
//! by table would scatter that contract over files that each hold a few plain structs.

mod errors;
mod file;
mod validate;
mod values;
mod webhooks;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Serialize, Serializer};
use url::Url;

pub use errors::{ConfigError, ConfigIssue};
pub use webhooks::{WebhookConfig, EVENT_TYPES};

use crate::secret::Secret;
use errors::{key_at, line_of};
use file::FileConfig;
use values::Validator;

/// The gateway's callback route on the public listener; `spotify.redirect_uri` must point here.
pub const CALLBACK_PATH: &str = "/auth/callback";
/// The name the gateway's pages show when `server.app_name` is not set.
pub const DEFAULT_APP_NAME: &str = "Spotify Gateway";

/// OAuth 2.0 flow for user logins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    /// Authorization code with the client secret (RFC 6749 §4.1).
    AuthorizationCode,
    /// Authorization code with PKCE (RFC 7636), no client secret in the login.
    Pkce,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// The Spotify apps this gateway serves, at least one: `[[apps]]`, or the one app named
    /// [`DEFAULT_APP`] that `[spotify]`, `[upstream]` and `[access]` describe.
    pub apps: Vec<AppConfig>,
    pub listen: ListenConfig,
    pub server: ServerSettings,
    pub session: SessionConfig,
    pub store: StoreConfig,
    pub egress: EgressConfig,
    /// `[forward_auth]`: `/auth/check` answers an existing ingress; `None` turns it off.
    pub forward_auth: Option<ForwardAuthConfig>,
    pub playback: PlaybackConfig,
    pub admin: AdminConfig,
    /// `[[webhooks]]`: receivers of the audit events (`events::webhooks`).
    pub webhooks: Vec<WebhookConfig>,
    /// `[tracing]`: spans exported over OTLP (`telemetry::traces`).
    pub tracing: TracingConfig,
}

/// `[tracing]`: OpenTelemetry spans for every request, exported as OTLP over HTTP/protobuf.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TracingConfig {
    /// Off by default; live at SIGHUP.
    pub enabled: bool,
    /// The collector's OTLP/HTTP base URL (`/v1/traces` is added); `None`: the standard
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`/`OTEL_EXPORTER_OTLP_ENDPOINT`, else
    /// `http://localhost:4318`.
    pub otlp_endpoint: Option<Url>,
    /// The `service.name` resource attribute; `None`: `OTEL_SERVICE_NAME`, else
    /// `spotify-gateway` (`telemetry::traces`).
    pub service_name: Option<String>,
    /// The share of traces started here that are kept (0 to 1); a sampled parent is always
    /// kept, an unsampled one never. Live at SIGHUP.
    pub sample_ratio: f64,
    /// `key=value,...` headers for the collector (a backend's API key), from `headers_env` or
    /// `headers_file`; the `OTEL_EXPORTER_OTLP_HEADERS` variable is honoured too.
    pub headers: Option<Secret>,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            enabled: false,
            otlp_endpoint: None,
            service_name: None,
            sample_ratio: 1.0,
            headers: None,
        }
    }
}

/// The name of the app a single-app config (`[spotify]`) describes. Its cookie, keys and
/// store keys are those of the gateway before `[[apps]]`, so its sessions outlive the upgrade.
pub const DEFAULT_APP: &str = "default";
/// The developer account of an app that names none: apps usually share their owner's.
pub const DEFAULT_DEVELOPER_ACCOUNT: &str = "default";

/// One Spotify app (client id) the gateway serves (`[[apps]]`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AppConfig {
    /// A short label (`[a-z0-9_-]`, at most 32): metrics, logs, events, the admin API, and
    /// the suffix of its cookie's name.
    pub name: String,
    pub spotify: SpotifyConfig,
    /// The public hosts it serves (the request's `Host`); empty only for the one app of a
    /// config, which then serves every host.
    pub hosts: Vec<AppHost>,
    pub upstream: Option<UpstreamConfig>,
    pub access: AccessConfig,
    /// Apps with the same label share one Spotify quota (the developer account's).
    pub developer_account: String,
}

impl AppConfig {
    /// Whether this is the app of a single-app config, with the gateway's historic cookie,
    /// keys and store keys.
    pub fn is_default(&self) -> bool {
        self.name == DEFAULT_APP
    }
}

/// One `apps[N].hosts` entry: a host, with a port to match only that port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppHost(pub crate::net::host::HostPort);

impl AppHost {
    /// Whether a request's `Host` is this host: the same name, and the same port when the
    /// entry names one (an ingress in front may use any port).
    pub fn serves(&self, host: &crate::net::host::HostPort) -> bool {
        self.0.host == host.host && (self.0.port.is_none() || self.0.port == host.port)
    }
}

impl Serialize for AppHost {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

/// `[admin]`: the admin API (`/admin/v1/...` on the admin listener, `admin/mod.rs`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AdminConfig {
    /// The bearer token the admin API asks for (`token_env`/`token_file`); `None`: the admin
    /// API is off and only `/metrics` and the probes answer.
    pub token: Option<Secret>,
}

/// `[access]`: who may sign in, checked at the login callback. Empty lists allow everyone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AccessConfig {
    /// Spotify user ids or account ids.
    pub allowed_users: Vec<String>,
    /// Spotify products (`premium`, `free`), lowercase.
    pub allowed_products: Vec<String>,
}

/// `[playback]`: `GET /auth/playback-token`, the one door through which a signed-in browser
/// page gets an access token, for Spotify's Web Playback SDK (`proxy/public/playback.rs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlaybackConfig {
    /// Off by default: the route answers 404.
    pub enabled: bool,
    /// Tokens one session may be given per minute (the SDK asks once when it connects and
    /// again before each token expires).
    pub max_per_minute: u32,
}

impl Default for PlaybackConfig {
    fn default() -> Self {
        PlaybackConfig {
            enabled: false,
            max_per_minute: 6,
        }
    }
}

/// What `[access]` says of a user at the login callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// Neither the user nor their product is allowed.
    NotAllowed,
    /// The user would be allowed, but `allowed_products` is set and Spotify did not say the
    /// product: it withholds it from development-mode apps (since March 2026), or the scope
    /// `user-read-private` is missing. Refused all the same (fail closed).
    ProductUnknown,
}

impl AccessConfig {
    /// Whether a user with this id, account id and product may sign in.
    pub fn admits(
        &self,
        user_id: &str,
        account_id: Option<&str>,
        product: Option<&str>,
    ) -> Admission {
        let user_ok = self.allowed_users.is_empty()
            || self
                .allowed_users
                .iter()
                .any(|u| u == user_id || Some(u.as_str()) == account_id);
        if !user_ok {
            return Admission::NotAllowed;
        }
        if self.allowed_products.is_empty() {
            return Admission::Allowed;
        }
        match product {
            None => Admission::ProductUnknown,
            Some(p)
                if self
                    .allowed_products
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(p)) =>
            {
                Admission::Allowed
            }
            Some(_) => Admission::NotAllowed,
        }
    }

    /// What `check-config` warns of: the rules it cannot check without knowing the app's mode
    /// at Spotify.
    pub fn warnings(&self) -> Vec<String> {
        if self.allowed_products.is_empty() {
            return Vec::new();
        }
        vec![
            "access.allowed_products: Spotify withholds the user's subscription (`product`) \
             from development-mode apps (every new app, since March 2026), so every login is \
             then refused as product_unknown. Keep the rule only if the app has extended \
             quota; otherwise remove it."
                .to_string(),
        ]
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SpotifyConfig {
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub flow: Flow,
    pub redirect_uri: Url,
    pub scopes: Vec<String>,
    pub show_dialog: bool,
    pub accounts_url: Url,
    pub api_url: Url,
    /// Extra roots both clients to Spotify trust, beside the system's (`trust`).
    pub ca_file: Option<CaFile>,
    /// The HTTP CONNECT proxy both clients to Spotify go through (`outbound`).
    pub proxy: Option<ProxyConfig>,
}

/// `spotify.proxy_url` and what goes with it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProxyConfig {
    /// `http://host:port`, without credentials.
    pub url: Url,
    /// `user:password` for `Proxy-Authorization: Basic`.
    pub credentials: Option<Secret>,
    /// Hosts that go direct (`spotify.no_proxy`).
    pub no_proxy: Vec<NoProxyEntry>,
}

/// One `spotify.no_proxy` entry, with curl's and reqwest's `NO_PROXY` meaning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoProxyEntry {
    /// `*`: every host goes direct.
    All,
    /// An IP address or a CIDR block.
    Net(ipnet::IpNet),
    /// A domain and its subdomains, lowercase, without leading or trailing dots.
    Domain(String),
}

impl NoProxyEntry {
    /// The default: loopback goes direct.
    pub const LOOPBACK: [&'static str; 3] = ["localhost", "127.0.0.0/8", "::1"];

    pub fn parse(entry: &str) -> Result<NoProxyEntry, String> {
        let entry = entry.trim();
        if entry == "*" {
            return Ok(NoProxyEntry::All);
        }
        if let Ok(net) = entry.parse::<ipnet::IpNet>() {
            return Ok(NoProxyEntry::Net(net));
        }
        if let Ok(ip) = entry.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
            return Ok(NoProxyEntry::Net(ip.into()));
        }
        let domain = entry.trim_start_matches('.').trim_end_matches('.');
        let valid = !domain.is_empty()
            && domain.split('.').all(|label| {
                !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !valid {
            return Err(format!(
                "{entry:?} is not a host name, an IP address, a CIDR block or \"*\""
            ));
        }
        Ok(NoProxyEntry::Domain(domain.to_ascii_lowercase()))
    }
}

impl std::fmt::Display for NoProxyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoProxyEntry::All => f.write_str("*"),
            NoProxyEntry::Net(net) if net.prefix_len() == net.max_prefix_len() => {
                write!(f, "{}", net.addr())
            }
            NoProxyEntry::Net(net) => write!(f, "{net}"),
            NoProxyEntry::Domain(d) => f.write_str(d),
        }
    }
}

impl Serialize for NoProxyEntry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `spotify.ca_file`, read when the config is validated, so a missing or empty file is a
/// config error with its key and line rather than a failure at the first call to Spotify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaFile {
    pub path: PathBuf,
    /// The certificates in the file, DER, in file order.
    pub certs: Vec<Vec<u8>>,
}

impl Serialize for CaFile {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.path.display().to_string())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ListenConfig {
    /// One address or more (never none, none taken twice): every app's hosts are served on
    /// each.
    pub public: Vec<SocketAddr>,
    pub egress: SocketAddr,
    pub admin: SocketAddr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServerSettings {
    /// Worker threads of each proxy listener's runtime.
    pub threads: usize,
    /// How long in-flight requests may run after SIGTERM.
    #[serde(serialize_with = "ser_duration")]
    pub grace_period: Duration,
    pub log_format: LogFormat,
    pub log_level: String,
    /// The name on the gateway's own pages (titles and headings).
    pub app_name: String,
    /// Put the Spotify user id in access log lines (personal data: off by default).
    pub log_user_id: bool,
    /// How long a client connection may take to deliver a complete request header, idle
    /// keep-alive time included.
    #[serde(serialize_with = "ser_duration")]
    pub header_read_timeout: Duration,
    /// Open connections per listener; `None` derives them from the file-descriptor limit.
    pub max_connections_public: Option<usize>,
    pub max_connections_egress: Option<usize>,
    pub max_connections_admin: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UpstreamConfig {
    pub url: Url,
    pub public_paths: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SessionConfig {
    pub cookie_name: String,
    pub secret: Secret,
    /// The secret before a rotation: still opens cookies and records, never seals new ones.
    pub previous_secret: Option<Secret>,
    #[serde(serialize_with = "ser_duration")]
    pub lifetime: Duration,
    /// `Domain` of the session cookie, so one sign-in covers every host under it (the
    /// `__Host-` prefix is then `__Secure-`); `None`: the cookie stays on the login's host.
    pub cookie_domain: Option<String>,
    /// How long after the user's authorization (the login) Spotify honours the refresh token
    /// (2026: six months, whatever the refreshes in between). A session ends by then, and is
    /// offered a re-consent in its last [`crate::session::REAUTH_NOTICE`].
    #[serde(serialize_with = "ser_duration")]
    pub reauth_after: Duration,
}

/// `[forward_auth]`: the ingresses `/auth/check` answers and the hosts it may send a
/// browser back to.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ForwardAuthConfig {
    /// The hosts (`host[:port]`) whose URLs the login may return to; nothing else.
    pub allowed_hosts: Vec<AllowedHost>,
    /// The peers whose `X-Forwarded-*`/`X-Original-*` headers are believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// One `forward_auth.allowed_hosts` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedHost(pub crate::net::host::HostPort);

impl Serialize for AllowedHost {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl ForwardAuthConfig {
    /// Whether `host` (for a URL with `scheme`) is one of the allowed hosts.
    pub fn allows_host(&self, host: &crate::net::host::HostPort, scheme: &str) -> bool {
        self.allowed_hosts.iter().any(|a| a.0.matches(host, scheme))
    }

    /// Whether a request from `peer` may tell the gateway about the original request.
    pub fn trusts(&self, peer: std::net::IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.trusted_proxies.iter().any(|net| net.contains(&peer))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "backend", rename_all = "snake_case")]
pub enum StoreConfig {
    File { path: PathBuf },
    Redis(RedisConfig),
    Memory,
}

/// A Redis (or Valkey) store, in any of its three shapes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RedisConfig {
    pub shape: RedisShape,
    /// The data nodes' password with a sentinel or a cluster (a single server's is in its URL).
    pub password: Option<Secret>,
    /// TLS to the sentinels and data nodes (a single server: its URL is `rediss://`).
    pub tls: bool,
    /// Extra CAs trusted over TLS, besides the system's (`store.ca_file`).
    pub ca_file: Option<CaFile>,
    /// How long a write that would sign a user out if lost waits for a replica to hold it
    /// (`WAIT 1 <ms>`); zero: it does not wait.
    #[serde(serialize_with = "ser_duration")]
    pub replica_wait: Duration,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "shape", rename_all = "snake_case")]
pub enum RedisShape {
    /// `backend = "redis"`: one server (or a managed service's one endpoint).
    Single { url: Secret },
    /// `backend = "redis-sentinel"`: the master Sentinel names, followed through failovers.
    Sentinel {
        sentinels: Vec<NodeAddr>,
        master_name: String,
        sentinel_password: Option<Secret>,
    },
    /// `backend = "redis-cluster"`: seed nodes; the rest is discovered.
    Cluster { nodes: Vec<NodeAddr> },
}

impl RedisShape {
    /// The `store.backend` value that names this shape.
    pub fn backend(&self) -> &'static str {
        match self {
            RedisShape::Single { .. } => "redis",
            RedisShape::Sentinel { .. } => "redis-sentinel",
            RedisShape::Cluster { .. } => "redis-cluster",
        }
    }
}

/// A sentinel's or a cluster node's `host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeAddr {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl Serialize for NodeAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EgressConfig {
    pub app_token: bool,
    pub trust_user_header: bool,
    /// Lets `trust_user_header` work on a non-loopback egress listener and for non-loopback
    /// peers: anyone who reaches the listener can then act as any signed-in user.
    pub allow_trusted_header_on_network: bool,
    pub public_base_url: Url,
    /// Connecting to Spotify.
    #[serde(serialize_with = "ser_duration")]
    pub connect_timeout: Duration,
    /// Between two reads from Spotify.
    #[serde(serialize_with = "ser_duration")]
    pub read_timeout: Duration,
    /// The whole call, retries and backoff included.
    #[serde(serialize_with = "ser_duration")]
    pub total_timeout: Duration,
    /// Extra attempts for idempotent calls after a connection failure or a 502/503/504.
    pub max_retries: u32,
    /// Identical GETs in flight at once go to Spotify once (`quota::flight`).
    pub coalesce: bool,
    /// Bytes of Spotify's cacheable answers kept in memory (`quota::cache`); 0 is no cache.
    pub cache_size: u64,
    /// At most this many calls to Spotify per rolling 30 s, over all replicas on Redis
    /// (`quota::budget`); `None` is no budget.
    pub budget_per_30s: Option<u32>,
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string(), &|name| {
            std::env::var(name).ok()
        })
    }

    /// Validates config text. `env` looks up environment variables (tests pass their own).
    pub fn parse(
        text: &str,
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let invalid = |issues| ConfigError::Invalid {
            path: origin.to_string(),
            issues,
        };
        // toml_edit 0.23 panics on some malformed input ("all items have spans"; found by
        // fuzz/config_parse, e.g. `==\n.=`). A bad file, and above all a bad file at SIGHUP,
        // must be an error that changes nothing, never a dead thread.
        let parsed = std::panic::catch_unwind(|| toml_edit::Document::parse(text.to_string()))
            .map_err(|_| {
                invalid(vec![ConfigIssue {
                    key: "(syntax)".into(),
                    line: None,
                    message: "this is not valid TOML (the parser gave up on it)".into(),
                }])
            })?;
        let doc = parsed.map_err(|e| {
            invalid(vec![ConfigIssue {
                key: "(syntax)".into(),
                line: e.span().map(|s| line_of(text, s.start)),
                message: e.message().trim().to_string(),
            }])
        })?;
        let file: FileConfig = toml_edit::de::from_document(doc.clone()).map_err(|e| {
            let offset = e.span().map(|s| s.start);
            let key = offset
                .and_then(|o| key_at(doc.as_table(), o, ""))
                .unwrap_or_else(|| "(top level)".into());
            invalid(vec![ConfigIssue {
                key,
                line: offset.map(|o| line_of(text, o)),
                message: e.message().trim().to_string(),
            }])
        })?;
        let mut v = Validator {
            text,
            doc: &doc,
            env,
            issues: Vec::new(),
            app_scope: None,
        };
        let config = v.validate(file);
        match config {
            Some(config) if v.issues.is_empty() => Ok(config),
            _ => Err(invalid(v.issues)),
        }
    }

    /// The effective config as TOML, every secret replaced by where it comes from. A
    /// single-app config prints as it was written: `[spotify]`, `[upstream]`, `[access]`.
    pub fn to_redacted_toml(&self) -> String {
        match self.apps.as_slice() {
            [only] if only.is_default() && only.hosts.is_empty() => {
                #[derive(Serialize)]
                struct SingleApp<'a> {
                    spotify: &'a SpotifyConfig,
                    upstream: Option<&'a UpstreamConfig>,
                    access: &'a AccessConfig,
                    #[serde(flatten)]
                    rest: Rest<'a>,
                }
                #[derive(Serialize)]
                struct Rest<'a> {
                    listen: &'a ListenConfig,
                    server: &'a ServerSettings,
                    session: &'a SessionConfig,
                    store: &'a StoreConfig,
                    egress: &'a EgressConfig,
                    forward_auth: Option<&'a ForwardAuthConfig>,
                    playback: &'a PlaybackConfig,
                    admin: &'a AdminConfig,
                    webhooks: &'a [WebhookConfig],
                    tracing: &'a TracingConfig,
                }
                let Config {
                    apps: _,
                    listen,
                    server,
                    session,
                    store,
                    egress,
                    forward_auth,
                    playback,
                    admin,
                    webhooks,
                    tracing,
                } = self;
                let single = SingleApp {
                    spotify: &only.spotify,
                    upstream: only.upstream.as_ref(),
                    access: &only.access,
                    rest: Rest {
                        listen,
                        server,
                        session,
                        store,
                        egress,
                        forward_auth: forward_auth.as_ref(),
                        playback,
                        admin,
                        webhooks,
                        tracing,
                    },
                };
                toml_edit::ser::to_string_pretty(&single)
            }
            _ => toml_edit::ser::to_string_pretty(self),
        }
        .unwrap_or_else(|e| format!("# cannot render the config: {e}\n"))
    }
}

#[cfg(test)]
mod reference;
#[cfg(test)]
pub(crate) mod tests;
