//! The embedded default backend: a redb database file. Survives restarts; one process at a
//! time (redb locks the file), so several replicas need Redis.
//!
//! Faults: after any I/O error redb refuses every further transaction until the database is
//! closed and opened again, so an I/O error drops the handle and the next operation opens the
//! file again (redb repairs it then). A write that adds data is refused up front while the file
//! system holds less than [`FREE_SPACE_RESERVE`]: a full disk is then a clear, retryable
//! refusal rather than a commit failing half-way.

// The closures below return redb's own error (160 bytes) so `?` works on every redb call;
// each is converted at once, on the blocking pool, where its size costs nothing.
#![allow(clippy::result_large_err)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

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

/// A write that adds data is refused while the file system holding the store has less than
/// this available. A session record is a few KiB; the margin is for redb's own pages (a commit
/// copies the pages it changes) and for the file growing.
pub const FREE_SPACE_RESERVE: u64 = 1024 * 1024;

/// How long reopening waits for operations still holding the broken handle (they fail at once,
/// so this is only ever a short wait) before it reports the store unavailable.
const REOPEN_WAIT: Duration = Duration::from_secs(2);

/// Told the outcome of every reopen (true: opened); the factory counts them.
type ReopenHook = Box<dyn Fn(bool) + Send + Sync>;

/// The redb database; every operation runs on tokio's blocking pool.
pub struct FileStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// The open database; `None` from an I/O error until the next operation opens it again.
    db: Mutex<Option<Arc<Database>>>,
    on_reopen: OnceLock<ReopenHook>,
    /// The last write that adds data failed (logged once when such writes start failing,
    /// once when they work again).
    failing: AtomicBool,
}

fn table(ns: Namespace) -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(ns.name())
}

/// The user → sessions index: `user id \0 session key` → expiry (unix ms). User ids hold no
/// NUL, so one user's entries are the range from `user\0` to `user\x01`.
const USER_SESSIONS: TableDefinition<'static, &'static str, u64> =
    TableDefinition::new("user_sessions");

/// What [`Store::ping`] writes (unix ms of the probe), so readiness means "takes writes".
const PROBE: TableDefinition<'static, &'static str, u64> = TableDefinition::new("probe");

fn user_session_key(user_id: &str, session_key: &str) -> String {
    format!("{user_id}\0{session_key}")
}

/// Whether an operation adds data (refused while the disk is nearly full) or only reads or
/// removes (tried whatever the free space: a logout must not wait for the disk).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Remove,
    Add,
}

/// redb failures after which it refuses every transaction until closed and opened again.
fn poisons(e: &redb::Error) -> bool {
    matches!(
        e,
        redb::Error::Io(_) | redb::Error::PreviousIo | redb::Error::LockPoisoned(_)
    )
}

/// Bytes available to the gateway on the file system holding `path`.
fn available_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: statvfs(3) writes only into `stats`, a plain C struct we own; `c_path` is a
    // NUL-terminated string that lives across the call.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stats) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The field types differ between platforms (both u64 on Linux x86_64).
    #[allow(clippy::unnecessary_cast)]
    let available = (stats.f_bavail as u64).saturating_mul(stats.f_frsize as u64);
    Ok(available)
}

/// Opens (creating) the database at `path` and every table, so read transactions can always
/// open them. `wait`: how long to retry while the file is still locked (by a handle of ours
/// being dropped); zero at start-up, where a lock means another process.
fn open_database(path: &Path, wait: Duration) -> StoreResult<Database> {
    let err = |e: &dyn std::fmt::Display| {
        StoreError::unavailable(
            "file",
            "open",
            format!(
                "{}: {e} (check that store.path is writable and that no other gateway process \
                 uses the same file)",
                path.display()
            ),
        )
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
    }
    let deadline = Instant::now() + wait;
    let db = loop {
        match Database::builder()
            .set_cache_size(FILE_CACHE_BYTES)
            .create(path)
        {
            Ok(db) => break db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                let mut failure = err(&e);
                if matches!(e, redb::DatabaseError::DatabaseAlreadyOpen) {
                    failure.kind = StoreErrorKind::Conflict;
                }
                return Err(failure);
            }
        }
    };
    let create = || -> Result<(), redb::Error> {
        let tx = db.begin_write()?;
        for ns in Namespace::ALL {
            tx.open_table(table(ns))?;
        }
        tx.open_table(USER_SESSIONS)?;
        tx.open_table(PROBE)?;
        tx.commit()?;
        Ok(())
    };
    create().map_err(|e| err(&e))?;
    Ok(db)
}

impl Inner {
    /// The open database, opening it again if an I/O error dropped it.
    fn handle(&self) -> StoreResult<Arc<Database>> {
        let mut slot = self.db.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(db) = slot.as_ref() {
            return Ok(Arc::clone(db));
        }
        let opened = open_database(&self.path, REOPEN_WAIT).map(Arc::new);
        if let Some(hook) = self.on_reopen.get() {
            hook(opened.is_ok());
        }
        match opened {
            Ok(db) => {
                tracing::info!("the session store file is open again");
                *slot = Some(Arc::clone(&db));
                Ok(db)
            }
            Err(mut e) => {
                e.op = "reopen";
                Err(e)
            }
        }
    }

    /// Drops `db` after an error that poisoned it; the next operation opens the file again.
    fn discard(&self, db: &Arc<Database>, error: &redb::Error) {
        let mut slot = self.db.lock().unwrap_or_else(|p| p.into_inner());
        if slot
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, db))
        {
            *slot = None;
            tracing::warn!(
                error = %error,
                "an I/O error left the session store file unusable (redb refuses every \
                 transaction after one); it is closed and opened again at the next operation"
            );
        }
    }

    /// Refuses a write that adds data while the file system is nearly full.
    fn check_room(&self, op: &'static str) -> StoreResult<()> {
        match available_bytes(&self.path) {
            Ok(free) if free < FREE_SPACE_RESERVE => Err(StoreError::unavailable(
                "file",
                op,
                format!(
                    "the file system holding {} is full ({} KiB available; the store takes no \
                     new data below {} KiB): free some space",
                    self.path.display(),
                    free / 1024,
                    FREE_SPACE_RESERVE / 1024
                ),
            )),
            // Unknown: let the write find out.
            _ => Ok(()),
        }
    }

    /// Logs when writes start failing and when they work again (each failure is also counted
    /// and logged by the caller).
    fn note_write(&self, result: Result<(), &StoreError>) {
        match result {
            Ok(()) => {
                if self.failing.swap(false, Ordering::AcqRel) {
                    tracing::info!("the session store file takes writes again");
                }
            }
            Err(e) => {
                if !self.failing.swap(true, Ordering::AcqRel) {
                    tracing::error!(
                        error = %e,
                        "the session store file takes no writes; /readyz fails until it does"
                    );
                }
            }
        }
    }

    /// Runs `f` on the open database (opening it again if needed), dropping the handle when an
    /// error poisoned it.
    fn run<T>(
        &self,
        op: &'static str,
        access: Access,
        f: impl FnOnce(&Database) -> Result<T, redb::Error>,
    ) -> StoreResult<T> {
        let result = self.attempt(op, access, f);
        // A removal that works says nothing about room for a record.
        if access == Access::Add {
            self.note_write(result.as_ref().map(|_| ()));
        }
        result
    }

    fn attempt<T>(
        &self,
        op: &'static str,
        access: Access,
        f: impl FnOnce(&Database) -> Result<T, redb::Error>,
    ) -> StoreResult<T> {
        if access == Access::Add {
            self.check_room(op)?;
        }
        let db = self.handle()?;
        f(&db).map_err(|e| {
            if poisons(&e) {
                self.discard(&db, &e);
            }
            StoreError::unavailable("file", op, e.to_string())
        })
    }
}

impl FileStore {
    pub fn open(path: &Path) -> StoreResult<FileStore> {
        let db = open_database(path, Duration::ZERO)?;
        Ok(FileStore {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                db: Mutex::new(Some(Arc::new(db))),
                on_reopen: OnceLock::new(),
                failing: AtomicBool::new(false),
            }),
        })
    }

    /// Calls `hook` with the outcome of every reopen after an I/O error (true: opened again).
    /// Set once; a later hook is ignored.
    pub fn on_reopen(&self, hook: impl Fn(bool) + Send + Sync + 'static) {
        let _ = self.inner.on_reopen.set(Box::new(hook));
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
        self.blocking(op, Access::Remove, move |db| {
            let tx = db.begin_write()?;
            let value = {
                let mut t = tx.open_table(table(ns))?;
                let removed = t.remove(key.as_str())?;
                removed.map(|v| v.value().to_vec())
            };
            tx.commit()?;
            Ok(value)
        })
        .await
    }

    /// Runs blocking redb work off the async worker threads.
    async fn blocking<T, F>(&self, op: &'static str, access: Access, f: F) -> StoreResult<T>
    where
        F: FnOnce(&Database) -> Result<T, redb::Error> + Send + 'static,
        T: Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.run(op, access, f))
            .await
            .map_err(|e| StoreError::unavailable("file", op, e.to_string()))?
    }
}

#[async_trait]
impl Store for FileStore {
    fn backend(&self) -> &'static str {
        "file"
    }

    async fn get(&self, ns: Namespace, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let key = key.to_string();
        self.blocking("read", Access::Read, move |db| {
            let tx = db.begin_read()?;
            let t = tx.open_table(table(ns))?;
            let raw = t.get(key.as_str())?;
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
        self.blocking("write", Access::Add, move |db| {
            let tx = db.begin_write()?;
            {
                let mut t = tx.open_table(table(ns))?;
                t.insert(key.as_str(), frame(&value, ttl).as_slice())?;
            }
            tx.commit()?;
            Ok(())
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
        self.blocking("purge", Access::Remove, move |db| {
            let tx = db.begin_write()?;
            let mut purged = 0;
            for ns in Namespace::ALL {
                let mut t = tx.open_table(table(ns))?;
                let before = t.len()?;
                t.retain(|_, raw| unframe(raw).is_some())?;
                purged += (before - t.len()?) as usize;
            }
            let now = now_ms();
            let mut t = tx.open_table(USER_SESSIONS)?;
            t.retain(|_, expires| expires > now)?;
            drop(t);
            tx.commit()?;
            Ok(purged)
        })
        .await
    }

    async fn count(&self, ns: Namespace) -> StoreResult<usize> {
        self.blocking("count", Access::Read, move |db| {
            let tx = db.begin_read()?;
            let t = tx.open_table(table(ns))?;
            let mut n = 0;
            for entry in t.iter()? {
                let (_, v) = entry?;
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
        self.blocking("write", Access::Add, move |db| {
            let tx = db.begin_write()?;
            {
                let mut t = tx.open_table(USER_SESSIONS)?;
                t.insert(entry.as_str(), expires)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn user_sessions(&self, user_id: &str) -> StoreResult<Vec<String>> {
        let (from, to) = (format!("{user_id}\0"), format!("{user_id}\x01"));
        self.blocking("read", Access::Read, move |db| {
            let tx = db.begin_read()?;
            let t = tx.open_table(USER_SESSIONS)?;
            let now = now_ms();
            let mut keys = Vec::new();
            for entry in t.range(from.as_str()..to.as_str())? {
                let (k, expires) = entry?;
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
        self.blocking("delete", Access::Remove, move |db| {
            let tx = db.begin_write()?;
            let removed = {
                let mut t = tx.open_table(USER_SESSIONS)?;
                let removed = t.remove(entry.as_str())?.is_some();
                removed
            };
            tx.commit()?;
            Ok(removed)
        })
        .await
    }

    async fn users_page(&self, after: Option<&str>, limit: usize) -> StoreResult<UsersPage> {
        // Entries are `user \0 key`: the first entry after `after`'s own is `after \x01`.
        let from = after.map(|a| format!("{a}\x01")).unwrap_or_default();
        self.blocking("read", Access::Read, move |db| {
            let tx = db.begin_read()?;
            let t = tx.open_table(USER_SESSIONS)?;
            let now = now_ms();
            let mut candidates: Vec<String> = Vec::new();
            for entry in t.range(from.as_str()..)? {
                let (k, expires) = entry?;
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

    /// Ready means able to take a session record now: a small write, committed, with the
    /// free-space check every added record passes (an I/O error here also reopens the file).
    async fn ping(&self) -> StoreResult<()> {
        self.blocking("write", Access::Add, |db| {
            let tx = db.begin_write()?;
            {
                let mut t = tx.open_table(PROBE)?;
                t.insert("probe", now_ms())?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }
}
