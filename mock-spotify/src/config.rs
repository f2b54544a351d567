//! `MockConfig`: how the mock's registered applications look (its main client and any
//! others, `MockClient`), and `MockTls`, the certificate and key it serves over HTTPS (made
//! by `tls::TestCa`). A leaf: it imports no other file of the mock.

use std::time::Duration;

/// How the mock's registered applications look: the main client here, the others in
/// `other_clients`.
#[derive(Debug, Clone)]
pub struct MockConfig {
    pub client_id: String,
    pub client_secret: String,
    /// Registered redirect URIs; `/authorize` and `/api/token` require an exact match.
    pub redirect_uris: Vec<String>,
    /// Access token lifetime; `expires_in` reports it in whole seconds (at least 1).
    pub token_lifetime: Duration,
    /// Shown on the consent page.
    pub app_name: String,
    /// Serve HTTPS with this certificate and key (see `TestCa`), as Spotify does; `None`
    /// serves plain HTTP.
    pub tls: Option<MockTls>,
    /// With `tls`: offer HTTP/2 in ALPN (`h2`, then `http/1.1`), as api.spotify.com does;
    /// `false` offers HTTP/1.1 only, to see a client fall back.
    pub http2: bool,
    /// Development mode (Spotify's default for new apps since 2026) or extended quota; the
    /// `/__mock/app` control changes it at run time.
    pub mode: AppMode,
    /// How long a refresh token works after the user's original authorization, whatever
    /// the refreshes in between (Spotify, 2026: 6 months).
    pub refresh_token_lifetime: Duration,
    /// Calls the developer account may make per rolling 30 seconds (`quota`); `None` is no
    /// limit. `POST /__mock/quota` changes it at run time.
    pub quota_per_30s: Option<u32>,
    /// The developer account that owns the main client: its `QUOTA_EXCEEDED` holds every
    /// client of the account (`POST /__mock/quota` with `"account"`).
    pub developer_account: String,
    /// Further client ids (Spotify: up to 25 per developer account since July 2026), each
    /// with its own secret, redirect URIs, mode, registered users and rate-limit window.
    pub other_clients: Vec<MockClient>,
}

/// Another client id the mock knows, beside `MockConfig`'s main one.
#[derive(Debug, Clone)]
pub struct MockClient {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uris: Vec<String>,
    /// Shown on the consent page.
    pub app_name: String,
    /// Fixed for the mock's life (`/__mock/app` changes the main client's only).
    pub mode: AppMode,
    /// Users registered in its dashboard (development mode serves only these).
    pub registered: Vec<String>,
    pub developer_account: String,
}

/// Spotify's two kinds of app (NOTES-pingora.md, "Spotify in 2026").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AppMode {
    #[default]
    /// At most 5 users, each registered in the dashboard; other users' API calls answer
    /// 403, and the pre-2026 paths (`/playlists/{id}/tracks`) answer 403 too.
    Development,
    /// Granted to organisations: every user, and the old paths still work.
    ExtendedQuota,
}

impl AppMode {
    pub fn name(self) -> &'static str {
        match self {
            AppMode::Development => "development",
            AppMode::ExtendedQuota => "extended_quota",
        }
    }

    pub fn parse(name: &str) -> Option<AppMode> {
        match name {
            "development" => Some(AppMode::Development),
            "extended_quota" => Some(AppMode::ExtendedQuota),
            _ => None,
        }
    }
}

/// The developer account of a client that names none.
pub const DEFAULT_DEVELOPER_ACCOUNT: &str = "default";

/// Six months, as Spotify counts a refresh token's life from the original authorization
/// (183 days: never shorter than six calendar months).
pub const REFRESH_TOKEN_LIFETIME: Duration = Duration::from_secs(183 * 24 * 3600);

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            client_id: "demo-client-id".to_string(),
            client_secret: "demo-client-secret".to_string(),
            redirect_uris: vec!["http://127.0.0.1:8080/auth/callback".to_string()],
            token_lifetime: Duration::from_secs(3600),
            app_name: "Spotify Gateway Demo".to_string(),
            tls: None,
            http2: true,
            mode: AppMode::Development,
            refresh_token_lifetime: REFRESH_TOKEN_LIFETIME,
            quota_per_30s: None,
            developer_account: DEFAULT_DEVELOPER_ACCOUNT.to_string(),
            other_clients: Vec::new(),
        }
    }
}

/// The certificate chain and private key the mock serves, both PEM.
#[derive(Clone, Debug)]
pub struct MockTls {
    pub cert_pem: String,
    pub key_pem: String,
}
