//! The wiring: what every listener shares — the validated config and its live part, metrics,
//! the token sources, the sessions and the lifecycle flags — built once from the config.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::config::{AccessConfig, Config, EgressConfig, ForwardAuthConfig, PlaybackConfig};
use crate::crypto::Keyring;
use crate::events::{Events, Webhooks};
use crate::net::outbound::Outbound;
use crate::net::tls_roots::Trust;
use crate::oauth::TokenEndpoint;
use crate::quota::{Budget, CoolDown, SharedAnswers};
use crate::server::errors::{ReloadError, StartError};
use crate::server::reload::{self, Report};
use crate::session::Sessions;
use crate::store;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::traces::Traces;
use crate::tokens::app::AppTokens;
use crate::tokens::UserTokens;

/// The settings SIGHUP changes without new listeners (`reload` decides which keys these are).
#[derive(Clone, Debug, PartialEq)]
pub struct Live {
    /// Scopes asked for by new logins.
    pub scopes: Vec<String>,
    pub public_paths: Vec<String>,
    pub log_level: String,
    pub log_user_id: bool,
    /// The egress rules: app token, trusted header, timeouts, retries.
    pub egress: EgressConfig,
    /// Forward-auth's allowed hosts and trusted proxies; `None`: `/auth/check` is off.
    pub forward_auth: Option<ForwardAuthConfig>,
    /// Who may sign in (`[access]`), checked at each login callback.
    pub access: AccessConfig,
    /// `[admin]` token: the admin API's bearer token; `None`: the API is off.
    pub admin_token: Option<crate::secret::Secret>,
    /// `[playback]`: whether `/auth/playback-token` answers, and its rate per session.
    pub playback: PlaybackConfig,
}

impl Live {
    fn of(config: &Config) -> Live {
        Live {
            scopes: config.spotify.scopes.clone(),
            public_paths: config
                .upstream
                .as_ref()
                .map(|u| u.public_paths.clone())
                .unwrap_or_default(),
            log_level: config.server.log_level.clone(),
            log_user_id: config.server.log_user_id,
            egress: config.egress.clone(),
            forward_auth: config.forward_auth.clone(),
            access: config.access.clone(),
            admin_token: config.admin.token.clone(),
            playback: config.playback.clone(),
        }
    }
}

pub struct Gateway {
    /// The config the process started with. Listeners, store and Spotify settings come
    /// from here; see `live()` for what a reload changes.
    pub config: Config,
    /// Where the config came from, for SIGHUP; `None` for the built-in demo config.
    pub config_path: Option<PathBuf>,
    live: RwLock<Arc<Live>>,
    pub metrics: Arc<Metrics>,
    /// The roots both clients to Spotify trust (`trust`).
    pub trust: Arc<Trust>,
    /// Direct, or the CONNECT proxy both clients to Spotify go through (`outbound`).
    pub outbound: Outbound,
    pub token_endpoint: Arc<TokenEndpoint>,
    pub app_tokens: AppTokens,
    /// Users' tokens, refreshed over `sessions`' records.
    pub user_tokens: Arc<UserTokens>,
    pub sessions: Arc<Sessions>,
    /// Audit events: the `audit` log target, the metrics and `[[webhooks]]`.
    pub events: Arc<Events>,
    /// After Spotify's 429, no call from any replica until `Retry-After` has passed.
    pub cool_down: Arc<CoolDown>,
    /// `egress.budget_per_30s`: calls to Spotify per rolling 30 s, shared on Redis.
    pub budget: Option<Arc<Budget>>,
    /// The egress's cache and calls in flight; `sessions` purges a user's when the user leaves.
    pub answers: Arc<SharedAnswers>,
    /// `[tracing]`: the request spans and their exporter.
    pub traces: Traces,
    /// Set once the public and egress listeners accept connections.
    listening: AtomicBool,
    /// Set when SIGTERM arrives: `/readyz` fails from then on.
    shutting_down: AtomicBool,
}

impl Gateway {
    pub fn new(config: Config, config_path: Option<PathBuf>) -> Result<Arc<Gateway>, StartError> {
        let metrics = Arc::new(Metrics::new());
        let trust =
            Arc::new(Trust::load(config.spotify.ca_file.as_ref()).map_err(StartError::Clients)?);
        let outbound = Outbound::new(config.spotify.proxy.as_ref());
        if let Some(url) = outbound.proxy_url() {
            tracing::info!(proxy = %url, "connecting to Spotify through this proxy");
        }
        let token_endpoint = Arc::new(
            TokenEndpoint::new(&config.spotify, &trust, &outbound, metrics.clone())
                .map_err(StartError::Clients)?,
        );
        let app_tokens = AppTokens::new(token_endpoint.clone(), metrics.clone());
        let store = store::open(&config.store, metrics.clone())?;
        let keys = Keyring::new(
            &config.session.secret,
            config.session.previous_secret.as_ref(),
        );
        let webhooks = Webhooks::start(&config.webhooks, &metrics).map_err(StartError::Clients)?;
        let events = Arc::new(Events::new(
            &keys,
            config.server.log_user_id,
            metrics.clone(),
            webhooks,
        ));
        let cool_down = CoolDown::new(Arc::clone(&store), metrics.clone());
        let budget = config
            .egress
            .budget_per_30s
            .map(|limit| Budget::new(limit, Arc::clone(&store), metrics.clone()));
        let answers = Arc::new(SharedAnswers::new(config.egress.cache_size));
        let sessions = Arc::new(Sessions::new(
            store,
            Arc::clone(&answers),
            keys,
            config.session.lifetime,
            config.session.reauth_after,
            metrics.clone(),
            events.clone(),
        ));
        let user_tokens = Arc::new(UserTokens::new(
            token_endpoint.clone(),
            Arc::clone(&sessions),
            metrics.clone(),
            events.clone(),
        ));
        let traces =
            Traces::start(&config.tracing, metrics.clone()).map_err(StartError::Clients)?;
        Ok(Arc::new(Gateway {
            live: RwLock::new(Arc::new(Live::of(&config))),
            config,
            config_path,
            metrics,
            trust,
            outbound,
            token_endpoint,
            app_tokens,
            user_tokens,
            sessions,
            events,
            cool_down,
            budget,
            answers,
            traces,
            listening: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
        }))
    }

    /// The current reloadable settings.
    pub fn live(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Re-reads the config file (SIGHUP), applies what can change without new listeners and
    /// names what waits for a restart (`reload::diff`). A bad file changes nothing; the error
    /// says why.
    pub fn reload(&self) -> Result<Report, ReloadError> {
        let path = self.config_path.as_ref().ok_or(ReloadError::NoConfigFile)?;
        let new = Config::load(path)?;
        let changes = reload::diff(&self.config, &new);
        let live = Live::of(&new);
        if live.log_level != self.live().log_level {
            crate::telemetry::logging::set_level(&live.log_level).map_err(ReloadError::LogLevel)?;
        }
        let keys_changed = changes
            .iter()
            .any(|c| c.key == "session.secret" || c.key == "session.previous_secret");
        let new_keys = keys_changed
            .then(|| Keyring::new(&new.session.secret, new.session.previous_secret.as_ref()));
        self.events.reconfigure(live.log_user_id, new_keys.as_ref());
        self.traces.apply(&new.tracing);
        if let Some(keys) = new_keys {
            self.sessions.set_keys(keys);
        }
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(live);
        Ok(Report::from_changes(&changes))
    }

    /// Absolute URL of `/auth/login` on the public listener (from the redirect URI's origin).
    pub fn login_url(&self, return_to: Option<&str>) -> String {
        let mut url = self.config.spotify.redirect_uri.clone();
        url.set_path("/auth/login");
        url.set_query(None);
        if let Some(r) = return_to {
            url.query_pairs_mut().append_pair("return_to", r);
        }
        url.to_string()
    }

    pub fn mark_listening(&self) {
        self.listening.store(true, Ordering::SeqCst);
    }

    /// Listening, not shutting down; the store is checked separately.
    pub fn is_serving(&self) -> bool {
        self.listening.load(Ordering::SeqCst) && !self.is_shutting_down()
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}
