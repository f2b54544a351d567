//! The config file's format: serde structs mirroring the TOML, every table rejecting unknown
//! keys, with the defaults a key takes when it is absent. Nothing here is validated; the
//! `validate` layer turns these into the types the gateway uses.

use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    /// One app (named `default`): `[spotify]`, `[upstream]` and `[access]` at the top level.
    pub(super) spotify: Option<FileSpotify>,
    #[serde(default)]
    pub(super) listen: FileListen,
    #[serde(default)]
    pub(super) server: FileServer,
    pub(super) upstream: Option<FileUpstream>,
    pub(super) session: FileSession,
    #[serde(default)]
    pub(super) store: FileStore,
    #[serde(default)]
    pub(super) egress: FileEgress,
    pub(super) forward_auth: Option<FileForwardAuth>,
    pub(super) access: Option<FileAccess>,
    #[serde(default)]
    pub(super) admin: FileAdmin,
    #[serde(default)]
    pub(super) playback: FilePlayback,
    #[serde(default)]
    pub(super) webhooks: Vec<super::webhooks::FileWebhook>,
    #[serde(default)]
    pub(super) tracing: FileTracing,
    /// Several apps: each its own `[spotify]`, hosts, `[upstream]` and `[access]`.
    #[serde(default)]
    pub(super) apps: Vec<FileApp>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTracing {
    #[serde(default)]
    pub(super) enabled: bool,
    pub(super) otlp_endpoint: Option<String>,
    pub(super) service_name: Option<String>,
    pub(super) sample_ratio: Option<f64>,
    pub(super) headers_env: Option<String>,
    pub(super) headers_file: Option<String>,
}

/// One `[[apps]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileApp {
    pub(super) name: String,
    pub(super) spotify: FileSpotify,
    #[serde(default)]
    pub(super) hosts: Vec<String>,
    pub(super) upstream: Option<FileUpstream>,
    #[serde(default)]
    pub(super) access: FileAccess,
    pub(super) developer_account: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileSpotify {
    pub(super) client_id: String,
    pub(super) client_secret: Option<String>,
    pub(super) client_secret_env: Option<String>,
    pub(super) client_secret_file: Option<String>,
    #[serde(default = "default_flow")]
    pub(super) flow: String,
    pub(super) redirect_uri: String,
    #[serde(default)]
    pub(super) scopes: Vec<String>,
    #[serde(default)]
    pub(super) show_dialog: bool,
    #[serde(default = "default_accounts_url")]
    pub(super) accounts_url: String,
    #[serde(default = "default_api_url")]
    pub(super) api_url: String,
    pub(super) ca_file: Option<String>,
    pub(super) proxy_url: Option<String>,
    pub(super) proxy_credentials: Option<String>,
    pub(super) proxy_credentials_env: Option<String>,
    pub(super) proxy_credentials_file: Option<String>,
    pub(super) no_proxy: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileListen {
    #[serde(default = "default_public")]
    pub(super) public: Addresses,
    #[serde(default = "default_egress")]
    pub(super) egress: String,
    #[serde(default = "default_admin")]
    pub(super) admin: String,
}

/// `listen.public`: one address, or a list of them (apps on loopback hosts of their own,
/// each bound without taking every address).
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "an address such as \"127.0.0.1:8080\", or a list of them"
)]
pub(super) enum Addresses {
    One(String),
    Many(Vec<String>),
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
pub(super) struct FileServer {
    pub(super) threads: Option<usize>,
    pub(super) grace_period: Option<String>,
    pub(super) log_format: Option<String>,
    pub(super) log_level: Option<String>,
    pub(super) app_name: Option<String>,
    pub(super) log_user_id: Option<bool>,
    pub(super) header_read_timeout: Option<String>,
    pub(super) max_connections_public: Option<usize>,
    pub(super) max_connections_egress: Option<usize>,
    pub(super) max_connections_admin: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileUpstream {
    pub(super) url: String,
    #[serde(default)]
    pub(super) public_paths: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileSession {
    #[serde(default = "default_cookie_name")]
    pub(super) cookie_name: String,
    pub(super) secret: Option<String>,
    pub(super) secret_env: Option<String>,
    pub(super) secret_file: Option<String>,
    pub(super) previous_secret: Option<String>,
    pub(super) previous_secret_env: Option<String>,
    pub(super) previous_secret_file: Option<String>,
    #[serde(default = "default_lifetime")]
    pub(super) lifetime: String,
    pub(super) cookie_domain: Option<String>,
    #[serde(default = "default_reauth_after")]
    pub(super) reauth_after: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileStore {
    #[serde(default = "default_backend")]
    pub(super) backend: String,
    pub(super) path: Option<String>,
    pub(super) url: Option<String>,
    pub(super) password_env: Option<String>,
    pub(super) password_file: Option<String>,
    /// `backend = "redis-sentinel"`: the sentinels (`host:port`), the master's name there,
    /// and the sentinels' own password.
    pub(super) sentinels: Option<Vec<String>>,
    pub(super) master_name: Option<String>,
    pub(super) sentinel_password_env: Option<String>,
    pub(super) sentinel_password_file: Option<String>,
    /// `backend = "redis-cluster"`: seed nodes (`host:port`).
    pub(super) nodes: Option<Vec<String>>,
    /// TLS to the sentinels and the data nodes (a `redis` URL says it with `rediss://`).
    pub(super) tls: Option<bool>,
    pub(super) ca_file: Option<String>,
    pub(super) replica_wait: Option<String>,
}

impl Default for FileStore {
    fn default() -> Self {
        FileStore {
            backend: default_backend(),
            path: None,
            url: None,
            password_env: None,
            password_file: None,
            sentinels: None,
            master_name: None,
            sentinel_password_env: None,
            sentinel_password_file: None,
            nodes: None,
            tls: None,
            ca_file: None,
            replica_wait: None,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAccess {
    #[serde(default)]
    pub(super) allowed_users: Vec<String>,
    #[serde(default)]
    pub(super) allowed_products: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FilePlayback {
    #[serde(default)]
    pub(super) enabled: bool,
    #[serde(default = "default_playback_per_minute")]
    pub(super) max_per_minute: u32,
}

fn default_playback_per_minute() -> u32 {
    6
}

impl Default for FilePlayback {
    fn default() -> Self {
        FilePlayback {
            enabled: false,
            max_per_minute: default_playback_per_minute(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAdmin {
    pub(super) token_env: Option<String>,
    pub(super) token_file: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileEgress {
    #[serde(default)]
    pub(super) app_token: bool,
    #[serde(default)]
    pub(super) trust_user_header: bool,
    #[serde(default)]
    pub(super) allow_trusted_header_on_network: bool,
    pub(super) public_base_url: Option<String>,
    pub(super) connect_timeout: Option<String>,
    pub(super) read_timeout: Option<String>,
    pub(super) total_timeout: Option<String>,
    pub(super) max_retries: Option<u32>,
    pub(super) coalesce: Option<bool>,
    pub(super) cache_size: Option<u64>,
    pub(super) budget_per_30s: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileForwardAuth {
    #[serde(default)]
    pub(super) allowed_hosts: Vec<String>,
    #[serde(default)]
    pub(super) trusted_proxies: Vec<String>,
}

/// Declares the functions serde calls for a key's default (`#[serde(default = "...")]`
/// wants a function), one line per default.
fn default_public() -> Addresses {
    Addresses::One("0.0.0.0:8080".into())
}

macro_rules! defaults {
    ($($name:ident => $value:literal,)*) => {
        $(fn $name() -> String { $value.into() })*
    };
}

defaults! {
    default_flow => "authorization_code",
    default_accounts_url => "https://accounts.spotify.com",
    default_api_url => "https://api.spotify.com",
    default_egress => "127.0.0.1:8081",
    default_admin => "0.0.0.0:9090",
    default_cookie_name => "spotify_gateway_session",
    default_lifetime => "7d",
    default_reauth_after => "180d",
    default_backend => "file",
}
