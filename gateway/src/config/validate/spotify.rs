//! `[spotify]`: the app's credentials, Spotify's URLs and their trust, the outbound proxy,
//! the redirect URI.

use url::Url;

use crate::config::file::*;
use crate::config::values::{is_loopback_literal, Validator};
use crate::config::*;
use crate::secret::{Secret, SecretSource};

impl Validator<'_> {
    pub(super) fn spotify(&mut self, s: FileSpotify) -> Option<SpotifyConfig> {
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
            self.url_issue(
                KEY,
                &url,
                "is not supported: only http:// proxies are (HTTP CONNECT; the TLS to Spotify \
                 runs inside the tunnel, end to end)",
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
            self.url_issue(
                KEY,
                &url,
                "must be the proxy's origin only, such as \"http://proxy:3128\"",
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
            self.url_issue(KEY, value, format_args!("is refused: {why}"));
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
}
