//! The way to Redis in each of its three shapes, and following it through a failover.
//!
//! - One server (`redis`): the crate's `ConnectionManager`, which reconnects to the same
//!   address by itself.
//! - Sentinel (`redis-sentinel`): the crate's `SentinelClient` names the master (it asks the
//!   sentinels, then checks that the node it names says it is master), and a multiplexed
//!   connection to it is kept until a command fails in a way a failover explains (the node
//!   is gone, stopped answering, or is a replica now: `READONLY`). Then it is dropped and the
//!   next command asks the sentinels again, so the gateway follows the new master within a
//!   command or two of Sentinel promoting it, without a restart.
//! - Cluster (`redis-cluster`): the crate's async cluster client, which learns the slot map
//!   from the seed nodes and follows `MOVED`/`ASK` itself. It does not learn the map again
//!   when a master dies: it keeps dialling the dead address and falls back to a random node,
//!   which answers right only by luck. So the gateway makes a new cluster connection (a
//!   fresh map from the seeds) when a command fails the way a dead node explains, when the
//!   set of masters changes, or when `/readyz` finds that the node the map names for a
//!   master's slot is not that master — at most once a second. The crate has no hook for
//!   the redirections it follows, but it talks to each node through a connection type it is
//!   given (`Connect`): ours, `Noted`, is the crate's multiplexed connection that notes every
//!   `MOVED` and `ASK` a node answers before the crate follows it (`redirections()`;
//!   process-wide, since the crate makes these connections itself). The gateway also sees
//!   the set of masters (`CLUSTER NODES`, read at every session count and readiness check),
//!   and it counts a change of that set as a failover.
//!
//! Subscriptions need one plain connection: to the server, to the master Sentinel names, or
//! on a cluster to any one node, since a classic `PUBLISH` on a cluster reaches every node
//! (masters and replicas) over the cluster bus. The subscriber moves to the next seed node
//! when its node goes away and then forgets its cache, as after any lost subscription.
//!
//! Why this file is over 600 lines: the three shapes' connections, the cluster's readiness
//! check and its redirection-noting connection type all follow one failover rule (when to drop
//! a connection, when to learn the map again); its unit tests of the `CLUSTER NODES` and `ROLE`
//! parsing sit beside that rule.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex as StdMutex;
use std::time::{Duration, Instant};

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClient;
use redis::cluster_async::{ClusterConnection, Connect};
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ErrorKind, IntoConnectionInfo, RedisError,
    RedisFuture, RedisResult,
};

use crate::config::{NodeAddr, RedisConfig, RedisShape};

/// Bounds for one Redis round trip; the hot path never waits longer on a dead Redis.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
pub(super) const RESPONSE_TIMEOUT: Duration = Duration::from_millis(1000);
/// A new cluster connection (a fresh slot map) at most this often, however many commands fail.
const REMAP_INTERVAL: Duration = Duration::from_secs(1);

/// What the link saw of the masters, for the store's metrics and log.
pub(super) trait Watcher: Send + Sync {
    /// The master (Sentinel) or the set of masters (Cluster), sorted, now; `previous` is what
    /// it was (empty the first time).
    fn masters(&self, now: &[String], previous: &[String]);
}

/// A connection to the current master or the cluster; cheap to clone.
#[derive(Clone)]
pub(super) enum Conn {
    Server(ConnectionManager),
    Master(MultiplexedConnection),
    Cluster(ClusterConnection<Noted>),
}

/// `MOVED` and `ASK` answers seen from cluster nodes since the process started (the crate
/// followed each).
static MOVED: AtomicU64 = AtomicU64::new(0);
static ASKED: AtomicU64 = AtomicU64::new(0);
/// When a redirection was last logged (ms since the epoch): at most one line a second.
static LOGGED_MS: AtomicU64 = AtomicU64::new(0);

/// How many `MOVED` and `ASK` redirections the cluster connections of this process have
/// followed.
pub(super) fn redirections() -> (u64, u64) {
    (MOVED.load(Ordering::Relaxed), ASKED.load(Ordering::Relaxed))
}

/// A node's answer was a redirection (`MOVED 3999 127.0.0.1:6381`): count it, and log it (a
/// line a second at most, with the totals, since a slot's migration redirects every command
/// on its keys).
fn note_redirection(code: &str, details: Option<&str>) {
    let (counter, kind) = match code {
        "MOVED" => (&MOVED, "MOVED"),
        "ASK" => (&ASKED, "ASK"),
        _ => return,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    let now = crate::clock::now_ms();
    let last = LOGGED_MS.load(Ordering::Relaxed);
    if now.saturating_sub(last) >= 1000
        && LOGGED_MS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        let (moved, asked) = redirections();
        tracing::info!(
            redirect = kind,
            slot_and_node = details.unwrap_or("?"),
            moved_total = moved,
            ask_total = asked,
            "Redis Cluster redirected a command; following it"
        );
    }
}

/// Notes a redirection in a node's answer: the multiplexed connection hands a node's error
/// back as a value (`Value::ServerError`), which the crate turns into an error after us.
fn note_value(answer: &redis::Value) {
    if let redis::Value::ServerError(e) = answer {
        note_redirection(e.code(), e.details());
    }
}

/// The same, for an answer that came back as an error.
fn note_error(e: &RedisError) {
    let code = match e.kind() {
        ErrorKind::Moved => "MOVED",
        ErrorKind::Ask => "ASK",
        _ => return,
    };
    note_redirection(code, e.detail());
}

/// The connection to one cluster node the crate uses: its multiplexed connection, noting the
/// redirections nodes answer (the crate then follows them).
#[derive(Clone)]
pub(super) struct Noted(MultiplexedConnection);

impl Connect for Noted {
    fn connect_with_config<'a, T>(info: T, config: AsyncConnectionConfig) -> RedisFuture<'a, Self>
    where
        T: IntoConnectionInfo + Send + 'a,
    {
        Box::pin(async move {
            let conn = MultiplexedConnection::connect_with_config(info, config).await?;
            Ok(Noted(conn))
        })
    }
}

impl ConnectionLike for Noted {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        let answer = self.0.req_packed_command(cmd);
        Box::pin(async move {
            let answer = answer.await;
            match &answer {
                Ok(value) => note_value(value),
                Err(e) => note_error(e),
            }
            answer
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        let answer = self.0.req_packed_commands(cmd, offset, count);
        Box::pin(async move {
            let answer = answer.await;
            match &answer {
                Ok(values) => values.iter().for_each(note_value),
                Err(e) => note_error(e),
            }
            answer
        })
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Server(c) => c.req_packed_command(cmd),
            Conn::Master(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Server(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Master(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Server(c) => c.get_db(),
            Conn::Master(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl Conn {
    /// `WAIT 1 <ms>` on the connection that took the write to `key` (on a cluster, the master
    /// of its slot): how many replicas hold every write before it. `WAIT` blocks the whole
    /// (multiplexed) connection while it waits, so it is sent only when `ROLE` names a
    /// connected replica: a master left without one (after a failover, until the old master
    /// comes back as a replica) answers 0 at once instead of stalling every other command.
    pub(super) async fn wait_for_replica(&mut self, key: &str, wait: Duration) -> RedisResult<i64> {
        let role = self.on_master_of(key, &redis::cmd("ROLE")).await?;
        if connected_replicas(&role) == 0 {
            return Ok(0);
        }
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(1).arg(wait.as_millis() as u64);
        redis::from_redis_value(&self.on_master_of(key, &cmd).await?)
    }

    /// `cmd` on the node that holds `key` (the connection itself but on a cluster).
    async fn on_master_of(&mut self, key: &str, cmd: &redis::Cmd) -> RedisResult<redis::Value> {
        match self {
            Conn::Cluster(c) => {
                let route = Route::new(super::keys::slot(key), SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                c.route_command(cmd, routing).await
            }
            other => cmd.query_async(other).await,
        }
    }

    /// Every master's `host:port`, sorted (one server or the Sentinel master: none, the
    /// connection is the master).
    pub(super) async fn cluster_masters(&mut self) -> RedisResult<Vec<String>> {
        let Conn::Cluster(c) = self else {
            return Ok(Vec::new());
        };
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary);
        let nodes: String = redis::from_redis_value(
            &c.route_command(redis::cmd("CLUSTER").arg("NODES"), routing)
                .await?,
        )?;
        Ok(masters_of(&nodes))
    }

    /// How many keys match `pattern`, on every master.
    pub(super) async fn count_keys(&mut self, pattern: &str) -> RedisResult<usize> {
        let Conn::Cluster(c) = self else {
            return scan_count(self, pattern, None).await;
        };
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary);
        let nodes: String = redis::from_redis_value(
            &c.route_command(redis::cmd("CLUSTER").arg("NODES"), routing)
                .await?,
        )?;
        let mut n = 0;
        for owner in slot_owners(&nodes) {
            n += scan_count(self, pattern, Some(owner.slot)).await?;
        }
        Ok(n)
    }

    /// `PING`; on a cluster, `CLUSTER MYID` by one slot of every master that holds slots:
    /// the store is whole only if no node flags a master as failing, and the node the
    /// gateway's slot map sends each slot to answers and is the master the cluster names for
    /// it (a `PING` would not tell: the crate falls back to a random node when the one it
    /// knows is gone, and any node answers `PING`). A map found behind is an error
    /// ([`MAP_BEHIND`]) that makes the link learn the map again.
    pub(super) async fn ping(&mut self) -> RedisResult<()> {
        let Conn::Cluster(c) = self else {
            return redis::cmd("PING")
                .query_async::<String>(self)
                .await
                .map(|_| ());
        };
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary);
        let nodes: String = redis::from_redis_value(
            &c.route_command(redis::cmd("CLUSTER").arg("NODES"), routing)
                .await?,
        )?;
        let myid = redis::cmd("CLUSTER").arg("MYID").to_owned();
        for owner in slot_owners(&nodes) {
            if owner.failing {
                return Err(RedisError::from((
                    ErrorKind::ClusterDown,
                    "a master is failing",
                    owner.addr,
                )));
            }
            let route = Route::new(owner.slot, SlotAddr::Master);
            let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
            let answered: String =
                redis::from_redis_value(&c.route_command(&myid, routing).await?)?;
            if answered != owner.id {
                return Err(RedisError::from((
                    ErrorKind::ClusterDown,
                    MAP_BEHIND,
                    format!("slot {} is on {}", owner.slot, owner.addr),
                )));
            }
        }
        Ok(())
    }
}

/// How many replicas a master's `ROLE` answer lists as connected
/// (`["master", offset, [[ip, port, offset], …]]`).
fn connected_replicas(role: &redis::Value) -> usize {
    match role {
        redis::Value::Array(parts) => match parts.get(2) {
            Some(redis::Value::Array(replicas)) => replicas.len(),
            _ => 0,
        },
        _ => 0,
    }
}

/// `SCAN`s a node (on a cluster the master of `slot`: by a slot rather than an address, the
/// crate connects to the owner it knows) to the end, counting the keys.
async fn scan_count(conn: &mut Conn, pattern: &str, slot: Option<u16>) -> RedisResult<usize> {
    let mut n = 0;
    let mut cursor: u64 = 0;
    loop {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000);
        let (next, keys): (u64, Vec<String>) = match (&mut *conn, slot) {
            (Conn::Cluster(c), Some(slot)) => {
                let route = Route::new(slot, SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                redis::from_redis_value(&c.route_command(&cmd, routing).await?)?
            }
            (other, _) => cmd.query_async(other).await?,
        };
        n += keys.len();
        if next == 0 {
            return Ok(n);
        }
        cursor = next;
    }
}

/// The error detail of a readiness check that found the gateway's slot map behind the
/// cluster's.
const MAP_BEHIND: &str = "the gateway's slot map is behind the cluster's";

/// A master in a `CLUSTER NODES` answer that holds slots.
struct SlotOwner {
    id: String,
    /// `host:port`.
    addr: String,
    /// Whether a node flags it as failing.
    failing: bool,
    /// The first slot it holds.
    slot: u16,
}

fn slot_owners(nodes: &str) -> Vec<SlotOwner> {
    nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (id, addr, flags) = (fields.first()?, fields.get(1)?, fields.get(2)?);
            let is_master = flags.split(',').any(|f| f == "master");
            let failing = flags.split(',').any(|f| f == "fail" || f == "fail?");
            // Fields 9 and on are the slots: `0-5460`, `5461`, or `[…]` for a slot moving.
            let slot = fields
                .get(8..)?
                .iter()
                .find_map(|range| range.split('-').next()?.parse().ok())?;
            let addr = addr.split('@').next()?.split(',').next()?;
            is_master.then(|| SlotOwner {
                id: id.to_string(),
                addr: addr.to_string(),
                failing,
                slot,
            })
        })
        .collect()
}

/// The masters in a `CLUSTER NODES` answer that are not failing, as `host:port`, sorted.
fn masters_of(nodes: &str) -> Vec<String> {
    let mut masters: Vec<String> = nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (addr, flags) = (fields.get(1)?, fields.get(2)?);
            let is_master = flags.split(',').any(|f| f == "master");
            let failing = flags.split(',').any(|f| f == "fail" || f == "fail?");
            // `ip:port@cport[,hostname]`
            let addr = addr.split('@').next()?;
            (is_master && !failing && !addr.starts_with(':')).then(|| addr.to_string())
        })
        .collect();
    masters.sort();
    masters
}

/// How to reach the data, per shape.
enum Shape {
    Server(Client),
    Sentinel {
        client: tokio::sync::Mutex<SentinelClient>,
    },
    Cluster {
        client: ClusterClient,
        /// Plain clients to the seed nodes, for the subscription.
        seeds: Vec<Client>,
        next_seed: AtomicUsize,
    },
}

/// The connection of one store, made when first needed and again after a failover.
pub(super) struct Link {
    shape: Shape,
    current: tokio::sync::Mutex<Option<Conn>>,
    /// The master(s) last seen, to tell a failover.
    masters: StdMutex<Vec<String>>,
    /// When the cluster connection was last dropped to learn the slot map again.
    remapped: StdMutex<Option<Instant>>,
    watcher: Box<dyn Watcher>,
}

impl Link {
    /// Builds the clients (nothing is connected yet); `roots` is the PEM bundle trusted over
    /// TLS (the system's and `store.ca_file`).
    pub(super) fn new(
        cfg: &RedisConfig,
        roots: Option<Vec<u8>>,
        watcher: Box<dyn Watcher>,
    ) -> RedisResult<Link> {
        let certs = || redis::TlsCertificates {
            client_tls: None,
            root_cert: roots.clone(),
        };
        let password = cfg.password.as_ref().map(|p| p.expose().to_string());
        let shape = match &cfg.shape {
            RedisShape::Single { url } => {
                let info = redis::IntoConnectionInfo::into_connection_info(url.expose())?;
                let tls = matches!(info.addr, ConnectionAddr::TcpTls { .. });
                Shape::Server(if tls {
                    Client::build_with_tls(info, certs())?
                } else {
                    Client::open(info)?
                })
            }
            RedisShape::Sentinel {
                sentinels,
                master_name,
                sentinel_password,
            } => {
                let addrs = sentinels.iter().map(|n| node_addr(n, cfg.tls));
                let mut b = SentinelClientBuilder::new(
                    addrs,
                    master_name.clone(),
                    SentinelServerType::Master,
                )?;
                if let Some(pw) = sentinel_password {
                    b = b.set_client_to_sentinel_password(pw.expose().to_string());
                }
                if let Some(pw) = &password {
                    b = b.set_client_to_redis_password(pw.clone());
                }
                if cfg.tls {
                    b = b
                        .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure)
                        .set_client_to_sentinel_certificates(certs())
                        .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
                        .set_client_to_redis_certificates(certs());
                }
                Shape::Sentinel {
                    client: tokio::sync::Mutex::new(b.build()?),
                }
            }
            RedisShape::Cluster { nodes } => {
                let infos: Vec<redis::ConnectionInfo> = nodes
                    .iter()
                    .map(|n| redis::ConnectionInfo {
                        addr: node_addr(n, cfg.tls),
                        redis: redis::RedisConnectionInfo {
                            password: password.clone(),
                            ..Default::default()
                        },
                    })
                    .collect();
                let mut b = ClusterClient::builder(infos.clone())
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(RESPONSE_TIMEOUT)
                    // A few quick retries ride over a slot's move; the store's own bound
                    // (`OP_TIMEOUT`) caps them.
                    .retries(3)
                    .min_retry_wait(50)
                    .max_retry_wait(250);
                if cfg.tls {
                    b = b.tls(redis::TlsMode::Secure).certs(certs());
                }
                let seeds = infos
                    .into_iter()
                    .map(|info| {
                        if cfg.tls {
                            Client::build_with_tls(info, certs())
                        } else {
                            Client::open(info)
                        }
                    })
                    .collect::<RedisResult<Vec<_>>>()?;
                Shape::Cluster {
                    client: b.build()?,
                    seeds,
                    next_seed: AtomicUsize::new(0),
                }
            }
        };
        Ok(Link {
            shape,
            current: tokio::sync::Mutex::new(None),
            masters: StdMutex::new(Vec::new()),
            remapped: StdMutex::new(None),
            watcher,
        })
    }

    /// The connection, made now if there is none (or the last one was dropped).
    pub(super) async fn conn(&self) -> RedisResult<Conn> {
        let mut current = self.current.lock().await;
        if let Some(conn) = current.as_ref() {
            return Ok(conn.clone());
        }
        let conn = match &self.shape {
            Shape::Server(client) => {
                // No retry inside the manager: its first retry waits 1 to 2 s (backon's
                // minimum delay), so an operation after Redis's return would wait that long.
                // Each failed operation starts a new reconnection instead, so the first one
                // after the return succeeds.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(CONNECT_TIMEOUT)
                    .set_response_timeout(RESPONSE_TIMEOUT)
                    .set_number_of_retries(0);
                Conn::Server(client.get_connection_manager_with_config(config).await?)
            }
            Shape::Sentinel { client } => {
                let master = client.lock().await.async_get_client().await?;
                self.saw_masters(vec![master.get_connection_info().addr.to_string()]);
                Conn::Master(
                    master
                        .get_multiplexed_async_connection_with_config(&node_config())
                        .await?,
                )
            }
            Shape::Cluster { client, .. } => {
                // The generic connection (documented as hidden, kept by the pinned crate) is
                // the only way to see the redirections: see the module's comment.
                let mut conn = Conn::Cluster(client.get_async_generic_connection::<Noted>().await?);
                if let Ok(masters) = conn.cluster_masters().await {
                    self.saw_masters(masters);
                }
                conn
            }
        };
        *current = Some(conn.clone());
        Ok(conn)
    }

    /// A connection for one read: a new one to `node` (the server or the master), or on a
    /// cluster the cluster connection.
    pub(super) async fn conn_for_one_read(&self, node: &Client) -> RedisResult<Conn> {
        match &self.shape {
            Shape::Cluster { .. } => self.conn().await,
            _ => Ok(Conn::Master(
                node.get_multiplexed_async_connection_with_config(&node_config())
                    .await?,
            )),
        }
    }

    /// A command on the connection failed (or did not answer in time: `error` is `None`).
    /// An error a failover explains drops the connection: for Sentinel, so the next command
    /// asks the sentinels for the master again; on a cluster, so the next command learns the
    /// slot map again (at most once per [`REMAP_INTERVAL`]).
    pub(super) fn failed(&self, error: Option<&RedisError>) {
        let failover = error.is_none_or(|e| {
            e.is_io_error()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_timeout()
                || e.is_unrecoverable_error()
                || matches!(
                    e.kind(),
                    ErrorKind::ReadOnly
                        | ErrorKind::MasterDown
                        | ErrorKind::ClusterDown
                        | ErrorKind::Moved
                        | ErrorKind::ClusterConnectionNotFound
                )
        });
        match self.shape {
            Shape::Sentinel { .. } if failover => self.drop_connection(),
            Shape::Cluster { .. } if failover => self.remap(),
            _ => {}
        }
    }

    /// Drops the connection unless it is being made right now (then it is new anyway).
    fn drop_connection(&self) {
        if let Ok(mut current) = self.current.try_lock() {
            *current = None;
        }
    }

    /// On a cluster: drops the cluster connection so the next command makes a new one with a
    /// fresh slot map, unless that was done within [`REMAP_INTERVAL`].
    fn remap(&self) {
        let mut remapped = self.remapped.lock().unwrap_or_else(|p| p.into_inner());
        if remapped.is_some_and(|at| at.elapsed() < REMAP_INTERVAL) {
            return;
        }
        *remapped = Some(Instant::now());
        self.drop_connection();
    }

    /// The set of masters seen now (Cluster: at a session count). A change on a cluster
    /// also makes the next command learn the slot map again.
    pub(super) fn saw_masters(&self, now: Vec<String>) {
        let mut masters = self.masters.lock().unwrap_or_else(|p| p.into_inner());
        if *masters != now {
            let first = masters.is_empty();
            self.watcher.masters(&now, &masters);
            *masters = now;
            drop(masters);
            if !first && matches!(self.shape, Shape::Cluster { .. }) {
                self.remap();
            }
        }
    }

    /// A client for one subscription: the server, the master, or the next cluster seed.
    pub(super) async fn pubsub_client(&self) -> RedisResult<Client> {
        match &self.shape {
            Shape::Server(client) => Ok(client.clone()),
            Shape::Sentinel { client } => client.lock().await.async_get_client().await,
            Shape::Cluster {
                seeds, next_seed, ..
            } => {
                let i = next_seed.fetch_add(1, Ordering::Relaxed);
                Ok(seeds[i % seeds.len()].clone())
            }
        }
    }
}

/// Timeouts for a plain connection to a node.
fn node_config() -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(RESPONSE_TIMEOUT)
}

fn node_addr(node: &NodeAddr, tls: bool) -> ConnectionAddr {
    if tls {
        ConnectionAddr::TcpTls {
            host: node.host.clone(),
            port: node.port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(node.host.clone(), node.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_are_counted_from_role() {
        use redis::Value::{Array, BulkString, Int};
        let replica = |port: &str| {
            Array(vec![
                BulkString(b"127.0.0.1".to_vec()),
                BulkString(port.as_bytes().to_vec()),
                BulkString(b"42".to_vec()),
            ])
        };
        let role = |replicas| {
            Array(vec![
                BulkString(b"master".to_vec()),
                Int(42),
                Array(replicas),
            ])
        };
        assert_eq!(connected_replicas(&role(vec![])), 0);
        assert_eq!(
            connected_replicas(&role(vec![replica("7001"), replica("7002")])),
            2
        );
        assert_eq!(connected_replicas(&BulkString(b"slave".to_vec())), 0);
    }

    #[test]
    fn masters_are_read_from_cluster_nodes() {
        let nodes = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
a2 127.0.0.1:7002@17002 master - 0 0 2 connected 5461-10922
a3 127.0.0.1:7003@17003 master,fail - 0 0 3 connected
a4 127.0.0.1:7004@17004 slave a1 0 0 1 connected
a5 127.0.0.1:7006@17006,redis-6.example master - 0 0 4 connected 10923-16383
a6 :0@0 master,noaddr - 0 0 0 disconnected
";
        assert_eq!(
            masters_of(nodes),
            ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7006"]
        );
        let owners: Vec<_> = slot_owners(nodes)
            .into_iter()
            .map(|o| (o.id, o.addr, o.failing, o.slot))
            .collect();
        let owner =
            |id: &str, addr: &str, failing, slot| (id.to_string(), addr.to_string(), failing, slot);
        assert_eq!(
            owners,
            [
                owner("a1", "127.0.0.1:7001", false, 0),
                owner("a2", "127.0.0.1:7002", false, 5461),
                owner("a5", "127.0.0.1:7006", false, 10923),
            ]
        );
        let failing = "a3 127.0.0.1:7003@17003 master,fail? - 0 0 3 connected 0-100\n";
        let failing: Vec<_> = slot_owners(failing)
            .into_iter()
            .map(|o| (o.id, o.addr, o.failing, o.slot))
            .collect();
        assert_eq!(failing, [owner("a3", "127.0.0.1:7003", true, 0)]);
    }
}
