//! The embedded default backend: a redb database file. Survives restarts; one process at a
//! time (redb locks the file), so several replicas need Redis.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::api::{
    frame, unframe, Namespace, Store, StoreError, StoreErrorKind, StoreResult, UsersPage,
};
use crate::clock::now_ms;

/// redb's page cache for the `file` backend. redb's default is 1 GiB, which a sidecar with a
/// memory limit would reach as sessions accumulate; hot sessions are served from the
/// gateway's own cache in front of the store, so the store is read only on a miss.
pub const FILE_CACHE_BYTES: usize = 16 * 1024 * 1024;

/// The redb database; every operation runs on tokio's blocking pool.
pub struct FileStore {
    db: Arc<Database>,
}

fn table(ns: Namespace) -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(ns.name())
}

/// The user → sessions index: `user id \0 session key` → expiry (unix ms). User ids hold no
/// NUL, so one user's entries are the range from `user\0` to `user\x01`.
const USER_SESSIONS: TableDefinition<'static, &'static str, u64> =
    TableDefinition::new("user_sessions");

fn user_session_key(user_id: &str, session_key: &str) -> String {
    format!("{user_id}\0{session_key}")
}

fn file_err(op: &'static str) -> impl Fn(&dyn std::fmt::Display) -> StoreError {
    move |e| StoreError::unavailable("file", op, e.to_string())
}

impl FileStore {
    pub fn open(path: &Path) -> StoreResult<FileStore> {
        let err = |e: &dyn std::fmt::Display| {
            StoreError::unavailable(
                "file",
                "open",
                format!(
                    "{}: {e} (check that store.path is writable and that no other gateway \
                     process uses the same file)",
                    path.display()
                ),
            )
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
        }
        let db = Database::builder()
            .set_cache_size(FILE_CACHE_BYTES)
            .create(path)
            .map_err(|e| {
                let mut failure = err(&e);
                if matches!(e, redb::DatabaseError::DatabaseAlreadyOpen) {
                    failure.kind = StoreErrorKind::Conflict;
                }
                failure
            })?;
        // Create every table once, so read transactions can always open them.
        let tx = db.begin_write().map_err(|e| err(&e))?;
        for ns in Namespace::ALL {
            tx.open_table(table(ns)).map_err(|e| err(&e))?;
        }
        tx.open_table(USER_SESSIONS).map_err(|e| err(&e))?;
        tx.commit().map_err(|e| err(&e))?;
        Ok(FileStore { db: Arc::new(db) })
    }

    /// Removes a value in one write transaction and returns it as stored (framed): redb
    /// serialises writers, so only one caller gets it.
    async fn remove(
        &self,
        op: &'static str,
        ns: Namespace,
        key: &str,
    ) -> StoreResult<Option<Vec<u8>>> {
        let key = key.to_string();
        self.blocking(op, move |db| {
            let e = file_err(op);
            let tx = db.begin_write().map_err(|x| e(&x))?;
            let value = {
                let mut t = tx.open_table(table(ns)).map_err(|x| e(&x))?;
                let removed = t.remove(key.as_str()).map_err(|x| e(&x))?;
                removed.map(|v| v.value().to_vec())
            };
            tx.commit().map_err(|x| e(&x))?;
            Ok(value)
        })
        .await
    }

    /// Runs blocking redb work off the async worker threads.
    async fn blocking<T, F>(&self, op: &'static str, f: F) -> StoreResult<T>
    where
        F: FnOnce(&Database) -> StoreResult<T> + Send + 'static,
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

    async fn get(&self, ns: Namespace, key: &str) -> StoreResult<Option<Vec<u8>>> {
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
    ) -> StoreResult<()> {
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

    async fn delete(&self, ns: Namespace, key: &str) -> StoreResult<bool> {
        Ok(self.remove("delete", ns, key).await?.is_some())
    }

    async fn take(&self, ns: Namespace, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let raw = self.remove("take", ns, key).await?;
        Ok(raw.as_deref().and_then(unframe).map(<[u8]>::to_vec))
    }

    async fn purge_expired(&self) -> StoreResult<usize> {
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
            let now = now_ms();
            let mut t = tx.open_table(USER_SESSIONS).map_err(|x| e(&x))?;
            t.retain(|_, expires| expires > now).map_err(|x| e(&x))?;
            drop(t);
            tx.commit().map_err(|x| e(&x))?;
            Ok(purged)
        })
        .await
    }

    async fn count(&self, ns: Namespace) -> StoreResult<usize> {
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

    async fn add_user_session(&self, user_id: &str, key: &str, ttl: Duration) -> StoreResult<()> {
        let entry = user_session_key(user_id, key);
        let expires = now_ms().saturating_add(ttl.as_millis() as u64);
        self.blocking("write", move |db| {
            let e = file_err("write");
            let tx = db.begin_write().map_err(|x| e(&x))?;
            {
                let mut t = tx.open_table(USER_SESSIONS).map_err(|x| e(&x))?;
                t.insert(entry.as_str(), expires).map_err(|x| e(&x))?;
            }
            tx.commit().map_err(|x| e(&x))
        })
        .await
    }

    async fn user_sessions(&self, user_id: &str) -> StoreResult<Vec<String>> {
        let (from, to) = (format!("{user_id}\0"), format!("{user_id}\x01"));
        self.blocking("read", move |db| {
            let e = file_err("read");
            let tx = db.begin_read().map_err(|x| e(&x))?;
            let t = tx.open_table(USER_SESSIONS).map_err(|x| e(&x))?;
            let now = now_ms();
            let mut keys = Vec::new();
            for entry in t.range(from.as_str()..to.as_str()).map_err(|x| e(&x))? {
                let (k, expires) = entry.map_err(|x| e(&x))?;
                if expires.value() > now {
                    if let Some((_, key)) = k.value().split_once('\0') {
                        keys.push(key.to_string());
                    }
                }
            }
            Ok(keys)
        })
        .await
    }

    async fn remove_user_session(&self, user_id: &str, key: &str) -> StoreResult<bool> {
        let entry = user_session_key(user_id, key);
        self.blocking("delete", move |db| {
            let e = file_err("delete");
            let tx = db.begin_write().map_err(|x| e(&x))?;
            let removed = {
                let mut t = tx.open_table(USER_SESSIONS).map_err(|x| e(&x))?;
                let removed = t.remove(entry.as_str()).map_err(|x| e(&x))?.is_some();
                removed
            };
            tx.commit().map_err(|x| e(&x))?;
            Ok(removed)
        })
        .await
    }

    async fn users_page(&self, after: Option<&str>, limit: usize) -> StoreResult<UsersPage> {
        // Entries are `user \0 key`: the first entry after `after`'s own is `after \x01`.
        let from = after.map(|a| format!("{a}\x01")).unwrap_or_default();
        self.blocking("read", move |db| {
            let e = file_err("read");
            let tx = db.begin_read().map_err(|x| e(&x))?;
            let t = tx.open_table(USER_SESSIONS).map_err(|x| e(&x))?;
            let now = now_ms();
            let mut candidates: Vec<String> = Vec::new();
            for entry in t.range(from.as_str()..).map_err(|x| e(&x))? {
                let (k, expires) = entry.map_err(|x| e(&x))?;
                let Some((user, _)) = k.value().split_once('\0') else {
                    continue;
                };
                if expires.value() <= now || candidates.last().is_some_and(|u| u == user) {
                    continue;
                }
                if candidates.len() > limit {
                    break;
                }
                candidates.push(user.to_string());
            }
            Ok(UsersPage::of(candidates, limit))
        })
        .await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.blocking("read", |db| {
            db.begin_read()
                .map(|_| ())
                .map_err(|x| file_err("read")(&x))
        })
        .await
    }
}
