//! The Redis (or Valkey) store, for several replicas sharing sessions, on one server, a
//! Sentinel set or a Cluster (`link.rs` says how each is reached and followed through a
//! failover; `keys.rs` how keys are named on each; `scripts.rs` the Lua scripts;
//! `subscriber.rs` the subscription).
//!
//! - Values are the same sealed bytes as in the file store; Redis expires them itself (PX).
//! - Single-use logins use GETDEL; the refresh lock is `SET NX PX` with a random owner,
//!   released by a script that deletes it only for that owner.
//! - Cache consistency: `end()` of a session publishes its key on a channel; every replica
//!   subscribes and drops its cached copy at once. When the subscription drops (Redis
//!   restart, failover, network) messages may be lost, so a replica forgets its whole cache
//!   when it subscribes again. Pub/sub rather than a short cache TTL, because a TTL would stop
//!   calls whose tokens are valid in memory as soon as Redis goes away, and the issue asks
//!   that those keep working during an outage.
//! - A user's shared answers to forget (`quota::purge`) travel on their own channel, named by
//!   keyed hashes; the subscriber hands them on in the same stream as the invalidations, so a
//!   replica forgets the user's sessions before their answers, in the order they were sent.
//! - Spotify's 429 cool-down (`quota::CoolDown`) travels the same way on its own channel, so
//!   every replica keeps it in memory and the hot path never asks Redis. The longest running
//!   cool-down is also kept under a key that expires with it, which a replica reads when it
//!   (re)subscribes: one that starts, or reconnects, during a cool-down learns it too.
//! - Replication is asynchronous: a write the master acknowledged can vanish with it. A
//!   session record (a new session at the callback, a rotated refresh token) and the refresh
//!   lock wait for one replica to hold them (`WAIT 1 <store.replica_wait>`, sent only while
//!   `ROLE` names a connected replica, since `WAIT` stalls the shared connection); when none
//!   answers in time the write stays on the master (it is not undone: the user is signed in
//!   on it), is counted (`store_replica_wait_timeouts_total`) and logged once until a replica
//!   answers again.
//! - The connection and the subscriber live on the I/O runtime (`runtime`), and are created
//!   lazily: a gateway starts (not ready) while Redis is down, and recovers by itself.

mod keys;
mod link;
mod scripts;
mod subscriber;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use self::keys::{Keys, COOL_DOWN_CHANNEL, COOL_DOWN_KEY, INVALIDATION_CHANNEL, PURGE_CHANNEL};
use self::link::{Conn, Link, Watcher};
use self::scripts::*;
use super::api::{
    CoolDownNotice, Invalidation, LocalCalls, Namespace, PurgeNotice, Store, StoreError,
    StoreResult, UsersPage,
};
use crate::config::{RedisConfig, RedisShape};
use crate::secret::Secret;
use crate::telemetry::metrics::Metrics;

/// The most one operation waits, the connection included; the hot path never waits longer
/// on a dead Redis. A replica wait (`store.replica_wait`, at most 2 s) comes on top.
const OP_TIMEOUT: Duration = Duration::from_millis(1500);
/// How many members `users_page` reads per list and round trip beyond the page it wants (it
/// skips users whose sessions expired).
const USERS_SLACK: usize = 16;

pub struct RedisStore {
    link: Arc<Link>,
    keys: Keys,
    replica_wait: Duration,
    home: Handle,
    metrics: Arc<Metrics>,
    /// No replica acknowledged the last write that waited for one (logged once per change).
    replica_missing: Arc<AtomicBool>,
    invalidations: Mutex<Option<mpsc::UnboundedReceiver<Invalidation>>>,
    cool_downs: Mutex<Option<mpsc::UnboundedReceiver<CoolDownNotice>>>,
}

fn err(op: &'static str) -> impl Fn(&dyn std::fmt::Display) -> StoreError {
    move |e| StoreError::unavailable("redis", op, e.to_string())
}

/// Tells the metrics and the log which node is master.
struct MasterWatch {
    metrics: Arc<Metrics>,
}

impl Watcher for MasterWatch {
    fn masters(&self, now: &[String], previous: &[String]) {
        for node in previous {
            let _ = self.metrics.store_master.remove_label_values(&[node]);
        }
        for node in now {
            self.metrics.store_master.with_label_values(&[node]).set(1);
        }
        if previous.is_empty() {
            tracing::info!(masters = ?now, "the Redis store's master(s)");
        } else {
            self.metrics.store_failovers.inc();
            tracing::warn!(masters = ?now, was = ?previous, "the Redis store's master changed (failover)");
        }
    }
}

impl RedisStore {
    /// One server at `url` (`backend = "redis"` without the other keys).
    pub fn open(url: &Secret) -> StoreResult<RedisStore> {
        let cfg = RedisConfig {
            shape: RedisShape::Single { url: url.clone() },
            password: None,
            tls: false,
            ca_file: None,
            replica_wait: Duration::ZERO,
        };
        RedisStore::connect(&cfg, Arc::new(Metrics::new()))
    }

    /// Any shape, counting its failovers and replica waits in `metrics`.
    pub fn connect(cfg: &RedisConfig, metrics: Arc<Metrics>) -> StoreResult<RedisStore> {
        let backend = cfg.shape.backend();
        let roots = match (&cfg.shape, cfg.tls) {
            (RedisShape::Single { url }, _) if !url.expose().starts_with("rediss:") => None,
            (RedisShape::Single { .. }, _) | (_, true) => Some(
                crate::net::tls_roots::roots_pem(cfg.ca_file.as_ref())
                    .map_err(|e| err("open")(&e))?,
            ),
            _ => None,
        };
        let watcher = Box::new(MasterWatch {
            metrics: metrics.clone(),
        });
        // The URL may carry a password: never echo it in the error.
        let link = Link::new(cfg, roots, watcher).map_err(|e| {
            StoreError::unavailable(
                "redis",
                "open",
                format!(
                    "the store.* keys of backend = \"{backend}\" are not usable ({:?})",
                    e.kind()
                ),
            )
        })?;
        let link = Arc::new(link);
        let home = crate::runtime::io_home().map_err(|e| err("open")(&e))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (cool_tx, cool_rx) = mpsc::unbounded_channel();
        home.spawn(subscriber::subscribe_forever(link.clone(), tx, cool_tx));
        Ok(RedisStore {
            link,
            keys: Keys::new(matches!(cfg.shape, RedisShape::Cluster { .. })),
            replica_wait: cfg.replica_wait,
            home,
            metrics,
            replica_missing: Arc::new(AtomicBool::new(false)),
            invalidations: Mutex::new(Some(rx)),
            cool_downs: Mutex::new(Some(cool_rx)),
        })
    }

    /// Runs a command on the I/O runtime with a connection, bounded by `OP_TIMEOUT` (and the
    /// replica wait).
    async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> StoreResult<T>
    where
        F: FnOnce(Conn) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = redis::RedisResult<T>> + Send + 'static,
        T: Send + 'static,
    {
        let link = self.link.clone();
        let bound = OP_TIMEOUT + self.replica_wait;
        let task = self.home.spawn(async move {
            let outcome = tokio::time::timeout(bound, async {
                let conn = link.conn().await?;
                f(conn).await
            })
            .await;
            match &outcome {
                Ok(Err(e)) => link.failed(Some(e)),
                Err(_elapsed) => link.failed(None),
                Ok(Ok(_)) => {}
            }
            outcome
        });
        match task.await {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(e))) => Err(err(op)(&e)),
            Ok(Err(_elapsed)) => Err(err(op)(&"no answer from Redis in time")),
            Err(join) => Err(err(op)(&join)),
        }
    }

    /// Counts and logs a write no replica acknowledged (once until one does again).
    fn replicas_answered(&self, replicas: i64) {
        let missing = replicas < 1;
        if missing {
            self.metrics.store_replica_wait_timeouts.inc();
        }
        if self.replica_missing.swap(missing, Ordering::Relaxed) != missing {
            if missing {
                tracing::warn!(
                    wait = ?self.replica_wait,
                    "no Redis replica acknowledged a session write in time: it is kept on the \
                     master only, and a failover before a replica copies it would lose it"
                );
            } else {
                tracing::info!("a Redis replica acknowledges session writes again");
            }
        }
    }
}

#[async_trait]
impl Store for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn get(&self, ns: Namespace, k: &str) -> StoreResult<Option<Vec<u8>>> {
        let k = self.keys.record(ns, k);
        self.run("read", move |mut c| async move { c.get(k).await })
            .await
    }

    async fn put(&self, ns: Namespace, k: &str, value: Vec<u8>, ttl: Duration) -> StoreResult<()> {
        let k = self.keys.record(ns, k);
        let ms = ttl.as_millis().max(1) as u64;
        // A session record lost at a failover signs its user out (a new session, a rotated
        // refresh token): it waits for a replica. A pending login lost costs one retry.
        let wait =
            (ns == Namespace::Session && !self.replica_wait.is_zero()).then_some(self.replica_wait);
        let replicas = self
            .run("write", move |mut c| async move {
                c.pset_ex::<_, _, ()>(&k, value, ms).await?;
                match wait {
                    Some(wait) => c.wait_for_replica(&k, wait).await.map(Some),
                    None => Ok(None),
                }
            })
            .await?;
        if let Some(n) = replicas {
            self.replicas_answered(n);
        }
        Ok(())
    }

    async fn delete(&self, ns: Namespace, k: &str) -> StoreResult<bool> {
        let k = self.keys.record(ns, k);
        self.run("delete", move |mut c| async move {
            c.del::<_, u64>(k).await.map(|n| n > 0)
        })
        .await
    }

    async fn take(&self, ns: Namespace, k: &str) -> StoreResult<Option<Vec<u8>>> {
        let k = self.keys.record(ns, k);
        self.run("take", move |mut c| async move { c.get_del(k).await })
            .await
    }

    async fn purge_expired(&self) -> StoreResult<usize> {
        // Redis expires keys itself.
        Ok(0)
    }

    async fn count(&self, ns: Namespace) -> StoreResult<usize> {
        let pattern = self.keys.records(ns);
        let link = self.link.clone();
        self.run("count", move |mut c| async move {
            // The housekeeping counts sessions every few seconds: on a cluster, the masters
            // it reads on the way tell a failover.
            if let Conn::Cluster(_) = c {
                link.saw_masters(c.cluster_masters().await?);
            }
            c.count_keys(&pattern).await
        })
        .await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.run("ping", move |mut c| async move { c.ping().await })
            .await
    }

    async fn add_user_session(
        &self,
        user_id: &str,
        session: &str,
        ttl: Duration,
    ) -> StoreResult<()> {
        let k = self.keys.user_sessions(user_id);
        let users = self.keys.users_of(user_id);
        let session = session.to_string();
        let user = user_id.to_string();
        let now = crate::clock::now_ms();
        let expires = now.saturating_add(ttl.as_millis() as u64);
        self.run("write", move |mut c| async move {
            redis::Script::new(ADD_USER_SESSION_SCRIPT)
                .key(k)
                .key(users)
                .arg(session)
                .arg(expires)
                .arg(now)
                .arg(user)
                .invoke_async::<i64>(&mut c)
                .await
                .map(|_| ())
        })
        .await
    }

    async fn user_sessions(&self, user_id: &str) -> StoreResult<Vec<String>> {
        let k = self.keys.user_sessions(user_id);
        let now = crate::clock::now_ms();
        self.run("read", move |mut c| async move {
            redis::cmd("ZRANGEBYSCORE")
                .arg(k)
                .arg(format!("({now}"))
                .arg("+inf")
                .query_async::<Vec<String>>(&mut c)
                .await
        })
        .await
    }

    async fn remove_user_session(&self, user_id: &str, session: &str) -> StoreResult<bool> {
        let k = self.keys.user_sessions(user_id);
        let session = session.to_string();
        self.run("delete", move |mut c| async move {
            c.zrem::<_, _, u64>(k, session).await.map(|n| n > 0)
        })
        .await
    }

    async fn users_page(&self, after: Option<&str>, limit: usize) -> StoreResult<UsersPage> {
        let mut from = match after {
            Some(a) => format!("({a}"),
            None => "-".to_string(),
        };
        let now = crate::clock::now_ms();
        let keys = self.keys;
        self.run("read", move |mut c| async move {
            let mut live: Vec<String> = Vec::new();
            loop {
                let want = limit + 1 - live.len() + USERS_SLACK;
                // Every list's first `want` after the cursor; the first `want` of them all are
                // the next `want` users in byte order (a cursor that is a user id stays valid
                // whichever master holds which list, through failovers).
                let mut batch: Vec<String> = Vec::new();
                for list in keys.user_lists() {
                    let part: Vec<String> = redis::cmd("ZRANGEBYLEX")
                        .arg(list)
                        .arg(&from)
                        .arg("+")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(want)
                        .query_async(&mut c)
                        .await?;
                    batch.extend(part);
                }
                batch.sort();
                batch.dedup();
                batch.truncate(want);
                let mut counts = Vec::with_capacity(batch.len());
                for user in &batch {
                    let n: u64 = redis::cmd("ZCOUNT")
                        .arg(keys.user_sessions(user))
                        .arg(format!("({now}"))
                        .arg("+inf")
                        .query_async(&mut c)
                        .await?;
                    counts.push(n);
                }
                for (user, n) in batch.iter().zip(counts) {
                    if n > 0 {
                        if live.len() <= limit {
                            live.push(user.clone());
                        }
                    } else {
                        // Every session of this user expired: forget the member, unless a
                        // login added one meanwhile (checked again in the script).
                        redis::Script::new(FORGET_USER_SCRIPT)
                            .key(keys.users_of(user))
                            .key(keys.user_sessions(user))
                            .arg(user)
                            .arg(now)
                            .invoke_async::<i64>(&mut c)
                            .await?;
                    }
                }
                match batch.last() {
                    Some(last) if batch.len() == want && live.len() <= limit => {
                        from = format!("({last}");
                    }
                    _ => return Ok(UsersPage::of(live, limit)),
                }
            }
        })
        .await
    }

    async fn lock(&self, name: &str, owner: &str, ttl: Duration) -> StoreResult<bool> {
        let k = self.keys.lock(name);
        let owner = owner.to_string();
        let ms = ttl.as_millis().max(1) as u64;
        // The refresh lock must outlive a failover as the record it guards does: lost with a
        // master, it would let another replica refresh with a rotated-away token.
        let wait = (!self.replica_wait.is_zero()).then_some(self.replica_wait);
        let (taken, replicas) = self
            .run("lock", move |mut c| async move {
                let set: Option<String> = redis::cmd("SET")
                    .arg(&k)
                    .arg(&owner)
                    .arg("NX")
                    .arg("PX")
                    .arg(ms)
                    .query_async(&mut c)
                    .await?;
                let replicas = match (set.is_some(), wait) {
                    (true, Some(wait)) => Some(c.wait_for_replica(&k, wait).await?),
                    _ => None,
                };
                Ok((set.is_some(), replicas))
            })
            .await?;
        if let Some(n) = replicas {
            self.replicas_answered(n);
        }
        Ok(taken)
    }

    async fn unlock(&self, name: &str, owner: &str) -> StoreResult<()> {
        let k = self.keys.lock(name);
        let owner = owner.to_string();
        self.run("unlock", move |mut c| async move {
            redis::Script::new(UNLOCK_SCRIPT)
                .key(k)
                .arg(owner)
                .invoke_async::<i64>(&mut c)
                .await
                .map(|_| ())
        })
        .await
    }

    async fn publish_invalidation(&self, k: &str) -> StoreResult<()> {
        let k = k.to_string();
        self.run("publish", move |mut c| async move {
            c.publish::<_, _, i64>(INVALIDATION_CHANNEL, k)
                .await
                .map(|_| ())
        })
        .await
    }

    async fn publish_purge(&self, notice: &PurgeNotice) -> StoreResult<()> {
        let wire = notice.encode();
        self.run("publish", move |mut c| async move {
            c.publish::<_, _, i64>(PURGE_CHANNEL, wire)
                .await
                .map(|_| ())
        })
        .await
    }

    fn invalidations(&self) -> Option<mpsc::UnboundedReceiver<Invalidation>> {
        self.invalidations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    async fn publish_cool_down(&self, notice: CoolDownNotice) -> StoreResult<()> {
        let wire = notice.encode();
        let reason = wire.split_once(':').map(|(_, r)| r.to_string());
        self.run("publish", move |mut c| async move {
            redis::Script::new(COOL_DOWN_SCRIPT)
                .key(COOL_DOWN_KEY)
                .arg(notice.hold_ms.max(1))
                .arg(reason.unwrap_or_default())
                .arg(COOL_DOWN_CHANNEL)
                .arg(wire)
                .invoke_async::<i64>(&mut c)
                .await
                .map(|_| ())
        })
        .await
    }

    fn cool_downs(&self) -> Option<mpsc::UnboundedReceiver<CoolDownNotice>> {
        self.cool_downs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    async fn take_budget(
        &self,
        account: Option<&str>,
        limit: u32,
        app_limit: Option<u32>,
        window: Duration,
    ) -> StoreResult<Option<Option<Duration>>> {
        let window_ms = window.as_millis() as u64;
        let member: u64 = rand::random();
        let (all_key, app_key) = self.keys.budget(account);
        self.run("budget", move |mut c| async move {
            let wait_ms = redis::Script::new(BUDGET_SCRIPT)
                .key(&all_key)
                .key(&app_key)
                .arg(window_ms)
                .arg(limit)
                .arg(member)
                .arg(app_limit.unwrap_or(0))
                .invoke_async::<u64>(&mut c)
                .await?;
            Ok(Some((wait_ms > 0).then(|| Duration::from_millis(wait_ms))))
        })
        .await
    }

    async fn add_budget_calls(
        &self,
        account: Option<&str>,
        calls: &LocalCalls,
        window: Duration,
    ) -> StoreResult<()> {
        let window_ms = window.as_millis() as u64;
        let nonce: u64 = rand::random();
        let ms = |ages: &[Duration]| {
            ages.iter()
                .map(|a| a.as_millis() as u64)
                .collect::<Vec<_>>()
        };
        let (all, app) = (ms(&calls.all), ms(&calls.app));
        let (all_key, app_key) = self.keys.budget(account);
        self.run("budget", move |mut c| async move {
            redis::Script::new(ADD_CALLS_SCRIPT)
                .key(&all_key)
                .key(&app_key)
                .arg(window_ms)
                .arg(all.len())
                .arg(nonce)
                .arg(all)
                .arg(app)
                .invoke_async::<i64>(&mut c)
                .await
                .map(|_| ())
        })
        .await
    }
}
