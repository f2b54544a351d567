//! From the file's format to the validated config: every value checked, every secret read
//! from where it lives (inline, env, file), cross-checks between keys. Each problem is
//! collected with its key and line, so one run reports them all.
//!
//! Why one long file: one `Validator` method per config table, each destructuring its table
//! exhaustively (a new key does not compile until it is checked); splitting per table would
//! scatter the shared `issue` bookkeeping. Splitting `spotify`/`session`/`forward_auth` into
//! `validate/` submodules is the next step if it grows further.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::file::*;
use super::values::{is_loopback_literal, Validator};
use super::*;
use crate::secret::{Secret, SecretSource};

/// `egress.cache_size` when not set: Spotify's cacheable answers are few and small.
const DEFAULT_CACHE_SIZE: u64 = 4 << 20;
const MAX_CACHE_SIZE: u64 = 1 << 30;
/// Shortest accepted `session.secret`: it keys AES-256-GCM and HMAC-SHA256, so 32 bytes.
const MIN_SESSION_SECRET_BYTES: usize = 32;
/// A slow client gets this long for a whole request header (idle keep-alive time included):
/// ample for any real client, short enough that one trickling bytes cannot hold a connection.
const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Spotify's refresh tokens end six months after the user's authorization (2026); the
/// gateway counts 180 days, so it asks for a re-consent before Spotify refuses the token.
const SPOTIFY_REFRESH_TOKEN_LIFE: Duration = Duration::from_secs(180 * 24 * 3600);
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
            webhooks,
        } = file;
        let listen = self.listen(listen);
        let spotify = self.spotify(spotify);
        let server = self.server(server);
        let upstream = upstream.and_then(|u| self.upstream(u));
        let session = self.session(session);
        let store = self.store(store);
        let egress = listen.as_ref().and_then(|l| self.egress(egress, l.egress));
        let forward_auth = match forward_auth {
            Some(f) => Some(self.forward_auth(f)?),
            None => None,
        };
        let access = self.access(access);
        let admin = self.admin(admin);
        let webhooks = self.webhooks(webhooks);
        let config = Config {
            spotify: spotify?,
            listen: listen?,
            server: server?,
            upstream,
            session: session?,
            store: store?,
            egress: egress?,
            forward_auth,
            access: access?,
            admin: admin?,
            webhooks: webhooks?,
        };
        self.cross_checks(&config);
        Some(config)
    }

    fn cross_checks(&mut self, c: &Config) {
        // Browsers refuse a `Domain` that does not cover the host setting the cookie: the
        // callback on the redirect URI's host.
        if let (Some(domain), Some(host)) =
            (&c.session.cookie_domain, c.spotify.redirect_uri.host_str())
        {
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
        if !c.access.allowed_products.is_empty()
            && !c.spotify.scopes.iter().any(|s| s == "user-read-private")
        {
            self.issue(
                "access.allowed_products",
                "Spotify tells the product only with the user-read-private scope: add it to \
                 spotify.scopes",
            );
        }
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
            ca_file,
            proxy_url,
            proxy_credentials,
            proxy_credentials_env,
            proxy_credentials_file,
            no_proxy,
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
        let ca_file = match ca_file {
            Some(path) => Some(self.ca_file("spotify.ca_file", &path)?),
            None => None,
        };
        let credentials = self.secret(
            "spotify",
            "proxy_credentials",
            proxy_credentials,
            proxy_credentials_env,
            proxy_credentials_file,
        );
        let proxy = self.proxy(proxy_url, credentials.ok()?, no_proxy)?;
        Some(SpotifyConfig {
            client_id,
            client_secret: secret.ok()?,
            flow: flow?,
            redirect_uri: redirect_uri?,
            scopes,
            show_dialog,
            accounts_url: accounts_url?,
            api_url: api_url?,
            ca_file,
            proxy,
        })
    }

    /// `spotify.proxy_url` with its credentials and `no_proxy`; `Some(None)`: no proxy.
    fn proxy(
        &mut self,
        url: Option<String>,
        credentials: Option<Secret>,
        no_proxy: Option<Vec<String>>,
    ) -> Option<Option<ProxyConfig>> {
        const KEY: &str = "spotify.proxy_url";
        let Some(url) = url else {
            if credentials.is_some() || no_proxy.is_some() {
                let key = match credentials {
                    Some(_) => "spotify.proxy_credentials",
                    None => "spotify.no_proxy",
                };
                self.issue(key, "has no effect without spotify.proxy_url");
            }
            return Some(None);
        };
        let parsed = self.url(KEY, &url)?;
        if parsed.scheme() != "http" {
            self.issue(
                KEY,
                format!(
                    "{url:?}: only http:// proxies are supported (HTTP CONNECT; the TLS to \
                     Spotify runs inside the tunnel, end to end)"
                ),
            );
            return None;
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            self.issue(
                KEY,
                "must not carry credentials: put \"user:password\" in \
                 spotify.proxy_credentials_env or spotify.proxy_credentials_file",
            );
            return None;
        }
        if parsed.path() != "/" || parsed.query().is_some() {
            self.issue(
                KEY,
                format!("{url:?} must be the proxy's origin only, such as \"http://proxy:3128\""),
            );
            return None;
        }
        if let Some(c) = &credentials {
            if !c.expose().contains(':') {
                let key = match c.source() {
                    SecretSource::Env(_) => "spotify.proxy_credentials_env",
                    SecretSource::File(_) => "spotify.proxy_credentials_file",
                    _ => "spotify.proxy_credentials",
                };
                self.issue(key, "must hold \"user:password\" (HTTP Basic)");
                return None;
            }
        }
        let entries = no_proxy.unwrap_or_else(|| {
            NoProxyEntry::LOOPBACK
                .iter()
                .map(|e| e.to_string())
                .collect()
        });
        let mut list = Vec::with_capacity(entries.len());
        for entry in &entries {
            match NoProxyEntry::parse(entry) {
                Ok(e) => list.push(e),
                Err(why) => self.issue("spotify.no_proxy", why),
            }
        }
        if list.len() != entries.len() {
            return None;
        }
        Some(Some(ProxyConfig {
            url: parsed,
            credentials,
            no_proxy: list,
        }))
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
            cookie_domain,
            reauth_after,
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
        let cookie_domain = match cookie_domain {
            Some(d) => Some(self.cookie_domain("session.cookie_domain", &d)?),
            None => None,
        };
        let reauth_after = self.duration("session.reauth_after", &reauth_after);
        if reauth_after.is_some_and(|r| r < Duration::from_secs(1)) {
            self.issue("session.reauth_after", "must be at least 1s");
        }
        if reauth_after.is_some_and(|r| r > SPOTIFY_REFRESH_TOKEN_LIFE) {
            self.issue(
                "session.reauth_after",
                "must not be longer than 180d: Spotify ends refresh tokens six months after the \
                 user's authorization, so a session cannot outlive that",
            );
        }
        Some(SessionConfig {
            cookie_name,
            secret: secret?,
            previous_secret,
            lifetime: lifetime?,
            cookie_domain,
            reauth_after: reauth_after?,
        })
    }

    fn forward_auth(&mut self, f: FileForwardAuth) -> Option<ForwardAuthConfig> {
        let FileForwardAuth {
            allowed_hosts,
            trusted_proxies,
        } = f;
        if allowed_hosts.is_empty() {
            self.issue(
                "forward_auth.allowed_hosts",
                "list the hosts behind the ingress, such as [\"app.example.com\"]: the login \
                 returns only to these",
            );
        }
        if trusted_proxies.is_empty() {
            self.issue(
                "forward_auth.trusted_proxies",
                "list the ingress's addresses as CIDRs, such as [\"10.0.0.0/8\"]: \
                 /auth/check answers only them",
            );
        }
        let hosts: Vec<_> = allowed_hosts
            .iter()
            .map(|h| self.allowed_host("forward_auth.allowed_hosts", h))
            .collect();
        let proxies: Vec<_> = trusted_proxies
            .iter()
            .map(|p| self.cidr("forward_auth.trusted_proxies", p))
            .collect();
        if allowed_hosts.is_empty() || trusted_proxies.is_empty() {
            return None;
        }
        Some(ForwardAuthConfig {
            allowed_hosts: hosts.into_iter().collect::<Option<_>>()?,
            trusted_proxies: proxies.into_iter().collect::<Option<_>>()?,
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
