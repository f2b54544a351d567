//! What every listener shares: the validated config, metrics, token sources and lifecycle.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::oauth::TokenEndpoint;
use crate::tokens::app::AppTokens;

pub struct Gateway {
    pub config: Config,
    pub metrics: Arc<Metrics>,
    pub token_endpoint: Arc<TokenEndpoint>,
    pub app_tokens: AppTokens,
    /// Set when SIGTERM arrives: `/readyz` fails from then on.
    shutting_down: AtomicBool,
}

impl Gateway {
    pub fn new(config: Config) -> std::io::Result<Arc<Gateway>> {
        let metrics = Arc::new(Metrics::new());
        let token_endpoint = Arc::new(TokenEndpoint::new(&config.spotify, metrics.clone())?);
        let app_tokens = AppTokens::new(token_endpoint.clone(), metrics.clone());
        Ok(Arc::new(Gateway {
            config,
            metrics,
            token_endpoint,
            app_tokens,
            shutting_down: AtomicBool::new(false),
        }))
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}
