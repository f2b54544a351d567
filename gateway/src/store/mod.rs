//! Where sessions, tokens and pending logins persist: the contract (`api`), three backends
//! (`memory`, `file` on redb, `redis` for several replicas: one server, Sentinel or Cluster),
//! and the one factory that picks a
//! backend from the config and counts its operations.

mod api;
mod file;
mod health;
mod memory;
mod redis;
mod scoped;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

pub use self::redis::RedisStore;
pub use api::{
    CoolDownNotice, Invalidation, LocalCalls, Namespace, PurgeNotice, Store, StoreError,
    StoreErrorKind, StoreResult, UsersPage,
};
pub use file::{FileStore, FILE_CACHE_BYTES, FREE_SPACE_RESERVE};
pub use memory::MemoryStore;
pub use scoped::Scopes;

use crate::config::StoreConfig;
use crate::telemetry::metrics::Metrics;

/// Opens the configured backend, counting its operations and errors in `metrics` (with an
/// empty `app` label: the process's own operations).
pub fn open(cfg: &StoreConfig, metrics: Arc<Metrics>) -> StoreResult<Arc<dyn Store>> {
    let backend = open_backend(cfg, &metrics)?;
    Ok(instrumented(backend, "", metrics))
}

/// `store`, its operations and errors counted in `metrics` under the label `app` (an app's
/// view, `Scopes`, or `""` for the process's own).
pub fn instrumented(store: Arc<dyn Store>, app: &str, metrics: Arc<Metrics>) -> Arc<dyn Store> {
    Arc::new(Instrumented {
        inner: store,
        app: app.to_string(),
        metrics,
        health: health::Health::default(),
    })
}

/// Opens the configured backend, uncounted: [`instrumented`] counts each view of it.
pub fn open_backend(cfg: &StoreConfig, metrics: &Arc<Metrics>) -> StoreResult<Arc<dyn Store>> {
    Ok(match cfg {
        StoreConfig::Memory => Arc::new(MemoryStore::default()),
        StoreConfig::File { path } => {
            let store = FileStore::open(path)?;
            let reopens = metrics.store_reopens.clone();
            store.on_reopen(move |opened| {
                let result = if opened { "ok" } else { "failed" };
                reopens.with_label_values(&[result]).inc();
            });
            Arc::new(store)
        }
        StoreConfig::Redis(redis) => Arc::new(RedisStore::connect(redis, metrics.clone())?),
    })
}

/// Counts every operation (`store_operations_total{app,backend,op}`) and failure
/// (`store_errors_total{app,backend,kind}`) of the store it wraps, and keeps what they say of
/// its health (`health.rs`, `Store::troubled_since`).
struct Instrumented {
    inner: Arc<dyn Store>,
    app: String,
    metrics: Arc<Metrics>,
    health: health::Health,
}

impl Instrumented {
    /// `work`, its outcome told to `health`, in a `store` span while a traced request (or a
    /// token refresh) is current: two attributes, its backend and operation `op`, nothing of
    /// its keys or values.
    async fn timed_raw<T>(
        &self,
        op: &'static str,
        work: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        let span = crate::telemetry::traces::child_of_current("store");
        let underway = self.health.begin();
        let result = work.await;
        underway.done(&result);
        if let Some(span) = span {
            span.set([
                opentelemetry::KeyValue::new("gateway.store.backend", self.inner.backend()),
                opentelemetry::KeyValue::new("gateway.store.op", op),
            ]);
            span.end(result.as_ref().err().map(|e| e.kind.label()));
        }
        result
    }

    /// `work`, its outcome told to `health`, traced and counted as `op`.
    async fn timed<T>(
        &self,
        op: &'static str,
        work: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        let result = self.timed_raw(op, work).await;
        self.count(op, result)
    }

    fn count<T>(&self, op: &str, result: StoreResult<T>) -> StoreResult<T> {
        let backend = self.inner.backend();
        self.metrics
            .store_operations
            .with_label_values(&[&self.app, backend, op])
            .inc();
        if let Err(e) = &result {
            self.metrics
                .store_errors
                .with_label_values(&[&self.app, backend, e.kind.label()])
                .inc();
        }
        result
    }
}

#[async_trait]
impl Store for Instrumented {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn troubled_since(&self, since: Instant) -> bool {
        self.health.troubled_since(since)
    }
    async fn get(&self, ns: Namespace, key: &str) -> StoreResult<Option<Vec<u8>>> {
        self.timed("get", self.inner.get(ns, key)).await
    }
    async fn put(
        &self,
        ns: Namespace,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> StoreResult<()> {
        self.timed("put", self.inner.put(ns, key, value, ttl)).await
    }
    async fn delete(&self, ns: Namespace, key: &str) -> StoreResult<bool> {
        self.timed("delete", self.inner.delete(ns, key)).await
    }
    async fn take(&self, ns: Namespace, key: &str) -> StoreResult<Option<Vec<u8>>> {
        self.timed("take", self.inner.take(ns, key)).await
    }
    async fn purge_expired(&self) -> StoreResult<usize> {
        // Not told to `health`: Redis expires keys itself, so its purge succeeds without
        // asking it, and would make a store that hangs look as if it answered.
        self.count("purge", self.inner.purge_expired().await)
    }
    async fn count(&self, ns: Namespace) -> StoreResult<usize> {
        let result = self.timed_raw("count", self.inner.count(ns)).await;
        Instrumented::count(self, "count", result)
    }
    async fn ping(&self) -> StoreResult<()> {
        self.timed("ping", self.inner.ping()).await
    }
    async fn add_user_session(&self, user_id: &str, key: &str, ttl: Duration) -> StoreResult<()> {
        let result = self
            .timed_raw("index_add", self.inner.add_user_session(user_id, key, ttl))
            .await;
        self.count("index_add", result)
    }
    async fn user_sessions(&self, user_id: &str) -> StoreResult<Vec<String>> {
        self.timed("index_read", self.inner.user_sessions(user_id))
            .await
    }
    async fn remove_user_session(&self, user_id: &str, key: &str) -> StoreResult<bool> {
        let result = self
            .timed_raw("index_remove", self.inner.remove_user_session(user_id, key))
            .await;
        self.count("index_remove", result)
    }
    async fn users_page(&self, after: Option<&str>, limit: usize) -> StoreResult<UsersPage> {
        self.timed("index_list", self.inner.users_page(after, limit))
            .await
    }
    async fn lock(&self, name: &str, owner: &str, ttl: Duration) -> StoreResult<bool> {
        self.timed("lock", self.inner.lock(name, owner, ttl)).await
    }
    async fn unlock(&self, name: &str, owner: &str) -> StoreResult<()> {
        self.timed("unlock", self.inner.unlock(name, owner)).await
    }
    async fn publish_invalidation(&self, key: &str) -> StoreResult<()> {
        self.timed("publish", self.inner.publish_invalidation(key))
            .await
    }
    async fn publish_purge(&self, notice: &PurgeNotice) -> StoreResult<()> {
        self.timed("publish", self.inner.publish_purge(notice))
            .await
    }
    fn invalidations(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Invalidation>> {
        self.inner.invalidations()
    }
    async fn publish_cool_down(&self, notice: CoolDownNotice) -> StoreResult<()> {
        self.timed("publish", self.inner.publish_cool_down(notice))
            .await
    }
    fn cool_downs(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<CoolDownNotice>> {
        self.inner.cool_downs()
    }
    async fn take_budget(
        &self,
        account: Option<&str>,
        limit: u32,
        app_limit: Option<u32>,
        window: Duration,
    ) -> StoreResult<Option<Option<Duration>>> {
        let underway = self.health.begin();
        let result = self
            .inner
            .take_budget(account, limit, app_limit, window)
            .await;
        match result {
            // Not shared: no operation to count, nothing asked of the store to tell `health`.
            Ok(None) => Ok(None),
            counted => {
                underway.done(&counted);
                self.count("budget", counted)
            }
        }
    }
    async fn add_budget_calls(
        &self,
        account: Option<&str>,
        calls: &LocalCalls,
        window: Duration,
    ) -> StoreResult<()> {
        let result = self
            .timed_raw(
                "budget",
                self.inner.add_budget_calls(account, calls, window),
            )
            .await;
        self.count("budget", result)
    }
}
