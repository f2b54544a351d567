//! Spotify's accounts service: the authorize URL and the token endpoint (RFC 6749), through the
//! `oauth2` crate.
//!
//! Every token-endpoint call runs on the process-wide I/O runtime (see `runtime`), where the
//! reqwest client's connections live. It trusts exactly the roots of `trust`, as the egress
//! proxy does, and reads every answer within a cap (`http_client`). Its failures are kinds
//! (`error`); a TLS failure is also counted and logged for the operator here.

mod error;
mod http_client;
mod spans;

pub use error::{Refusal, TokenError};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use oauth2::basic::{BasicClient, BasicTokenResponse};
use oauth2::{
    AuthUrl, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, TokenResponse, TokenUrl,
};
use tokio::runtime::Handle;
use url::Url;

use crate::clock::now_ms;
use crate::config::{Flow, SpotifyConfig};
use crate::net::outbound::Outbound;
use crate::net::tls_roots::{self, TlsTarget, Trust};
use crate::secret::{AccessToken, AuthorizationCode, CsrfState, PkceVerifier, RefreshToken};
use crate::telemetry::metrics::Metrics;
use error::{classify, transport};
use http_client::{read_capped, CappedClient};

/// Whole request to the token endpoint; Spotify answers in well under a second.
const TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const TOKEN_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

type Client = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// A token answer from Spotify.
#[derive(Clone, Debug)]
pub struct Grant {
    pub access_token: AccessToken,
    /// Unix milliseconds.
    pub expires_at_ms: u64,
    /// Lifetime Spotify gave, used to decide how early to refresh.
    pub lifetime: Duration,
    /// `None` when Spotify omitted it (keep the old one).
    pub refresh_token: Option<RefreshToken>,
    pub scopes: Vec<String>,
}

/// The part of Spotify's user object the gateway keeps.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Profile {
    pub id: String,
    pub display_name: Option<String>,
    /// Spotify's stable, pseudonymous id (May 2026), which Spotify asks apps to use instead of
    /// `id`; absent from older answers.
    #[serde(default)]
    pub account_id: Option<String>,
    /// `premium`, `free`... (only with the `user-read-private` scope).
    #[serde(default)]
    pub product: Option<String>,
}

/// Why `/v1/me` gave no profile after a login.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// 403 to a fresh user token: in development mode (2026) Spotify answers every call for a
    /// user the app's owner has not registered in the dashboard this way. Decided on the status,
    /// never the message text (Spotify changes its wording).
    #[error("Spotify refused the user's profile (403): the user is not registered for this app")]
    NotRegistered,
    #[error(transparent)]
    Token(#[from] TokenError),
}

pub struct TokenEndpoint {
    home: Handle,
    http: CappedClient,
    /// Login client: no secret under PKCE.
    login: Client,
    /// Client-credentials client: always the secret when there is one.
    app: Option<Client>,
    flow: Flow,
    /// `{api_url}/v1/me`, to learn who logged in.
    me_url: Url,
    /// `{accounts_url}/api/token`, named in its calls' spans.
    token_url: Url,
    show_dialog: bool,
    /// Hosts of the token endpoint and of `/v1/me`, for TLS failures.
    accounts_host: String,
    api_host: String,
    /// Whether requests to the accounts service and to the API go through
    /// `spotify.proxy_url`, to tell its failures apart.
    accounts_proxied: bool,
    api_proxied: bool,
    metrics: Arc<Metrics>,
}

/// What `/auth/login` needs to remember until the callback.
pub struct AuthorizeRequest {
    pub url: Url,
    pub state: CsrfState,
    pub pkce_verifier: Option<PkceVerifier>,
}

impl TokenEndpoint {
    pub fn new(
        cfg: &SpotifyConfig,
        trust: &Trust,
        outbound: &Outbound,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<TokenEndpoint> {
        let join = |path: &str| {
            cfg.accounts_url
                .join(path)
                .map_err(|e| std::io::Error::other(format!("spotify.accounts_url: {e}")))
        };
        let auth_url = AuthUrl::from_url(join("authorize")?);
        let token_at = join("api/token")?;
        let token_url = TokenUrl::from_url(token_at.clone());
        let base = BasicClient::new(ClientId::new(cfg.client_id.clone()))
            .set_auth_uri(auth_url)
            .set_token_uri(token_url)
            .set_redirect_uri(RedirectUrl::from_url(cfg.redirect_uri.clone()));
        let secret = cfg
            .client_secret
            .as_ref()
            .map(|s| ClientSecret::new(s.expose().to_string()));
        let login = match (cfg.flow, &secret) {
            (Flow::AuthorizationCode, Some(s)) => base.clone().set_client_secret(s.clone()),
            _ => base.clone(),
        };
        let app = secret.map(|s| base.set_client_secret(s));
        let http = outbound
            .reqwest(reqwest::Client::builder())
            .map_err(|e| std::io::Error::other(format!("spotify.proxy_url: {e}")))?
            // The same roots as the egress proxy, not reqwest's compiled-in list.
            .use_preconfigured_tls(trust.client_config()?)
            // RFC 6749 §3.2: the token endpoint does not redirect; following one could leak
            // the client secret to another host.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TOKEN_REQUEST_TIMEOUT)
            .connect_timeout(TOKEN_CONNECT_TIMEOUT)
            .build()
            .map_err(std::io::Error::other)?;
        let http = CappedClient(http);
        let me_url = cfg
            .api_url
            .join("v1/me")
            .map_err(|e| std::io::Error::other(format!("spotify.api_url: {e}")))?;
        Ok(TokenEndpoint {
            home: crate::runtime::io_home()?,
            me_url,
            token_url: token_at,
            http,
            login,
            app,
            flow: cfg.flow,
            show_dialog: cfg.show_dialog,
            accounts_host: host_of(&cfg.accounts_url),
            api_host: host_of(&cfg.api_url),
            accounts_proxied: proxied(outbound, &cfg.accounts_url),
            api_proxied: proxied(outbound, &cfg.api_url),
            metrics,
        })
    }

    /// The authorize URL for a new login (RFC 6749 §4.1.1, RFC 7636 §4.3 under PKCE).
    pub fn authorize(&self, scopes: &[String]) -> AuthorizeRequest {
        let mut req = self.login.authorize_url(CsrfToken::new_random);
        for s in scopes {
            req = req.add_scope(Scope::new(s.clone()));
        }
        if self.show_dialog {
            req = req.add_extra_param("show_dialog", "true");
        }
        let mut verifier = None;
        if self.flow == Flow::Pkce {
            let (challenge, v) = PkceCodeChallenge::new_random_sha256();
            req = req.set_pkce_challenge(challenge);
            verifier = Some(PkceVerifier::new(v.secret().as_str()));
        }
        let (url, state) = req.url();
        AuthorizeRequest {
            url,
            state: CsrfState::new(state.secret().as_str()),
            pkce_verifier: verifier,
        }
    }

    /// RFC 6749 §4.4: the app's own token.
    pub async fn client_credentials(&self) -> Result<Grant, TokenError> {
        let Some(client) = self.app.clone() else {
            return Err(TokenError::Rejected(Refusal::NoClientSecret));
        };
        let http = self.http.clone();
        self.on_home(async move {
            client
                .exchange_client_credentials()
                .request_async(&http)
                .await
        })
        .await
    }

    /// RFC 6749 §4.1.3 (+ RFC 7636 §4.5 `code_verifier` under PKCE).
    pub async fn exchange_code(
        &self,
        code: AuthorizationCode,
        pkce_verifier: Option<PkceVerifier>,
    ) -> Result<Grant, TokenError> {
        let client = self.login.clone();
        let http = self.http.clone();
        let span = spans::token_request(&self.token_url, "authorization_code");
        let grant = self
            .on_home(async move {
                let mut req =
                    client.exchange_code(oauth2::AuthorizationCode::new(code.expose().to_string()));
                if let Some(v) = pkce_verifier {
                    req = req.set_pkce_verifier(PkceCodeVerifier::new(v.expose().to_string()));
                }
                req.request_async(&http).await
            })
            .await;
        spans::token_answer(span, &grant);
        grant
    }

    /// RFC 6749 §6. Under PKCE Spotify rotates the refresh token (single-use).
    pub async fn refresh(&self, refresh_token: &RefreshToken) -> Result<Grant, TokenError> {
        let client = self.login.clone();
        let http = self.http.clone();
        let token = oauth2::RefreshToken::new(refresh_token.expose().to_string());
        let span = spans::token_request(&self.token_url, "refresh_token");
        let grant = self
            .on_home(async move {
                client
                    .exchange_refresh_token(&token)
                    .request_async(&http)
                    .await
            })
            .await;
        spans::token_answer(span, &grant);
        grant
    }

    /// `GET /v1/me` with a fresh user token: who just logged in.
    pub async fn profile(&self, access_token: &AccessToken) -> Result<Profile, ProfileError> {
        let http = self.http.clone();
        let url = self.me_url.clone();
        let token = access_token.expose().to_string();
        let span = spans::profile_request(&url);
        let answer = self
            .home
            .spawn(async move {
                let resp = http.0.get(url).bearer_auth(token).send().await?;
                let status = resp.status();
                let body = read_capped(resp).await?;
                Ok::<_, http_client::HttpError>((status, body))
            })
            .await
            .map_err(|e| TokenError::Unavailable(format!("profile task failed: {e}")))?;
        let answer = answer
            .map_err(|e| transport(&e, &self.api_host, self.api_proxied))
            .inspect_err(|e| self.report_tls(TlsTarget::Api, e));
        if let Some(span) = span {
            match &answer {
                Ok((status, _)) => span.end_http(status.as_u16(), None),
                Err(_) => span.end_http(0, Some("unavailable")),
            }
        }
        let (status, body) = answer?;
        if status == reqwest::StatusCode::FORBIDDEN {
            return Err(ProfileError::NotRegistered);
        }
        if !status.is_success() {
            return Err(TokenError::Unavailable(format!("GET /v1/me answered {status}")).into());
        }
        serde_json::from_slice(&body)
            .map_err(|e| TokenError::Unavailable(format!("unreadable /v1/me answer: {e}")).into())
    }

    async fn on_home<F>(&self, call: F) -> Result<Grant, TokenError>
    where
        F: Future<
                Output = Result<
                    BasicTokenResponse,
                    RequestTokenError<http_client::HttpError, oauth2::basic::BasicErrorResponse>,
                >,
            > + Send
            + 'static,
    {
        let started = std::time::Instant::now();
        let answer = self
            .home
            .spawn(call)
            .await
            .map_err(|e| TokenError::Unavailable(format!("token task failed: {e}")))?;
        self.metrics
            .token_request_duration
            .observe(started.elapsed().as_secs_f64());
        answer
            .map(grant_from)
            .map_err(|e| classify(e, &self.accounts_host, self.accounts_proxied))
            .inspect_err(|e| self.report_tls(TlsTarget::Accounts, e))
    }

    /// Counts and logs a TLS failure (`tls_roots::report`); other errors are the caller's to log.
    fn report_tls(&self, target: TlsTarget, e: &TokenError) {
        if let TokenError::Tls { host, reason } = e {
            tls_roots::report(&self.metrics, target, host, *reason);
        }
    }
}

/// Whether requests to `url` go through the outbound proxy.
fn proxied(outbound: &Outbound, url: &Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    outbound
        .tunnel_to(host, url.port_or_known_default().unwrap_or(443))
        .is_some()
}

/// `host` or `host:port` of `url`, as TLS failures name it.
fn host_of(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

fn grant_from(t: BasicTokenResponse) -> Grant {
    // Spotify always sends expires_in (3600); assume that if it is missing.
    let lifetime = t.expires_in().unwrap_or(Duration::from_secs(3600));
    Grant {
        access_token: AccessToken::new(t.access_token().secret().as_str()),
        expires_at_ms: now_ms() + lifetime.as_millis() as u64,
        lifetime,
        refresh_token: t
            .refresh_token()
            .map(|r| RefreshToken::new(r.secret().as_str())),
        scopes: t
            .scopes()
            .map(|s| s.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default(),
    }
}
