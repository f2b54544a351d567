//! The wiring of one app: what every listener uses for it — the validated config and the
//! app's live part, metrics, the token sources, the sessions and the lifecycle flags — built
//! once from the config. A config of several apps has one `Gateway` each (`server::apps`),
//! sharing the metrics, the store and the audit events.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::config::{
    AccessConfig, AppConfig, Config, EgressConfig, ForwardAuthConfig, PlaybackConfig,
};
use crate::crypto::Keyring;
use crate::events::Events;
use crate::net::api_connection::ApiConnection;
use crate::net::outbound::Outbound;
use crate::net::tls_roots::Trust;
use crate::oauth::TokenEndpoint;
use crate::quota::{AccountHold, Budget, CoolDown, SharedAnswers};
use crate::server::errors::StartError;
use crate::server::reload::Change;
use crate::session::Sessions;
use crate::store::Store;
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
    fn of(config: &Config, app: &AppConfig) -> Live {
        Live {
            scopes: app.spotify.scopes.clone(),
            public_paths: app
                .upstream
                .as_ref()
                .map(|u| u.public_paths.clone())
                .unwrap_or_default(),
            log_level: config.server.log_level.clone(),
            log_user_id: config.server.log_user_id,
            egress: config.egress.clone(),
            forward_auth: config.forward_auth.clone(),
            access: app.access.clone(),
            admin_token: config.admin.token.clone(),
            playback: config.playback.clone(),
        }
    }
}

/// What the apps of one process share, made once (`server::apps`).
pub struct Shared {
    pub metrics: Arc<Metrics>,
    /// `[tracing]`: one tracer and exporter for every app's spans.
    pub traces: Arc<Traces>,
}

/// What the apps of one developer account share: Spotify counts its quota for all of them.
pub struct Account {
    /// `QUOTA_EXCEEDED` holds every app of the account.
    pub hold: Arc<AccountHold>,
    /// `egress.budget_per_30s`, spent by all of its apps together.
    pub budget: Option<Arc<Budget>>,
}

pub struct Gateway {
    /// The config the process started with. Listeners, store and Spotify settings come
    /// from here; see `live()` for what a reload changes.
    pub config: Config,
    /// The app this gateway serves: its `[spotify]`, hosts, `[upstream]` and `[access]`.
    pub app: AppConfig,
    /// The name its pages show: `server.app_name`, and with several apps the app's name
    /// after it, so that a sign-out or a disconnect says which app it was.
    pub page_name: String,
    /// Where the config came from, for SIGHUP; `None` for the built-in demo config.
    pub config_path: Option<PathBuf>,
    live: RwLock<Arc<Live>>,
    pub metrics: Arc<Metrics>,
    /// The roots both clients to Spotify trust (`trust`).
    pub trust: Arc<Trust>,
    /// Direct, or the CONNECT proxy both clients to Spotify go through (`outbound`).
    pub outbound: Outbound,
    /// The HTTP/2 connection to the API that calls share, warmed by the lifecycle.
    pub api_connection: Arc<ApiConnection>,
    pub token_endpoint: Arc<TokenEndpoint>,
    pub app_tokens: AppTokens,
    /// Users' tokens, refreshed over `sessions`' records.
    pub user_tokens: Arc<UserTokens>,
    pub sessions: Arc<Sessions>,
    /// Audit events (naming this app): the `audit` log target, the metrics and `[[webhooks]]`.
    pub events: Arc<Events>,
    /// After Spotify's 429, no call of this app (of its developer account, after
    /// `QUOTA_EXCEEDED`) from any replica until `Retry-After` has passed.
    pub cool_down: Arc<CoolDown>,
    /// `egress.budget_per_30s`: calls to Spotify per rolling 30 s, shared by the apps of the
    /// developer account, and on Redis by every replica.
    pub budget: Option<Arc<Budget>>,
    /// The egress's cache and calls in flight; `sessions` purges a user's when the user leaves.
    pub answers: Arc<SharedAnswers>,
    /// `[tracing]`: the request spans and their exporter.
    pub traces: Arc<Traces>,
    /// Set once the public and egress listeners accept connections.
    listening: AtomicBool,
    /// Set when SIGTERM arrives: `/readyz` fails from then on.
    shutting_down: AtomicBool,
}

impl Gateway {
    /// The gateway of `app` (one of `config.apps`), over `store`, the app's view of the
    /// store (`store::Scopes`).
    pub fn for_app(
        config: &Config,
        app: &AppConfig,
        config_path: Option<PathBuf>,
        store: Arc<dyn Store>,
        shared: &Shared,
        account: &Account,
        events: Arc<Events>,
    ) -> Result<Arc<Gateway>, StartError> {
        let metrics = Arc::clone(&shared.metrics);
        let trust =
            Arc::new(Trust::load(app.spotify.ca_file.as_ref()).map_err(StartError::Clients)?);
        let outbound = Outbound::new(app.spotify.proxy.as_ref());
        if let Some(url) = outbound.proxy_url() {
            tracing::info!(app = %app.name, proxy = %url, "connecting to Spotify through this proxy");
        }
        let token_endpoint = Arc::new(
            TokenEndpoint::new(&app.spotify, &trust, &outbound, metrics.clone())
                .map_err(StartError::Clients)?,
        );
        let app_tokens = AppTokens::new(token_endpoint.clone(), metrics.clone(), &app.name);
        let keys = app_keys(config, app);
        let cool_down = CoolDown::of_account(
            Arc::clone(&store),
            metrics.clone(),
            &app.name,
            Arc::clone(&account.hold),
        );
        let budget = account.budget.clone();
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
        // ALPN offers h2 over TLS only (`UpstreamTarget::with_http2`).
        let api_connection = ApiConnection::new(app.spotify.api_url.scheme() == "https");
        let traces = Arc::clone(&shared.traces);
        Ok(Arc::new(Gateway {
            live: RwLock::new(Arc::new(Live::of(config, app))),
            page_name: match config.apps.len() {
                1 => config.server.app_name.clone(),
                _ => format!("{} ({})", config.server.app_name, app.name),
            },
            config: config.clone(),
            app: app.clone(),
            config_path,
            metrics,
            trust,
            outbound,
            api_connection,
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

    /// Takes a reloaded config (SIGHUP, `Apps::reload`): this app's live settings, and its
    /// keys when the session secret changed.
    pub(super) fn apply(&self, new: &Config, changes: &[Change]) {
        let Some(app) = new.apps.iter().find(|a| a.name == self.app.name) else {
            return;
        };
        let keys_changed = changes
            .iter()
            .any(|c| c.key == "session.secret" || c.key == "session.previous_secret");
        if keys_changed {
            self.sessions.set_keys(app_keys(new, app));
        }
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Live::of(new, app));
    }

    /// Absolute URL of `/auth/login` on the public listener (from the redirect URI's origin).
    pub fn login_url(&self, return_to: Option<&str>) -> String {
        let mut url = self.app.spotify.redirect_uri.clone();
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

/// The keys of `app`'s cookies, records and assertions; the default app's are the keys of the
/// gateway before `[[apps]]`.
fn app_keys(config: &Config, app: &AppConfig) -> Keyring {
    let name = (!app.is_default()).then_some(app.name.as_str());
    Keyring::for_app(
        &config.session.secret,
        config.session.previous_secret.as_ref(),
        name,
    )
}
