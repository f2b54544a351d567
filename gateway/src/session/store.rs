//! Where sessions, tokens and pending logins persist: one small trait, several backends.
//!
//! Values are opaque, already-sealed bytes (see `crypto`): a backend never sees a token in
//! clear. Every value has an expiry; reads ignore expired values and `purge_expired` removes
//! them.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::oauth::now_ms;

/// Kinds of records; each backend keeps them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Namespace {
    /// Session records (user, scopes, tokens), by hashed session id.
    Session,
    /// Logins between `/auth/login` and `/auth/callback`, by hashed state.
    Pending,
    /// Latest session of a user, by user id (for the trusted-header mode).
    UserIndex,
}

impl Namespace {
    pub const ALL: [Namespace; 3] = [Namespace::Session, Namespace::Pending, Namespace::UserIndex];

    pub fn name(self) -> &'static str {
        match self {
            Namespace::Session => "sessions",
            Namespace::Pending => "pending",
            Namespace::UserIndex => "user_index",
        }
    }
}

/// A change another replica made that this replica's memory cache must forget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// One session (store key) changed or ended.
    Key(String),
    /// Messages may have been missed (the subscription was down): forget everything.
    All,
}

#[derive(Debug, thiserror::Error)]
#[error("session store ({backend}) failed to {op}: {detail}")]
pub struct StoreError {
    pub backend: &'static str,
    pub op: &'static str,
    pub detail: String,
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Backend name for metrics and messages.
    fn backend(&self) -> &'static str;
    async fn get(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    async fn put(
        &self,
        ns: Namespace,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<(), StoreError>;
    /// Removes a value; true if it was there.
    async fn delete(&self, ns: Namespace, key: &str) -> Result<bool, StoreError>;
    /// Reads and removes a value in one step: at most one caller gets it (single-use logins).
    async fn take(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Removes expired values; returns how many.
    async fn purge_expired(&self) -> Result<usize, StoreError>;
    /// Live values in a namespace.
    async fn count(&self, ns: Namespace) -> Result<usize, StoreError>;
    /// Whether the store answers (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Takes the lock `name` for `ttl` unless another owner holds it; true when taken. A
    /// single-process store needs no lock across processes (the caller also holds a local
    /// one), so the default always succeeds.
    async fn lock(&self, _name: &str, _owner: &str, _ttl: Duration) -> Result<bool, StoreError> {
        Ok(true)
    }
    /// Releases the lock `name` if `owner` still holds it.
    async fn unlock(&self, _name: &str, _owner: &str) -> Result<(), StoreError> {
        Ok(())
    }
    /// Tells other replicas to forget their cached copy of `key`.
    async fn publish_invalidation(&self, _key: &str) -> Result<(), StoreError> {
        Ok(())
    }
    /// Invalidations published by other replicas; `Some` once for a shared store.
    fn invalidations(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Invalidation>> {
        None
    }
}

/// Opens the configured backend, counting its operations and errors in `metrics`.
/// redb's page cache for the `file` backend. redb's default is 1 GiB, which a sidecar with a
/// memory limit would reach as sessions accumulate; hot sessions are served from the
/// gateway's own cache in front of the store, so the store is read only on a miss.
pub const FILE_CACHE_BYTES: usize = 16 * 1024 * 1024;

pub fn open(
    cfg: &crate::config::StoreConfig,
    metrics: Arc<crate::metrics::Metrics>,
) -> Result<Arc<dyn Store>, StoreError> {
    let inner: Arc<dyn Store> = match cfg {
        crate::config::StoreConfig::Memory => Arc::new(MemoryStore::default()),
        crate::config::StoreConfig::File { path } => Arc::new(FileStore::open(path)?),
        crate::config::StoreConfig::Redis { url } => {
            Arc::new(super::redis_store::RedisStore::open(url)?)
        }
    };
    Ok(Arc::new(Instrumented { inner, metrics }))
}

/// Counts every operation (`store_operations_total{backend,op}`) and failure
/// (`store_errors_total{backend}`) of the store it wraps.
struct Instrumented {
    inner: Arc<dyn Store>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Instrumented {
    fn count<T>(&self, op: &str, result: Result<T, StoreError>) -> Result<T, StoreError> {
        let backend = self.inner.backend();
        self.metrics
            .store_operations
            .with_label_values(&[backend, op])
            .inc();
        if result.is_err() {
            self.metrics
                .store_errors
                .with_label_values(&[backend])
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
    async fn get(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.count("get", self.inner.get(ns, key).await)
    }
    async fn put(
        &self,
        ns: Namespace,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.count("put", self.inner.put(ns, key, value, ttl).await)
    }
    async fn delete(&self, ns: Namespace, key: &str) -> Result<bool, StoreError> {
        self.count("delete", self.inner.delete(ns, key).await)
    }
    async fn take(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.count("take", self.inner.take(ns, key).await)
    }
    async fn purge_expired(&self) -> Result<usize, StoreError> {
        self.count("purge", self.inner.purge_expired().await)
    }
    async fn count(&self, ns: Namespace) -> Result<usize, StoreError> {
        let result = self.inner.count(ns).await;
        Instrumented::count(self, "count", result)
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.count("ping", self.inner.ping().await)
    }
    async fn lock(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.count("lock", self.inner.lock(name, owner, ttl).await)
    }
    async fn unlock(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        self.count("unlock", self.inner.unlock(name, owner).await)
    }
    async fn publish_invalidation(&self, key: &str) -> Result<(), StoreError> {
        self.count("publish", self.inner.publish_invalidation(key).await)
    }
    fn invalidations(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Invalidation>> {
        self.inner.invalidations()
    }
}

/// Stored form: expiry (unix ms, big-endian) then the value.
fn frame(value: &[u8], ttl: Duration) -> Vec<u8> {
    let expires = now_ms().saturating_add(ttl.as_millis() as u64);
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&expires.to_be_bytes());
    out.extend_from_slice(value);
    out
}

/// The value of a framed record if it has not expired.
fn unframe(raw: &[u8]) -> Option<&[u8]> {
    let (head, value) = raw.split_at_checked(8)?;
    let expires = u64::from_be_bytes(head.try_into().ok()?);
    (expires > now_ms()).then_some(value)
}

// ---------------------------------------------------------------------------------------------
// memory
// ---------------------------------------------------------------------------------------------

/// In-process only: for tests and the demo. Nothing survives a restart.
#[derive(Default)]
pub struct MemoryStore {
    map: Mutex<HashMap<(Namespace, String), Vec<u8>>>,
}

impl MemoryStore {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(Namespace, String), Vec<u8>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }
    async fn get(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let map = self.map();
        Ok(map
            .get(&(ns, key.to_string()))
            .and_then(|raw| unframe(raw))
            .map(<[u8]>::to_vec))
    }
    async fn put(
        &self,
        ns: Namespace,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.map().insert((ns, key.to_string()), frame(&value, ttl));
        Ok(())
    }
    async fn delete(&self, ns: Namespace, key: &str) -> Result<bool, StoreError> {
        Ok(self.map().remove(&(ns, key.to_string())).is_some())
    }
    async fn take(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let raw = self.map().remove(&(ns, key.to_string()));
        Ok(raw.as_deref().and_then(unframe).map(<[u8]>::to_vec))
    }
    async fn purge_expired(&self) -> Result<usize, StoreError> {
        let mut map = self.map();
        let before = map.len();
        map.retain(|_, raw| unframe(raw).is_some());
        Ok(before - map.len())
    }
    async fn count(&self, ns: Namespace) -> Result<usize, StoreError> {
        let map = self.map();
        Ok(map
            .iter()
            .filter(|((n, _), raw)| *n == ns && unframe(raw).is_some())
            .count())
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// file (redb)
// ---------------------------------------------------------------------------------------------

/// The embedded default: a redb database file. Survives restarts; one process at a time
/// (redb locks the file), so several replicas need Redis.
pub struct FileStore {
    db: Arc<Database>,
}

fn table(ns: Namespace) -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(ns.name())
}

fn file_err(op: &'static str) -> impl Fn(&dyn std::fmt::Display) -> StoreError {
    move |e| StoreError {
        backend: "file",
        op,
        detail: e.to_string(),
    }
}

impl FileStore {
    pub fn open(path: &Path) -> Result<FileStore, StoreError> {
        let err = |e: &dyn std::fmt::Display| StoreError {
            backend: "file",
            op: "open",
            detail: format!(
                "{}: {e} (check that store.path is writable and that no other gateway \
                 process uses the same file)",
                path.display()
            ),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
        }
        let db = Database::builder()
            .set_cache_size(FILE_CACHE_BYTES)
            .create(path)
            .map_err(|e| err(&e))?;
        // Create every table once, so read transactions can always open them.
        let tx = db.begin_write().map_err(|e| err(&e))?;
        for ns in Namespace::ALL {
            tx.open_table(table(ns)).map_err(|e| err(&e))?;
        }
        tx.commit().map_err(|e| err(&e))?;
        Ok(FileStore { db: Arc::new(db) })
    }

    /// Runs blocking redb work off the async worker threads.
    async fn blocking<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| file_err(op)(&e))?
    }
}

#[async_trait]
impl Store for FileStore {
    fn backend(&self) -> &'static str {
        "file"
    }

    async fn get(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = key.to_string();
        self.blocking("read", move |db| {
            let e = file_err("read");
            let tx = db.begin_read().map_err(|x| e(&x))?;
            let t = tx.open_table(table(ns)).map_err(|x| e(&x))?;
            let raw = t.get(key.as_str()).map_err(|x| e(&x))?;
            Ok(raw.and_then(|v| unframe(v.value()).map(<[u8]>::to_vec)))
        })
        .await
    }

    async fn put(
        &self,
        ns: Namespace,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let key = key.to_string();
        self.blocking("write", move |db| {
            let e = file_err("write");
            let tx = db.begin_write().map_err(|x| e(&x))?;
            {
                let mut t = tx.open_table(table(ns)).map_err(|x| e(&x))?;
                t.insert(key.as_str(), frame(&value, ttl).as_slice())
                    .map_err(|x| e(&x))?;
            }
            tx.commit().map_err(|x| e(&x))
        })
        .await
    }

    async fn delete(&self, ns: Namespace, key: &str) -> Result<bool, StoreError> {
        let key = key.to_string();
        self.blocking("delete", move |db| {
            let e = file_err("delete");
            let tx = db.begin_write().map_err(|x| e(&x))?;
            let existed = {
                let mut t = tx.open_table(table(ns)).map_err(|x| e(&x))?;
                let removed = t.remove(key.as_str()).map_err(|x| e(&x))?;
                removed.is_some()
            };
            tx.commit().map_err(|x| e(&x))?;
            Ok(existed)
        })
        .await
    }

    async fn take(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = key.to_string();
        // One write transaction: redb serialises writers, so only one caller gets the value.
        self.blocking("take", move |db| {
            let e = file_err("take");
            let tx = db.begin_write().map_err(|x| e(&x))?;
            let value = {
                let mut t = tx.open_table(table(ns)).map_err(|x| e(&x))?;
                let removed = t.remove(key.as_str()).map_err(|x| e(&x))?;
                removed.and_then(|v| unframe(v.value()).map(<[u8]>::to_vec))
            };
            tx.commit().map_err(|x| e(&x))?;
            Ok(value)
        })
        .await
    }

    async fn purge_expired(&self) -> Result<usize, StoreError> {
        self.blocking("purge", move |db| {
            let e = file_err("purge");
            let tx = db.begin_write().map_err(|x| e(&x))?;
            let mut purged = 0;
            for ns in Namespace::ALL {
                let mut t = tx.open_table(table(ns)).map_err(|x| e(&x))?;
                let before = t.len().map_err(|x| e(&x))?;
                t.retain(|_, raw| unframe(raw).is_some())
                    .map_err(|x| e(&x))?;
                purged += (before - t.len().map_err(|x| e(&x))?) as usize;
            }
            tx.commit().map_err(|x| e(&x))?;
            Ok(purged)
        })
        .await
    }

    async fn count(&self, ns: Namespace) -> Result<usize, StoreError> {
        self.blocking("count", move |db| {
            let e = file_err("count");
            let tx = db.begin_read().map_err(|x| e(&x))?;
            let t = tx.open_table(table(ns)).map_err(|x| e(&x))?;
            let mut n = 0;
            for entry in t.iter().map_err(|x| e(&x))? {
                let (_, v) = entry.map_err(|x| e(&x))?;
                if unframe(v.value()).is_some() {
                    n += 1;
                }
            }
            Ok(n)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.blocking("read", |db| {
            db.begin_read()
                .map(|_| ())
                .map_err(|x| file_err("read")(&x))
        })
        .await
    }
}
