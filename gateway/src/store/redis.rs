//! The Redis (or Valkey) store, for several replicas sharing sessions.
//!
//! Why this file is over 600 lines: it is one backend of the `Store` trait, every method a short
//! command or script next to the key layout it relies on; split apart, the key names and the
//! scripts that must agree on them would sit in different files. Issue #26 (Sentinel, Cluster) is
//! where it becomes `store/redis/` with one file per shape.
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
//! - A user's shared answers to forget (`quota::purge`) travel on their own channel, named by
//!   keyed hashes; the subscriber hands them on in the same stream as the invalidations, so a
//!   replica forgets the user's sessions before their answers, in the order they were sent.
//! - Spotify's 429 cool-down (`quota::CoolDown`) travels the same way on its own channel, so
//!   every replica keeps it in memory and the hot path never asks Redis. The longest running
//!   cool-down is also kept under a key that expires with it, which a replica reads when it
//!   (re)subscribes: one that starts, or reconnects, during a cool-down learns it too.
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

use super::api::{
    CoolDownNotice, Invalidation, LocalCalls, Namespace, PurgeNotice, Store, StoreError,
    StoreResult, UsersPage,
};
use crate::secret::Secret;

/// Every key the gateway writes starts with this, so a shared Redis stays tidy.
const PREFIX: &str = "sgw";
const INVALIDATION_CHANNEL: &str = "sgw:invalidate";
const PURGE_CHANNEL: &str = "sgw:purge-answers";
const COOL_DOWN_CHANNEL: &str = "sgw:cool-down";
/// The running cool-down's reason, expiring when it ends.
const COOL_DOWN_KEY: &str = "sgw:cool-down";
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

/// Keeps the longer of the stored and the new cool-down under KEYS[1], then publishes the
/// notice on ARGV[3] either way (a replica only ever lengthens its own).
const COOL_DOWN_SCRIPT: &str = r#"
if redis.call("PTTL", KEYS[1]) < tonumber(ARGV[1]) then
  redis.call("SET", KEYS[1], ARGV[2], "PX", ARGV[1])
end
return redis.call("PUBLISH", ARGV[3], ARGV[4])
"#;

/// The shared budget's window: every call in KEYS[1], app-token calls also in KEYS[2]
/// (sorted sets of call times on Redis's clock). Drops calls older than ARGV[1] ms, then adds
/// this one (member ARGV[3]) if fewer than ARGV[2] calls remain and, for an app-token call
/// (ARGV[4] > 0), fewer than ARGV[4] app-token calls; returns 0 when taken, else the ms until
/// there is room (the oldest call in the way leaves the window; with both counts full, the
/// later of the two).
const BUDGET_SCRIPT: &str = r#"
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local app_limit = tonumber(ARGV[4])
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", now - window)
redis.call("ZREMRANGEBYSCORE", KEYS[2], "-inf", now - window)
local function until_room(key)
  local oldest = redis.call("ZRANGE", key, 0, 0, "WITHSCORES")
  return math.max(1, tonumber(oldest[2]) + window - now)
end
local wait = 0
if redis.call("ZCARD", KEYS[1]) >= tonumber(ARGV[2]) then
  wait = until_room(KEYS[1])
end
if app_limit > 0 and redis.call("ZCARD", KEYS[2]) >= app_limit then
  wait = math.max(wait, until_room(KEYS[2]))
end
if wait == 0 then
  local member = now .. ":" .. ARGV[3]
  redis.call("ZADD", KEYS[1], now, member)
  redis.call("PEXPIRE", KEYS[1], window)
  if app_limit > 0 then
    redis.call("ZADD", KEYS[2], now, member)
    redis.call("PEXPIRE", KEYS[2], window)
  end
  return 0
end
return wait
"#;
/// Adds calls made while the shared window could not be reached: ARGV[1] the window (ms),
/// ARGV[2] how many of the ages that follow (from ARGV[4]) are of every call (KEYS[1]); the
/// rest are the app-token calls among them (KEYS[2]). Each is placed at its age before Redis's
/// now, under a member unique to this call (ARGV[3]); then both sets expire with the window.
const ADD_CALLS_SCRIPT: &str = r#"
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local n_all = tonumber(ARGV[2])
for i = 4, #ARGV do
  local age = tonumber(ARGV[i])
  if age < window then
    local at = now - age
    local key = KEYS[1]
    if i - 3 > n_all then
      key = KEYS[2]
    end
    redis.call("ZADD", key, at, at .. ":" .. ARGV[3] .. ":" .. i)
  end
end
redis.call("PEXPIRE", KEYS[1], window)
redis.call("PEXPIRE", KEYS[2], window)
return 1
"#;
const BUDGET_KEY: &str = "sgw:budget";
/// The app-token calls of the shared budget's window.
const BUDGET_APP_KEY: &str = "sgw:budget:app";

pub struct RedisStore {
    client: redis::Client,
    conn: Arc<tokio::sync::OnceCell<ConnectionManager>>,
    home: Handle,
    invalidations: Mutex<Option<mpsc::UnboundedReceiver<Invalidation>>>,
    cool_downs: Mutex<Option<mpsc::UnboundedReceiver<CoolDownNotice>>>,
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
        let (cool_tx, cool_rx) = mpsc::unbounded_channel();
        home.spawn(subscribe_forever(client.clone(), tx, cool_tx));
        Ok(RedisStore {
            client,
            conn: Arc::new(tokio::sync::OnceCell::new()),
            home,
            invalidations: Mutex::new(Some(rx)),
            cool_downs: Mutex::new(Some(cool_rx)),
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
                        // No retry inside the manager: its first retry waits 1 to 2 s
                        // (backon's minimum delay), so an operation after Redis's return
                        // would wait that long. Each failed operation starts a new
                        // reconnection instead, so the first one after the return succeeds.
                        let config = ConnectionManagerConfig::new()
                            .set_connection_timeout(CONNECT_TIMEOUT)
                            .set_response_timeout(RESPONSE_TIMEOUT)
                            .set_number_of_retries(0);
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

/// Keeps one subscription to the invalidation and cool-down channels alive, forever.
async fn subscribe_forever(
    client: redis::Client,
    tx: mpsc::UnboundedSender<Invalidation>,
    cool_downs: mpsc::UnboundedSender<CoolDownNotice>,
) {
    loop {
        if tx.is_closed() && cool_downs.is_closed() {
            return;
        }
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                let channels = [INVALIDATION_CHANNEL, PURGE_CHANNEL, COOL_DOWN_CHANNEL];
                if pubsub.subscribe(&channels).await.is_ok() {
                    // Anything published while we were not subscribed is lost.
                    let _ = tx.send(Invalidation::All);
                    if let Some(running) = running_cool_down(&client).await {
                        let _ = cool_downs.send(running);
                    }
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        let Ok(payload) = msg.get_payload::<String>() else {
                            continue;
                        };
                        match msg.get_channel_name() {
                            COOL_DOWN_CHANNEL => match CoolDownNotice::decode(&payload) {
                                Some(notice) => {
                                    let _ = cool_downs.send(notice);
                                }
                                None => tracing::warn!("unreadable cool-down notice on Redis"),
                            },
                            PURGE_CHANNEL => match PurgeNotice::decode(&payload) {
                                Some(notice) => {
                                    let _ = tx.send(Invalidation::Answers(notice));
                                }
                                None => tracing::warn!("unreadable purge notice on Redis"),
                            },
                            _ => {
                                let _ = tx.send(Invalidation::Key(payload));
                            }
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

/// The cool-down still running (its key and what is left of it), read once per subscription.
async fn running_cool_down(client: &redis::Client) -> Option<CoolDownNotice> {
    let read = async {
        let mut c = client.get_multiplexed_async_connection().await?;
        let (reason, left_ms): (Option<String>, i64) = redis::pipe()
            .get(COOL_DOWN_KEY)
            .pttl(COOL_DOWN_KEY)
            .query_async(&mut c)
            .await?;
        Ok::<_, redis::RedisError>(reason.zip((left_ms > 0).then_some(left_ms)))
    };
    match tokio::time::timeout(OP_TIMEOUT, read).await {
        Ok(Ok(Some((reason, left_ms)))) => CoolDownNotice::decode(&format!("{left_ms}:{reason}")),
        Ok(Ok(None)) => None,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read the running cool-down from Redis");
            None
        }
        Err(_) => {
            tracing::warn!("no answer from Redis in time for the running cool-down");
            None
        }
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
        limit: u32,
        app_limit: Option<u32>,
        window: Duration,
    ) -> StoreResult<Option<Option<Duration>>> {
        let window_ms = window.as_millis() as u64;
        let member: u64 = rand::random();
        self.run("budget", move |mut c| async move {
            let wait_ms = redis::Script::new(BUDGET_SCRIPT)
                .key(BUDGET_KEY)
                .key(BUDGET_APP_KEY)
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

    async fn add_budget_calls(&self, calls: &LocalCalls, window: Duration) -> StoreResult<()> {
        let window_ms = window.as_millis() as u64;
        let nonce: u64 = rand::random();
        let ms = |ages: &[Duration]| {
            ages.iter()
                .map(|a| a.as_millis() as u64)
                .collect::<Vec<_>>()
        };
        let (all, app) = (ms(&calls.all), ms(&calls.app));
        self.run("budget", move |mut c| async move {
            redis::Script::new(ADD_CALLS_SCRIPT)
                .key(BUDGET_KEY)
                .key(BUDGET_APP_KEY)
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
