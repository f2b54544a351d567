//! What every listener shares: the validated config, metrics, token sources, sessions and
//! lifecycle.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::oauth::TokenEndpoint;
use crate::session::crypto::Keyring;
use crate::session::{store, Sessions};
use crate::tokens::app::AppTokens;

/// The settings SIGHUP may change without new listeners.
#[derive(Clone, Debug, PartialEq)]
pub struct Live {
    /// Scopes asked for by new logins.
    pub scopes: Vec<String>,
    pub public_paths: Vec<String>,
    pub log_level: String,
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
    pub token_endpoint: Arc<TokenEndpoint>,
    pub app_tokens: AppTokens,
    pub sessions: Sessions,
    /// Set once the public and egress listeners accept connections.
    listening: AtomicBool,
    /// Set when SIGTERM arrives: `/readyz` fails from then on.
    shutting_down: AtomicBool,
}

impl Gateway {
    pub fn new(config: Config, config_path: Option<PathBuf>) -> std::io::Result<Arc<Gateway>> {
        let metrics = Arc::new(Metrics::new());
        let token_endpoint = Arc::new(TokenEndpoint::new(&config.spotify, metrics.clone())?);
        let app_tokens = AppTokens::new(token_endpoint.clone(), metrics.clone());
        let store = store::open(&config.store, metrics.clone()).map_err(std::io::Error::other)?;
        let keys = Keyring::new(
            &config.session.secret,
            config.session.previous_secret.as_ref(),
        );
        let sessions = Sessions::new(
            store,
            keys,
            token_endpoint.clone(),
            config.session.lifetime,
            metrics.clone(),
        );
        Ok(Arc::new(Gateway {
            live: RwLock::new(Arc::new(Live::of(&config))),
            config,
            config_path,
            metrics,
            token_endpoint,
            app_tokens,
            sessions,
            listening: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
        }))
    }

    /// The current reloadable settings.
    pub fn live(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Re-reads the config file (SIGHUP) and applies what can change without new listeners.
    /// A bad file changes nothing; the error says why.
    pub fn reload(&self) -> Result<Vec<String>, String> {
        let path = self
            .config_path
            .as_ref()
            .ok_or("this gateway runs the built-in demo config; nothing to reload")?;
        let new = Config::load(path).map_err(|e| e.to_string())?;
        let mut notes = Vec::new();
        let old = &self.config;
        let restart_needed = [
            (
                "listen",
                format!("{:?}", old.listen) != format!("{:?}", new.listen),
            ),
            (
                "store",
                format!("{:?}", old.store) != format!("{:?}", new.store),
            ),
            (
                "upstream.url",
                old.upstream.as_ref().map(|u| &u.url) != new.upstream.as_ref().map(|u| &u.url),
            ),
            (
                "spotify.client_id",
                old.spotify.client_id != new.spotify.client_id,
            ),
            ("spotify.flow", old.spotify.flow != new.spotify.flow),
            (
                "spotify.redirect_uri",
                old.spotify.redirect_uri != new.spotify.redirect_uri,
            ),
            (
                "spotify.accounts_url",
                old.spotify.accounts_url != new.spotify.accounts_url,
            ),
            (
                "spotify.api_url",
                old.spotify.api_url != new.spotify.api_url,
            ),
        ];
        for (key, changed) in restart_needed {
            if changed {
                notes.push(format!("{key} changed: it takes effect after a restart"));
            }
        }
        let live = Live::of(&new);
        if live.log_level != self.live().log_level {
            crate::logging::set_level(&live.log_level)?;
        }
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(live);
        Ok(notes)
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
