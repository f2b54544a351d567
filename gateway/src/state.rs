//! What every listener shares: the validated config, metrics, token sources, sessions and
//! lifecycle.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::oauth::TokenEndpoint;
use crate::session::crypto::Keyring;
use crate::session::{store, Sessions};
use crate::tokens::app::AppTokens;

pub struct Gateway {
    pub config: Config,
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
    pub fn new(config: Config) -> std::io::Result<Arc<Gateway>> {
        let metrics = Arc::new(Metrics::new());
        let token_endpoint = Arc::new(TokenEndpoint::new(&config.spotify, metrics.clone())?);
        let app_tokens = AppTokens::new(token_endpoint.clone(), metrics.clone());
        let store = store::open(&config.store).map_err(std::io::Error::other)?;
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
            config,
            metrics,
            token_endpoint,
            app_tokens,
            sessions,
            listening: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
        }))
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
