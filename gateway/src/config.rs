//! Configuration in two layers, as in river: the file format (serde, every table rejects
//! unknown keys) and the validated [`Config`] the rest of the gateway uses. Every error names
//! the key and the line it comes from and says why it is wrong.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};
use url::Url;

use crate::secret::{Secret, SecretSource};

/// The gateway's callback route on the public listener; `spotify.redirect_uri` must point here.
pub const CALLBACK_PATH: &str = "/auth/callback";

/// Shortest accepted `session.secret`: it keys AES-256-GCM and HMAC-SHA256, so 32 bytes.
const MIN_SESSION_SECRET_BYTES: usize = 32;
/// The name the gateway's pages show when `server.app_name` is not set.
pub const DEFAULT_APP_NAME: &str = "Spotify Gateway";
/// Longest `server.app_name`: it is a page title and heading, not a paragraph.
const MAX_APP_NAME_CHARS: usize = 60;

// ---------------------------------------------------------------------------------------------
// File format
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    spotify: FileSpotify,
    #[serde(default)]
    listen: FileListen,
    #[serde(default)]
    server: FileServer,
    upstream: Option<FileUpstream>,
    session: FileSession,
    #[serde(default)]
    store: FileStore,
    #[serde(default)]
    egress: FileEgress,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpotify {
    client_id: String,
    client_secret: Option<String>,
    client_secret_env: Option<String>,
    client_secret_file: Option<String>,
    #[serde(default = "default_flow")]
    flow: String,
    redirect_uri: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    show_dialog: bool,
    #[serde(default = "default_accounts_url")]
    accounts_url: String,
    #[serde(default = "default_api_url")]
    api_url: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileListen {
    #[serde(default = "default_public")]
    public: String,
    #[serde(default = "default_egress")]
    egress: String,
    #[serde(default = "default_admin")]
    admin: String,
}

impl Default for FileListen {
    fn default() -> Self {
        FileListen {
            public: default_public(),
            egress: default_egress(),
            admin: default_admin(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileServer {
    threads: Option<usize>,
    grace_period: Option<String>,
    log_format: Option<String>,
    log_level: Option<String>,
    app_name: Option<String>,
    log_user_id: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUpstream {
    url: String,
    #[serde(default)]
    public_paths: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSession {
    #[serde(default = "default_cookie_name")]
    cookie_name: String,
    secret: Option<String>,
    secret_env: Option<String>,
    secret_file: Option<String>,
    previous_secret: Option<String>,
    previous_secret_env: Option<String>,
    previous_secret_file: Option<String>,
    #[serde(default = "default_lifetime")]
    lifetime: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStore {
    #[serde(default = "default_backend")]
    backend: String,
    path: Option<String>,
    url: Option<String>,
    password_env: Option<String>,
    password_file: Option<String>,
}

impl Default for FileStore {
    fn default() -> Self {
        FileStore {
            backend: default_backend(),
            path: None,
            url: None,
            password_env: None,
            password_file: None,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileEgress {
    #[serde(default)]
    app_token: bool,
    #[serde(default)]
    trust_user_header: bool,
    #[serde(default)]
    allow_trusted_header_on_network: bool,
    public_base_url: Option<String>,
    connect_timeout: Option<String>,
    read_timeout: Option<String>,
    total_timeout: Option<String>,
    max_retries: Option<u32>,
}

fn default_flow() -> String {
    "authorization_code".into()
}
fn default_accounts_url() -> String {
    "https://accounts.spotify.com".into()
}
fn default_api_url() -> String {
    "https://api.spotify.com".into()
}
fn default_public() -> String {
    "0.0.0.0:8080".into()
}
fn default_egress() -> String {
    "127.0.0.1:8081".into()
}
fn default_admin() -> String {
    "0.0.0.0:9090".into()
}
fn default_cookie_name() -> String {
    "spotify_gateway_session".into()
}
fn default_lifetime() -> String {
    "7d".into()
}
fn default_backend() -> String {
    "file".into()
}

// ---------------------------------------------------------------------------------------------
// Validated configuration
// ---------------------------------------------------------------------------------------------

/// OAuth 2.0 flow for user logins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    /// Authorization code with the client secret (RFC 6749 §4.1).
    AuthorizationCode,
    /// Authorization code with PKCE (RFC 7636), no client secret in the login.
    Pkce,
}

#[derive(Clone, Debug, Serialize)]
pub struct Config {
    pub spotify: SpotifyConfig,
    pub listen: ListenConfig,
    pub server: ServerSettings,
    pub upstream: Option<UpstreamConfig>,
    pub session: SessionConfig,
    pub store: StoreConfig,
    pub egress: EgressConfig,
}

#[derive(Clone, Debug, Serialize)]
pub struct SpotifyConfig {
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub flow: Flow,
    pub redirect_uri: Url,
    pub scopes: Vec<String>,
    pub show_dialog: bool,
    pub accounts_url: Url,
    pub api_url: Url,
}

#[derive(Clone, Debug, Serialize)]
pub struct ListenConfig {
    pub public: SocketAddr,
    pub egress: SocketAddr,
    pub admin: SocketAddr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, Serialize)]
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
}

#[derive(Clone, Debug, Serialize)]
pub struct UpstreamConfig {
    pub url: Url,
    pub public_paths: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SessionConfig {
    pub cookie_name: String,
    pub secret: Secret,
    /// The secret before a rotation: still opens cookies and records, never seals new ones.
    pub previous_secret: Option<Secret>,
    #[serde(serialize_with = "ser_duration")]
    pub lifetime: Duration,
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "backend", rename_all = "snake_case")]
pub enum StoreConfig {
    File { path: PathBuf },
    Redis { url: Secret },
    Memory,
}

#[derive(Clone, Debug, Serialize)]
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
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// One mistake in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted key path, e.g. `spotify.redirect_uri`.
    pub key: String,
    /// 1-based line in the file, when the key is present.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}, key `{}`: {}", self.key, self.message),
            None => write!(f, "key `{}`: {}", self.key, self.message),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{}", format_issues(.path, .issues))]
    Invalid {
        path: String,
        issues: Vec<ConfigIssue>,
    },
}

fn format_issues(path: &str, issues: &[ConfigIssue]) -> String {
    let mut out = format!("invalid config {path}:");
    for issue in issues {
        out.push_str("\n  ");
        out.push_str(&issue.to_string());
    }
    out
}

impl ConfigError {
    pub fn issues(&self) -> &[ConfigIssue] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid { issues, .. } => issues,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

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
        };
        let config = v.validate(file);
        match config {
            Some(config) if v.issues.is_empty() => Ok(config),
            _ => Err(invalid(v.issues)),
        }
    }

    /// The effective config as TOML, every secret replaced by where it comes from.
    pub fn to_redacted_toml(&self) -> String {
        toml_edit::ser::to_string_pretty(self)
            .unwrap_or_else(|e| format!("# cannot render the config: {e}\n"))
    }
}

struct Validator<'a> {
    text: &'a str,
    doc: &'a toml_edit::Document<String>,
    env: &'a dyn Fn(&str) -> Option<String>,
    issues: Vec<ConfigIssue>,
}

impl Validator<'_> {
    fn issue(&mut self, key: &str, message: impl Into<String>) {
        let line = locate(self.doc.as_table(), key).map(|o| line_of(self.text, o));
        self.issues.push(ConfigIssue {
            key: key.to_string(),
            line,
            message: message.into(),
        });
    }

    fn validate(&mut self, file: FileConfig) -> Option<Config> {
        // Exhaustive destructuring: a new file field cannot be forgotten here.
        let FileConfig {
            spotify,
            listen,
            server,
            upstream,
            session,
            store,
            egress,
        } = file;
        let listen = self.listen(listen);
        let spotify = self.spotify(spotify);
        let server = self.server(server);
        let upstream = upstream.and_then(|u| self.upstream(u));
        let session = self.session(session);
        let store = self.store(store);
        let egress = listen.as_ref().and_then(|l| self.egress(egress, l.egress));
        let config = Config {
            spotify: spotify?,
            listen: listen?,
            server: server?,
            upstream,
            session: session?,
            store: store?,
            egress: egress?,
        };
        self.cross_checks(&config);
        Some(config)
    }

    fn cross_checks(&mut self, c: &Config) {
        if c.spotify.client_secret.is_none() {
            if c.spotify.flow == Flow::AuthorizationCode {
                self.issue(
                    "spotify.client_secret",
                    "flow = \"authorization_code\" needs the client secret: set one of \
                     client_secret_env, client_secret_file (or use flow = \"pkce\")",
                );
            }
            if c.egress.app_token {
                self.issue(
                    "egress.app_token",
                    "app_token = true uses the client-credentials flow, which needs \
                     spotify.client_secret_env or spotify.client_secret_file",
                );
            }
        }
    }

    fn secret(
        &mut self,
        table: &str,
        name: &str,
        inline: Option<String>,
        env: Option<String>,
        file: Option<String>,
    ) -> Result<Option<Secret>, ()> {
        let set = [inline.is_some(), env.is_some(), file.is_some()]
            .iter()
            .filter(|s| **s)
            .count();
        if set > 1 {
            self.issue(
                &format!("{table}.{name}"),
                format!("set only one of {name}, {name}_env and {name}_file"),
            );
            return Err(());
        }
        if let Some(value) = inline {
            return Ok(Some(Secret::new(value, SecretSource::Inline)));
        }
        if let Some(var) = env {
            return match (self.env)(&var) {
                Some(value) if !value.trim().is_empty() => {
                    Ok(Some(Secret::new(value.trim(), SecretSource::Env(var))))
                }
                _ => {
                    self.issue(
                        &format!("{table}.{name}_env"),
                        format!("environment variable {var} is not set or empty"),
                    );
                    Err(())
                }
            };
        }
        if let Some(path) = file {
            return match std::fs::read_to_string(&path) {
                // Kubernetes Secret mounts often end with a newline.
                Ok(value) if !value.trim().is_empty() => {
                    Ok(Some(Secret::new(value.trim(), SecretSource::File(path))))
                }
                Ok(_) => {
                    self.issue(&format!("{table}.{name}_file"), format!("{path} is empty"));
                    Err(())
                }
                Err(e) => {
                    self.issue(
                        &format!("{table}.{name}_file"),
                        format!("cannot read {path}: {e}"),
                    );
                    Err(())
                }
            };
        }
        Ok(None)
    }

    fn addr(&mut self, key: &str, value: &str) -> Option<SocketAddr> {
        match value.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.issue(
                    key,
                    format!("{value:?} is not a socket address such as \"127.0.0.1:8080\""),
                );
                None
            }
        }
    }

    fn url(&mut self, key: &str, value: &str) -> Option<Url> {
        match Url::parse(value) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
            Ok(_) => {
                self.issue(key, format!("{value:?} must be an http:// or https:// URL"));
                None
            }
            Err(e) => {
                self.issue(key, format!("{value:?} is not a URL: {e}"));
                None
            }
        }
    }

    /// An http(s) URL the gateway sends secrets to: plain http only to a loopback address.
    fn secret_bearing_url(&mut self, key: &str, value: &str) -> Option<Url> {
        let url = self.url(key, value)?;
        if url.scheme() == "http" && !is_loopback_literal(&url) {
            self.issue(
                key,
                format!(
                    "{value:?} uses plain http to a non-loopback host; tokens and the client \
                     secret would cross the network in clear. Use https://"
                ),
            );
            return None;
        }
        Some(url)
    }

    fn listen(&mut self, l: FileListen) -> Option<ListenConfig> {
        let FileListen {
            public,
            egress,
            admin,
        } = l;
        let public = self.addr("listen.public", &public);
        let egress = self.addr("listen.egress", &egress);
        let admin = self.addr("listen.admin", &admin);
        let (public, egress, admin) = (public?, egress?, admin?);
        if public == egress || public == admin || egress == admin {
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

    fn spotify(&mut self, s: FileSpotify) -> Option<SpotifyConfig> {
        let FileSpotify {
            client_id,
            client_secret,
            client_secret_env,
            client_secret_file,
            flow,
            redirect_uri,
            scopes,
            show_dialog,
            accounts_url,
            api_url,
        } = s;
        if client_id.trim().is_empty() {
            self.issue("spotify.client_id", "must not be empty");
        }
        let secret = self.secret(
            "spotify",
            "client_secret",
            client_secret,
            client_secret_env,
            client_secret_file,
        );
        let flow = match flow.as_str() {
            "authorization_code" => Some(Flow::AuthorizationCode),
            "pkce" => Some(Flow::Pkce),
            "implicit" | "token" => {
                self.issue(
                    "spotify.flow",
                    "the implicit grant is not supported: Spotify removed it on 2025-11-27 and \
                     it cannot keep a secret. Use \"authorization_code\" or \"pkce\"",
                );
                None
            }
            other => {
                self.issue(
                    "spotify.flow",
                    format!("{other:?} is not a flow; use \"authorization_code\" or \"pkce\""),
                );
                None
            }
        };
        let redirect_uri = self.redirect_uri(&redirect_uri);
        for scope in &scopes {
            if scope.is_empty() || scope.contains(char::is_whitespace) {
                self.issue(
                    "spotify.scopes",
                    format!("{scope:?} is not a scope name (one scope per list entry)"),
                );
            }
        }
        let accounts_url = self.secret_bearing_url("spotify.accounts_url", &accounts_url);
        let api_url = self.secret_bearing_url("spotify.api_url", &api_url);
        if let Some(api) = &api_url {
            if api.path() != "/" || api.query().is_some() {
                self.issue(
                    "spotify.api_url",
                    "must be the API origin only, such as \"https://api.spotify.com\" (no path)",
                );
            }
        }
        Some(SpotifyConfig {
            client_id,
            client_secret: secret.ok()?,
            flow: flow?,
            redirect_uri: redirect_uri?,
            scopes,
            show_dialog,
            accounts_url: accounts_url?,
            api_url: api_url?,
        })
    }

    fn redirect_uri(&mut self, value: &str) -> Option<Url> {
        const KEY: &str = "spotify.redirect_uri";
        let url = self.url(KEY, value)?;
        if url.scheme() == "http" && !is_loopback_literal(&url) {
            let why = if url.host_str() == Some("localhost") {
                "Spotify refuses `localhost` in redirect URIs; use a loopback IP literal such \
                 as http://127.0.0.1:8080/auth/callback"
            } else {
                "Spotify accepts plain http only for loopback IP literals \
                 (http://127.0.0.1:PORT or http://[::1]:PORT); use https://"
            };
            self.issue(KEY, format!("{value:?}: {why}"));
            return None;
        }
        if url.path() != CALLBACK_PATH {
            self.issue(
                KEY,
                format!("the path must be {CALLBACK_PATH}, where the gateway takes the callback"),
            );
            return None;
        }
        Some(url)
    }

    fn server(&mut self, s: FileServer) -> Option<ServerSettings> {
        let FileServer {
            threads,
            grace_period,
            log_format,
            log_level,
            app_name,
            log_user_id,
        } = s;
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
        })
    }

    fn duration(&mut self, key: &str, value: &str) -> Option<Duration> {
        match humantime::parse_duration(value) {
            Ok(d) => Some(d),
            Err(e) => {
                self.issue(
                    key,
                    format!("{value:?} is not a duration such as \"30s\", \"12h\" or \"7d\": {e}"),
                );
                None
            }
        }
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

    fn session(&mut self, s: FileSession) -> Option<SessionConfig> {
        let FileSession {
            cookie_name,
            secret,
            secret_env,
            secret_file,
            previous_secret,
            previous_secret_env,
            previous_secret_file,
            lifetime,
        } = s;
        let valid_name = !cookie_name.is_empty()
            && cookie_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid_name {
            self.issue(
                "session.cookie_name",
                format!("{cookie_name:?} is not a cookie name (letters, digits, - _ . only)"),
            );
        }
        let secret = match self.secret("session", "secret", secret, secret_env, secret_file) {
            Ok(Some(s)) if s.expose().len() >= MIN_SESSION_SECRET_BYTES => Some(s),
            Ok(Some(_)) => {
                self.issue(
                    "session.secret",
                    format!(
                        "must be at least {MIN_SESSION_SECRET_BYTES} bytes \
                         (e.g. `openssl rand -base64 48`)"
                    ),
                );
                None
            }
            Ok(None) => {
                self.issue(
                    "session.secret",
                    "required: set secret_env or secret_file (it encrypts sessions and tokens)",
                );
                None
            }
            Err(()) => None,
        };
        let previous_secret = self
            .secret(
                "session",
                "previous_secret",
                previous_secret,
                previous_secret_env,
                previous_secret_file,
            )
            .ok()?;
        let lifetime = self.duration("session.lifetime", &lifetime);
        if lifetime.is_some_and(|l| l < Duration::from_secs(60)) {
            self.issue("session.lifetime", "must be at least 1 minute");
        }
        Some(SessionConfig {
            cookie_name,
            secret: secret?,
            previous_secret,
            lifetime: lifetime?,
        })
    }

    fn store(&mut self, s: FileStore) -> Option<StoreConfig> {
        let FileStore {
            backend,
            path,
            url,
            password_env,
            password_file,
        } = s;
        match backend.as_str() {
            "file" => {
                if url.is_some() {
                    self.issue("store.url", "only for backend = \"redis\"");
                }
                Some(StoreConfig::File {
                    path: PathBuf::from(path.unwrap_or_else(|| "spotify-gateway.redb".into())),
                })
            }
            "memory" => Some(StoreConfig::Memory),
            "redis" => {
                let Some(url) = url else {
                    self.issue(
                        "store.url",
                        "backend = \"redis\" needs url = \"redis://host:6379\"",
                    );
                    return None;
                };
                let parsed = match Url::parse(&url) {
                    Ok(u) if matches!(u.scheme(), "redis" | "rediss") => u,
                    _ => {
                        self.issue("store.url", "must be a redis:// or rediss:// URL");
                        return None;
                    }
                };
                let mut full = parsed;
                let password = self
                    .secret("store", "password", None, password_env, password_file)
                    .ok()?;
                // The URL may hold a password itself; it is a secret either way.
                let mut source = SecretSource::Inline;
                if let Some(pw) = password {
                    if full.set_password(Some(pw.expose())).is_err() {
                        self.issue("store.url", "cannot carry a password (no host)");
                        return None;
                    }
                    source = pw.source().clone();
                }
                Some(StoreConfig::Redis {
                    url: Secret::new(full.to_string(), source),
                })
            }
            other => {
                self.issue(
                    "store.backend",
                    format!("{other:?} is not a store; use \"file\", \"redis\" or \"memory\""),
                );
                None
            }
        }
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
        })
    }
}

fn is_loopback_literal(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        _ => false,
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Byte offset of the key at dotted `path` (or of its nearest present parent table).
fn locate(root: &toml_edit::Table, path: &str) -> Option<usize> {
    let mut table: &dyn toml_edit::TableLike = root;
    let mut found = None;
    for segment in path.split('.') {
        let (key, item) = table.get_key_value(segment)?;
        found = key.span().map(|s| s.start).or(item.span().map(|s| s.start));
        match item.as_table_like() {
            Some(t) => table = t,
            None => break,
        }
    }
    found
}

/// The dotted path of the innermost key whose key or value covers `offset`.
fn key_at(table: &dyn toml_edit::TableLike, offset: usize, prefix: &str) -> Option<String> {
    for (name, item) in table.iter() {
        let path = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}.{name}")
        };
        let key_span = table.get_key_value(name).and_then(|(k, _)| k.span());
        if key_span.is_some_and(|s| s.contains(&offset)) {
            return Some(path);
        }
        if let Some(inner) = item.as_table_like() {
            if let Some(found) = key_at(inner, offset, &path) {
                return Some(found);
            }
        }
        if item.span().is_some_and(|s| s.contains(&offset)) {
            return Some(path);
        }
    }
    // An offset inside a [table] header that has no key under it.
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "CLIENT_SECRET" => Some("s3cr3t-client".into()),
            "SESSION_SECRET" => Some("0123456789abcdef0123456789abcdef-session".into()),
            _ => None,
        }
    }

    const GOOD: &str = r#"
[spotify]
client_id = "abc"
client_secret_env = "CLIENT_SECRET"
redirect_uri = "http://127.0.0.1:8080/auth/callback"
scopes = ["user-read-email"]

[session]
secret_env = "SESSION_SECRET"
"#;

    fn issues(text: &str) -> Vec<ConfigIssue> {
        match Config::parse(text, "test.toml", &env) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.issues().to_vec(),
        }
    }

    #[test]
    fn good_config_gets_defaults() {
        let c = Config::parse(GOOD, "t", &env).expect("valid");
        assert_eq!(c.listen.egress, "127.0.0.1:8081".parse().unwrap());
        assert_eq!(c.spotify.flow, Flow::AuthorizationCode);
        assert_eq!(c.egress.public_base_url.as_str(), "http://127.0.0.1:8081/");
        assert!(matches!(c.store, StoreConfig::File { .. }));
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let text = GOOD.replace("scopes =", "colour = \"red\"\nscopes =");
        let i = issues(&text);
        assert_eq!(i[0].key, "spotify.colour");
        assert_eq!(i[0].line, Some(6));
        assert!(i[0].message.contains("unknown field"), "{}", i[0].message);
    }

    #[test]
    fn implicit_flow_is_refused_with_reason() {
        let text = GOOD.replace("scopes =", "flow = \"implicit\"\nscopes =");
        let i = issues(&text);
        assert_eq!(i[0].key, "spotify.flow");
        assert_eq!(i[0].line, Some(6));
        assert!(i[0].message.contains("2025-11-27"));
    }

    #[test]
    fn redirect_uri_rules() {
        for (uri, needle) in [
            ("http://localhost:8080/auth/callback", "localhost"),
            ("http://example.com/auth/callback", "loopback"),
            ("https://example.com/other", "/auth/callback"),
        ] {
            let text = GOOD.replace("http://127.0.0.1:8080/auth/callback", uri);
            let i = issues(&text);
            assert_eq!(i[0].key, "spotify.redirect_uri");
            assert_eq!(i[0].line, Some(5));
            assert!(i[0].message.contains(needle), "{uri}: {}", i[0].message);
        }
        let ok = GOOD.replace(
            "http://127.0.0.1:8080/auth/callback",
            "http://[::1]:8080/auth/callback",
        );
        assert!(Config::parse(&ok, "t", &env).is_ok());
    }

    #[test]
    fn bad_address_and_missing_env_are_reported_together() {
        let text = format!("{GOOD}\n[listen]\npublic = \"nowhere\"\n")
            .replace("SESSION_SECRET", "NOT_SET");
        let i = issues(&text);
        let keys: Vec<_> = i.iter().map(|i| i.key.as_str()).collect();
        assert!(keys.contains(&"listen.public"), "{keys:?}");
        assert!(keys.contains(&"session.secret_env"), "{keys:?}");
        let public = i.iter().find(|i| i.key == "listen.public").unwrap();
        assert_eq!(public.line, Some(12));
    }

    #[test]
    fn app_name_defaults_and_is_checked() {
        let c = Config::parse(GOOD, "t", &env).expect("valid");
        assert_eq!(c.server.app_name, DEFAULT_APP_NAME);
        let named = format!("{GOOD}\n[server]\napp_name = \"  Acme Music \"\n");
        let c = Config::parse(&named, "t", &env).expect("valid");
        assert_eq!(c.server.app_name, "Acme Music");
        for bad in ["\"\"", "\"   \"", &format!("\"{}\"", "x".repeat(61))] {
            let text = format!("{GOOD}\n[server]\napp_name = {bad}\n");
            let i = issues(&text);
            assert_eq!(i[0].key, "server.app_name", "{bad}");
            assert_eq!(i[0].line, Some(12), "{bad}");
        }
    }

    #[test]
    fn trusted_user_header_on_a_network_address_needs_the_loud_setting() {
        let on_network = |addr: &str, allow: &str| {
            format!(
                "{GOOD}\n[listen]\negress = \"{addr}\"\n\n[egress]\ntrust_user_header = true\n{allow}"
            )
        };
        for addr in ["0.0.0.0:8081", "192.0.2.10:8081", "[::]:8081"] {
            let text = on_network(addr, "");
            let i = issues(&text);
            assert_eq!(i.len(), 1, "{addr}: {i:?}");
            assert_eq!(i[0].key, "egress.trust_user_header", "{addr}");
            let line = text
                .lines()
                .position(|l| l.starts_with("trust_user_header"))
                .map(|p| p + 1);
            assert_eq!(i[0].line, line, "{addr}");
            assert!(
                i[0].message.contains("allow_trusted_header_on_network"),
                "{}",
                i[0].message
            );
            let allowed = on_network(addr, "allow_trusted_header_on_network = true\n");
            let c = Config::parse(&allowed, "t", &env).expect("explicitly allowed");
            assert!(c.egress.trust_user_header && c.egress.allow_trusted_header_on_network);
        }
        for addr in ["127.0.0.1:8081", "127.0.0.2:8081", "[::1]:8081"] {
            let c = Config::parse(&on_network(addr, ""), "t", &env).expect("loopback is fine");
            assert!(!c.egress.allow_trusted_header_on_network);
        }
        // Without the trusted header, any address is fine.
        let text = format!("{GOOD}\n[listen]\negress = \"0.0.0.0:8081\"\n");
        assert!(Config::parse(&text, "t", &env).is_ok());
    }

    #[test]
    fn toml_that_panics_the_parser_is_a_syntax_error() {
        for text in ["==\n.=", &format!("{GOOD}\n==\n.=")] {
            let i = issues(text);
            assert_eq!(i.len(), 1, "{i:?}");
            assert_eq!(i[0].key, "(syntax)");
        }
    }

    #[test]
    fn redacted_output_hides_secrets() {
        let c = Config::parse(GOOD, "t", &env).unwrap();
        let out = c.to_redacted_toml();
        assert!(!out.contains("s3cr3t"), "{out}");
        assert!(!out.contains("0123456789abcdef"), "{out}");
        assert!(out.contains("env CLIENT_SECRET"), "{out}");
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }
}
