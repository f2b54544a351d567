//! `MockConfig`: how the mock's single registered application looks.

use std::time::Duration;

use crate::tls::MockTls;

/// How the mock's single registered application looks.
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
    /// Calls the developer account may make per rolling 30 seconds (`quota`); `None` is no
    /// limit. `POST /__mock/quota` changes it at run time.
    pub quota_per_30s: Option<u32>,
}

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
            quota_per_30s: None,
        }
    }
}
