//! The Redis (or Valkey) store, for several replicas sharing sessions.
//!
//! - Values are the same sealed bytes as in the file store; Redis expires them itself (PX).
//! - Single-use logins use GETDEL; the refresh lock is `SET NX PX` with a random owner,
//!   released by a script that deletes it only for that owner.
//! - Cache consistency: `end()` of a session publishes its key on a channel; every replica
//!   subscribes and drops its cached copy at once. When the subscription drops (Redis
//!   restart, network) messages may be lost, so a replica forgets its whole cache when it
//!   subscribes again. Pub/sub rather than a short cache TTL, because a TTL would stop calls
//!   whose tokens are valid in memory as soon as Redis goes away, and the issue asks that
//!   those keep working during an outage.
//! - The connection manager and the subscriber live on the I/O runtime (`runtime`), and are
//!   created lazily: a gateway starts (not ready) while Redis is down, and recovers by itself.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::api::{Invalidation, Namespace, Store, StoreError, StoreResult, UsersPage};
use crate::secret::Secret;

/// Every key the gateway writes starts with this, so a shared Redis stays tidy.
const PREFIX: &str = "sgw";
const INVALIDATION_CHANNEL: &str = "sgw:invalidate";
/// Bounds for one Redis round trip; the hot path never waits longer on a dead Redis.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(1000);
const OP_TIMEOUT: Duration = Duration::from_millis(1500);
/// Wait between attempts to subscribe again.
const RESUBSCRIBE_DELAY: Duration = Duration::from_millis(250);

/// Deletes the lock only if the caller still owns it.
const UNLOCK_SCRIPT: &str = r#"
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0
"#;

/// Adds a session to a user's sorted set (score: its expiry, unix ms), names the user in the
/// set of users (`USERS_KEY`, for listing), drops the entries that expired, and lets the
/// user's set expire with its last session.
const ADD_USER_SESSION_SCRIPT: &str = r#"
redis.call("ZADD", KEYS[1], ARGV[2], ARGV[1])
redis.call("ZADD", KEYS[2], 0, ARGV[4])
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", ARGV[3])
local last = redis.call("ZRANGE", KEYS[1], -1, -1, "WITHSCORES")
if last[2] then
  redis.call("PEXPIREAT", KEYS[1], last[2])
end
return 1
"#;

/// Removes a user from `USERS_KEY` if none of their sessions is live (atomic against a login
/// adding one).
const FORGET_USER_SCRIPT: &str = r#"
if redis.call("ZCOUNT", KEYS[2], "(" .. ARGV[2], "+inf") == 0 then
  return redis.call("ZREM", KEYS[1], ARGV[1])
end
return 0
"#;

pub struct RedisStore {
    client: redis::Client,
    conn: Arc<tokio::sync::OnceCell<ConnectionManager>>,
    home: Handle,
    invalidations: Mutex<Option<mpsc::UnboundedReceiver<Invalidation>>>,
}

fn err(op: &'static str) -> impl Fn(&dyn std::fmt::Display) -> StoreError {
    move |e| StoreError::unavailable("redis", op, e.to_string())
}

fn key(ns: Namespace, key: &str) -> String {
    format!("{PREFIX}:{}:{key}", ns.name())
}

/// Every user id with an entry in the user → sessions index, as one sorted set (all scores 0,
/// so `ZRANGEBYLEX` pages it in byte order). A user whose sessions all expired stays a member
/// until `users_page` meets it and removes it.
const USERS_KEY: &str = "sgw:users";
/// How many members `users_page` reads per round trip beyond the page it wants (it skips
/// users whose sessions expired).
const USERS_SLACK: usize = 16;

/// The sorted set of a user's sessions (the user → sessions index).
fn user_sessions_key(user_id: &str) -> String {
    format!("{PREFIX}:user_sessions:{user_id}")
}

impl RedisStore {
    pub fn open(url: &Secret) -> StoreResult<RedisStore> {
        // The URL may carry a password: never echo it in the error.
        let client = redis::Client::open(url.expose()).map_err(|e| {
            StoreError::unavailable(
                "redis",
                "open",
                format!("store.url is not a usable Redis URL ({:?})", e.kind()),
            )
        })?;
        let home = crate::runtime::io_home().map_err(|e| err("open")(&e))?;
        let (tx, rx) = mpsc::unbounded_channel();
        home.spawn(subscribe_forever(client.clone(), tx));
        Ok(RedisStore {
            client,
            conn: Arc::new(tokio::sync::OnceCell::new()),
            home,
            invalidations: Mutex::new(Some(rx)),
        })
    }

    /// Runs a command on the I/O runtime with a connection, bounded by `OP_TIMEOUT`.
    async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> StoreResult<T>
    where
        F: FnOnce(ConnectionManager) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = redis::RedisResult<T>> + Send + 'static,
        T: Send + 'static,
    {
        let cell = self.conn.clone();
        let client = self.client.clone();
        let task = self.home.spawn(async move {
            tokio::time::timeout(OP_TIMEOUT, async move {
                let conn = cell
                    .get_or_try_init(|| async {
                        let config = ConnectionManagerConfig::new()
                            .set_connection_timeout(CONNECT_TIMEOUT)
                            .set_response_timeout(RESPONSE_TIMEOUT)
                            .set_number_of_retries(1);
                        client.get_connection_manager_with_config(config).await
                    })
                    .await?
                    .clone();
                f(conn).await
            })
            .await
        });
        match task.await {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(e))) => Err(err(op)(&e)),
            Ok(Err(_elapsed)) => Err(err(op)(&"no answer from Redis in time")),
            Err(join) => Err(err(op)(&join)),
        }
    }
}

/// Keeps one subscription to the invalidation channel alive, forever.
async fn subscribe_forever(client: redis::Client, tx: mpsc::UnboundedSender<Invalidation>) {
    loop {
        if tx.is_closed() {
            return;
        }
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if pubsub.subscribe(INVALIDATION_CHANNEL).await.is_ok() {
                    // Anything published while we were not subscribed is lost.
                    let _ = tx.send(Invalidation::All);
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        if let Ok(key) = msg.get_payload::<String>() {
                            let _ = tx.send(Invalidation::Key(key));
                        }
                    }
                    tracing::warn!("lost the Redis invalidation subscription; resubscribing");
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot subscribe to Redis invalidations yet"),
        }
        tokio::time::sleep(RESUBSCRIBE_DELAY).await;
    }
}

#[async_trait]
impl Store for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn get(&self, ns: Namespace, k: &str) -> StoreResult<Option<Vec<u8>>> {
        let k = key(ns, k);
        self.run("read", move |mut c| async move { c.get(k).await })
            .await
    }

    async fn put(&self, ns: Namespace, k: &str, value: Vec<u8>, ttl: Duration) -> StoreResult<()> {
        let k = key(ns, k);
        let ms = ttl.as_millis().max(1) as u64;
        self.run("write", move |mut c| async move {
            c.pset_ex::<_, _, ()>(k, value, ms).await
        })
        .await
    }

    async fn delete(&self, ns: Namespace, k: &str) -> StoreResult<bool> {
        let k = key(ns, k);
        self.run("delete", move |mut c| async move {
            c.del::<_, u64>(k).await.map(|n| n > 0)
        })
        .await
    }

    async fn take(&self, ns: Namespace, k: &str) -> StoreResult<Option<Vec<u8>>> {
        let k = key(ns, k);
        self.run("take", move |mut c| async move { c.get_del(k).await })
            .await
    }

    async fn purge_expired(&self) -> StoreResult<usize> {
        // Redis expires keys itself.
        Ok(0)
    }

    async fn count(&self, ns: Namespace) -> StoreResult<usize> {
        let pattern = key(ns, "*");
        self.run("count", move |mut c| async move {
            let mut n = 0;
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut c)
                    .await?;
                n += keys.len();
                if next == 0 {
                    return Ok(n);
                }
                cursor = next;
            }
        })
        .await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.run("ping", move |mut c| async move {
            redis::cmd("PING")
                .query_async::<String>(&mut c)
                .await
                .map(|_| ())
        })
        .await
    }

    async fn add_user_session(
        &self,
        user_id: &str,
        session: &str,
        ttl: Duration,
    ) -> StoreResult<()> {
        let k = user_sessions_key(user_id);
        let session = session.to_string();
        let user = user_id.to_string();
        let now = crate::clock::now_ms();
        let expires = now.saturating_add(ttl.as_millis() as u64);
        self.run("write", move |mut c| async move {
            redis::Script::new(ADD_USER_SESSION_SCRIPT)
                .key(k)
                .key(USERS_KEY)
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
        let k = user_sessions_key(user_id);
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
        let k = user_sessions_key(user_id);
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
        self.run("read", move |mut c| async move {
            let mut live: Vec<String> = Vec::new();
            loop {
                let want = limit + 1 - live.len() + USERS_SLACK;
                let batch: Vec<String> = redis::cmd("ZRANGEBYLEX")
                    .arg(USERS_KEY)
                    .arg(&from)
                    .arg("+")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(want)
                    .query_async(&mut c)
                    .await?;
                let mut counts = redis::pipe();
                for user in &batch {
                    counts
                        .cmd("ZCOUNT")
                        .arg(user_sessions_key(user))
                        .arg(format!("({now}"))
                        .arg("+inf");
                }
                let counts: Vec<u64> = if batch.is_empty() {
                    Vec::new()
                } else {
                    counts.query_async(&mut c).await?
                };
                for (user, n) in batch.iter().zip(counts) {
                    if n > 0 {
                        if live.len() <= limit {
                            live.push(user.clone());
                        }
                    } else {
                        // Every session of this user expired: forget the member, unless a
                        // login added one meanwhile (checked again in the script).
                        redis::Script::new(FORGET_USER_SCRIPT)
                            .key(USERS_KEY)
                            .key(user_sessions_key(user))
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
        let k = format!("{PREFIX}:lock:{name}");
        let owner = owner.to_string();
        let ms = ttl.as_millis().max(1) as u64;
        self.run("lock", move |mut c| async move {
            let set: Option<String> = redis::cmd("SET")
                .arg(&k)
                .arg(&owner)
                .arg("NX")
                .arg("PX")
                .arg(ms)
                .query_async(&mut c)
                .await?;
            Ok(set.is_some())
        })
        .await
    }

    async fn unlock(&self, name: &str, owner: &str) -> StoreResult<()> {
        let k = format!("{PREFIX}:lock:{name}");
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

    fn invalidations(&self) -> Option<mpsc::UnboundedReceiver<Invalidation>> {
        self.invalidations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}
