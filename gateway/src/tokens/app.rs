//! The app's own token (client-credentials flow, RFC 6749 §4.4), for egress calls that carry no
//! user. Cached, refreshed before it expires, and fetched by exactly one request when many
//! arrive at once.

use std::sync::{Arc, RwLock};

use crate::oauth::{Grant, TokenEndpoint, TokenError};
use crate::telemetry::metrics::Metrics;
use crate::tokens::failure_hold::FailureHold;

pub struct AppTokens {
    /// The app's name (the `app` label of its counters).
    app: String,
    endpoint: Arc<TokenEndpoint>,
    current: RwLock<Option<Arc<Grant>>>,
    /// Held by the one caller that fetches.
    fetch: tokio::sync::Mutex<()>,
    /// After a failed fetch, callers get the same error at once until its hold passes (a
    /// backoff) instead of queueing another request to an endpoint that just failed.
    failure: FailureHold<TokenError>,
    metrics: Arc<Metrics>,
}

impl AppTokens {
    /// The app token of the app `app` (the `app` label of its counters).
    pub fn new(endpoint: Arc<TokenEndpoint>, metrics: Arc<Metrics>, app: &str) -> AppTokens {
        AppTokens {
            app: app.to_string(),
            endpoint,
            current: RwLock::new(None),
            fetch: tokio::sync::Mutex::new(()),
            failure: FailureHold::default(),
            metrics,
        }
    }

    /// A token that is valid for at least the refresh margin.
    pub async fn get(&self) -> Result<Arc<Grant>, TokenError> {
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        if let Some(e) = self.failure.held() {
            return Err(e);
        }
        let _fetching = self.fetch.lock().await;
        // Whoever held the lock before us may have fetched, or failed, already.
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        if let Some(e) = self.failure.held() {
            return Err(e);
        }
        match self.endpoint.client_credentials().await {
            Ok(grant) => {
                self.count_fetch("ok");
                let grant = Arc::new(grant);
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(grant.clone());
                self.failure.clear();
                tracing::debug!(lifetime_s = grant.lifetime.as_secs(), "fetched app token");
                Ok(grant)
            }
            Err(e) => {
                self.count_fetch("error");
                tracing::warn!(error = %e, "could not fetch the app token");
                self.failure.fail(e.clone());
                Err(e)
            }
        }
    }

    /// Counts a fetch by result (`app_token_fetches_total{app,result}`).
    fn count_fetch(&self, result: &str) {
        self.metrics
            .app_token_fetches
            .with_label_values(&[&self.app, result])
            .inc();
    }

    /// Drops `token` after Spotify refused it, so the next call fetches a new one.
    pub fn invalidate(&self, token: &Grant) {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if current
            .as_ref()
            .is_some_and(|c| c.access_token == token.access_token)
        {
            *current = None;
        }
    }

    fn fresh(&self) -> Option<Arc<Grant>> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        current
            .as_ref()
            .filter(|g| super::is_fresh(g.expires_at_ms, g.lifetime))
            .cloned()
    }
}
