//! Redis with failover, from real processes on loopback: a Sentinel set (one master, one
//! replica, three sentinels: `redis-server --sentinel`) and a Cluster (three masters with one
//! replica each, made by `redis-cli --cluster create`). Timeouts are short (a second or two)
//! so a failover takes seconds; every wait polls a condition with a deadline.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use super::{free_port, wait_until, Secure, READY_TIMEOUT};

/// Sentinel's view of a dead master (`down-after-milliseconds`), and the cluster's
/// (`cluster-node-timeout`). Long enough that a busy test machine's pauses are not taken
/// for a failure, short enough that a failover takes seconds.
const DOWN_AFTER_MS: u64 = 1500;
/// How long a failover may take, from the kill to a new master serving.
pub const FAILOVER_TIMEOUT: Duration = Duration::from_secs(60);
pub const MASTER_NAME: &str = "gwmaster";

/// One `redis-server` process (a data node or a sentinel) on a loopback port.
pub struct RedisNode {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    /// TLS and the password, when the node requires them (`query` uses them).
    secure: Option<(Arc<Secure>, bool)>,
}

impl RedisNode {
    /// Starts `redis-server` with `args` (after the config file `conf`, when given) and waits
    /// until it answers `PING`.
    async fn start(conf: Option<&str>, args: &[String]) -> RedisNode {
        Self::start_secured(conf, args, None).await
    }

    /// The same, over TLS with a password when `secure` is given (`bool`: a sentinel).
    async fn start_secured(
        conf: Option<&str>,
        args: &[String],
        secure: Option<(Arc<Secure>, bool)>,
    ) -> RedisNode {
        let port = free_port();
        let dir = tempfile::tempdir().expect("tmp");
        let mut cmd = Command::new(super::redis_server());
        if let Some(conf) = conf {
            let path = dir.path().join("node.conf");
            std::fs::write(&path, conf.replace("{port}", &port.to_string())).expect("conf");
            cmd.arg(&path);
        }
        let child = cmd
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .args(args)
            .args(
                secure
                    .as_ref()
                    .map(|(s, sentinel)| s.args(port, *sentinel))
                    .unwrap_or_default(),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is missing: run ./scripts/test.sh, which installs it");
        let node = RedisNode {
            child: Some(child),
            port,
            dir,
            secure,
        };
        wait_until(
            READY_TIMEOUT,
            format!("redis-server on {port} to answer"),
            || async {
                node.query::<String>(&mut redis::cmd("PING"))
                    .await
                    .is_some()
            },
        )
        .await;
        node
    }

    /// A server that also speaks TLS, with `cert_pem` and `key_pem`, on the port returned.
    pub async fn start_tls(cert_pem: &str, key_pem: &str) -> (RedisNode, u16) {
        let files = tempfile::tempdir().expect("tmp");
        let (cert, key) = (files.path().join("cert.pem"), files.path().join("key.pem"));
        std::fs::write(&cert, cert_pem).expect("cert");
        std::fs::write(&key, key_pem).expect("key");
        let tls_port = free_port();
        let args = [
            "--tls-port".to_string(),
            tls_port.to_string(),
            "--tls-cert-file".into(),
            cert.display().to_string(),
            "--tls-key-file".into(),
            key.display().to_string(),
            "--tls-auth-clients".into(),
            "no".into(),
        ];
        let node = RedisNode::start(None, &args).await;
        // redis-server has read its files by the time it answers.
        drop(files);
        (node, tls_port)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A command's answer, or `None` when the node does not answer (or answers an error).
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &mut redis::Cmd) -> Option<T> {
        let Some((secure, sentinel)) = &self.secure else {
            return query_port(self.port, cmd).await;
        };
        let ask = async {
            let client = secure.client(self.port, *sentinel)?;
            let mut c = client.get_multiplexed_async_connection().await.ok()?;
            cmd.query_async(&mut c).await.ok()
        };
        tokio::time::timeout(Duration::from_secs(1), ask)
            .await
            .ok()
            .flatten()
    }

    /// Kills the process (SIGKILL: no goodbye to anyone).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for RedisNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A command to the node on `port`, bounded by a second.
pub async fn query_port<T: redis::FromRedisValue>(port: u16, cmd: &mut redis::Cmd) -> Option<T> {
    let ask = async {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
        let mut c = client.get_multiplexed_async_connection().await.ok()?;
        cmd.query_async(&mut c).await.ok()
    };
    tokio::time::timeout(Duration::from_secs(1), ask)
        .await
        .ok()
        .flatten()
}

/// One field of an `INFO` answer.
fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
}

/// A master, its replica and three sentinels watching them (quorum 2).
pub struct SentinelSet {
    pub data: Vec<RedisNode>,
    pub sentinels: Vec<RedisNode>,
}

impl SentinelSet {
    pub async fn start() -> SentinelSet {
        Self::start_secured(None).await
    }

    /// Every node over TLS with its password (`Secure`).
    pub async fn start_secured(secure: Option<Arc<Secure>>) -> SentinelSet {
        let data = || secure.clone().map(|s| (s, false));
        let master = RedisNode::start_secured(None, &[], data()).await;
        let replica = RedisNode::start_secured(
            None,
            &[
                "--replicaof".into(),
                "127.0.0.1".into(),
                master.port.to_string(),
            ],
            data(),
        )
        .await;
        let mut conf = format!(
            "sentinel monitor {MASTER_NAME} 127.0.0.1 {} 2\n\
             sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n\
             sentinel failover-timeout {MASTER_NAME} 10000\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n",
            master.port
        );
        if secure.is_some() {
            conf += &format!(
                "sentinel auth-pass {MASTER_NAME} {}\nsentinel sentinel-pass {}\n",
                Secure::PASSWORD,
                Secure::SENTINEL_PASSWORD
            );
        }
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            let secured = secure.clone().map(|s| (s, true));
            sentinels
                .push(RedisNode::start_secured(Some(&conf), &["--sentinel".into()], secured).await);
        }
        let set = SentinelSet {
            data: vec![master, replica],
            sentinels,
        };
        set.wait_settled().await;
        set
    }

    /// `host:port` of each sentinel, for `store.sentinels`.
    pub fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinels.iter().map(RedisNode::addr).collect()
    }

    /// The port of the master the first answering sentinel names.
    pub async fn master_port(&self) -> Option<u16> {
        for s in &self.sentinels {
            let named: Option<(String, String)> = s
                .query(
                    redis::cmd("SENTINEL")
                        .arg("get-master-addr-by-name")
                        .arg(MASTER_NAME),
                )
                .await;
            if let Some((_, port)) = named {
                return port.parse().ok();
            }
        }
        None
    }

    /// Waits until every sentinel knows the others and the replica, and the replica is in
    /// sync with the master: a failover can happen from then on.
    pub async fn wait_settled(&self) {
        wait_until(FAILOVER_TIMEOUT, "the Sentinel set to settle", || async {
            let Some(master) = self.master_port().await else {
                return false;
            };
            let replica_in_sync = {
                let mut ok = false;
                for node in self
                    .data
                    .iter()
                    .filter(|n| n.is_running() && n.port != master)
                {
                    let info: Option<String> =
                        node.query(redis::cmd("INFO").arg("replication")).await;
                    ok = info.and_then(|i| info_field(&i, "master_link_status"))
                        == Some("up".into());
                }
                ok
            };
            let mut sentinels_agree = true;
            for s in &self.sentinels {
                let m: Option<Vec<(String, String)>> = s
                    .query(redis::cmd("SENTINEL").arg("master").arg(MASTER_NAME))
                    .await
                    .map(|flat: Vec<String>| {
                        flat.chunks(2)
                            .map(|kv| (kv[0].clone(), kv.get(1).cloned().unwrap_or_default()))
                            .collect()
                    });
                let field = |name: &str| {
                    m.as_ref()
                        .and_then(|m| m.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
                };
                sentinels_agree &= field("port") == Some(master.to_string())
                    && field("flags") == Some("master".into())
                    && field("num-other-sentinels") == Some("2".into())
                    && field("num-slaves").is_some_and(|n| n != "0");
            }
            replica_in_sync && sentinels_agree
        })
        .await;
    }

    /// Kills the master (`kill -9`) and returns its port.
    pub async fn kill_master(&mut self) -> u16 {
        let master = self.master_port().await.expect("a master");
        let node = self
            .data
            .iter_mut()
            .find(|n| n.port == master)
            .expect("the master is ours");
        node.kill();
        master
    }

    /// Waits until the sentinels name another master than `old`, and it says it is master.
    pub async fn wait_promoted(&self, old: u16) -> u16 {
        wait_until(FAILOVER_TIMEOUT, "Sentinel to promote the replica", || async {
            match self.master_port().await {
                Some(p) if p != old => {
                    let role: Option<redis::Value> = query_port(p, &mut redis::cmd("ROLE")).await;
                    matches!(role, Some(redis::Value::Array(r)) if r.first() == Some(&redis::Value::BulkString(b"master".to_vec())))
                }
                _ => false,
            }
        })
        .await;
        self.master_port().await.expect("the new master")
    }
}

/// Three masters with one replica each.
pub struct Cluster {
    pub nodes: Vec<RedisNode>,
}

impl Cluster {
    pub async fn start() -> Cluster {
        Self::start_secured(None).await
    }

    /// Every node over TLS (the cluster bus too) with its password (`Secure`).
    pub async fn start_secured(secure: Option<Arc<Secure>>) -> Cluster {
        let mut nodes = Vec::new();
        for _ in 0..6 {
            // The bus port is normally port + 10000, which may not be free (or exist).
            let args = [
                "--cluster-enabled".to_string(),
                "yes".into(),
                "--cluster-config-file".into(),
                "nodes.conf".into(),
                "--cluster-node-timeout".into(),
                DOWN_AFTER_MS.to_string(),
                "--cluster-port".into(),
                free_port().to_string(),
            ];
            let secured = secure.clone().map(|s| (s, false));
            nodes.push(RedisNode::start_secured(None, &args, secured).await);
        }
        let addrs: Vec<String> = nodes.iter().map(RedisNode::addr).collect();
        let mut cli = Command::new("redis-cli");
        if let Some(secure) = &secure {
            cli.args(["--tls", "--cacert", secure.ca.file()]).args([
                "-a",
                Secure::PASSWORD,
                "--no-auth-warning",
            ]);
        }
        let created = cli
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli is missing: run ./scripts/test.sh, which installs it");
        assert!(created.success(), "redis-cli --cluster create failed");
        let cluster = Cluster { nodes };
        cluster.wait_whole(3).await;
        cluster
    }

    /// `host:port` of every node, for `store.nodes`.
    pub fn seeds(&self) -> Vec<String> {
        self.nodes.iter().map(RedisNode::addr).collect()
    }

    /// `CLUSTER NODES` from the first live node that answers.
    async fn nodes_view(&self) -> Option<String> {
        for n in self.nodes.iter().filter(|n| n.is_running()) {
            if let Some(v) = n.query(redis::cmd("CLUSTER").arg("NODES")).await {
                return Some(v);
            }
        }
        None
    }

    /// The ports of the masters that hold slots and are not failing.
    pub async fn master_ports(&self) -> Vec<u16> {
        let view = self.nodes_view().await.unwrap_or_default();
        let mut ports: Vec<u16> = view
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                let flags = f.get(2)?;
                let serving = flags.split(',').any(|x| x == "master")
                    && !flags.split(',').any(|x| x.starts_with("fail"))
                    && f.len() > 8;
                let port = f
                    .get(1)?
                    .split('@')
                    .next()?
                    .rsplit(':')
                    .next()?
                    .parse()
                    .ok()?;
                serving.then_some(port)
            })
            .collect();
        ports.sort();
        ports
    }

    /// Waits until every live node says the cluster is ok, `masters` masters serve the slots,
    /// and each has a replica in sync.
    pub async fn wait_whole(&self, masters: usize) {
        wait_until(FAILOVER_TIMEOUT, "the cluster to be whole", || async {
            for n in self.nodes.iter().filter(|n| n.is_running()) {
                let info: Option<String> = n.query(redis::cmd("CLUSTER").arg("INFO")).await;
                if info.and_then(|i| info_field(&i, "cluster_state")) != Some("ok".into()) {
                    return false;
                }
            }
            self.master_ports().await.len() == masters
        })
        .await;
    }

    /// Waits until every master has a replica whose link to it is up.
    pub async fn wait_replicated(&self) {
        wait_until(
            FAILOVER_TIMEOUT,
            "every master to have a replica in sync",
            || async {
                let masters = self.master_ports().await;
                let mut synced = Vec::new();
                for n in self.nodes.iter().filter(|n| n.is_running()) {
                    let info: Option<String> = n.query(redis::cmd("INFO").arg("replication")).await;
                    let Some(info) = info else { return false };
                    if info_field(&info, "role") == Some("slave".into())
                        && info_field(&info, "master_link_status") == Some("up".into())
                    {
                        synced.extend(
                            info_field(&info, "master_port").and_then(|p| p.parse::<u16>().ok()),
                        );
                    }
                }
                masters.iter().all(|m| synced.contains(m))
            },
        )
        .await;
    }

    /// Kills the node on `port` (`kill -9`).
    pub fn kill(&mut self, port: u16) {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of ours")
            .kill();
    }

    /// The master (of `master_ports`) that holds `key`'s slot, and the slot.
    pub async fn owner_of(&self, key: &str) -> (u16, u16) {
        let any = self.master_ports().await[0];
        let slot: u16 = query_port(any, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))
            .await
            .expect("keyslot");
        for port in self.master_ports().await {
            // Another master answers MOVED (an error: `None`).
            let held: Option<i64> = query_port(port, redis::cmd("EXISTS").arg(key)).await;
            if held.is_some() {
                return (port, slot);
            }
        }
        panic!("no master owns {key}");
    }

    /// Starts moving `slot` from the master on `from` to the one on `to`, as `redis-cli
    /// --cluster reshard` does, and moves its keys: `from` answers `ASK` for them from now.
    pub async fn start_moving(&self, slot: u16, from: u16, to: u16) {
        let id = |port| async move {
            query_port::<String>(port, redis::cmd("CLUSTER").arg("MYID"))
                .await
                .expect("myid")
        };
        let (from_id, to_id) = (id(from).await, id(to).await);
        let setslot = |port, state: &'static str, node: String| async move {
            let done: Option<String> = query_port(
                port,
                redis::cmd("CLUSTER")
                    .arg("SETSLOT")
                    .arg(slot)
                    .arg(state)
                    .arg(node),
            )
            .await;
            assert_eq!(
                done.as_deref(),
                Some("OK"),
                "SETSLOT {slot} {state} on {port}"
            );
        };
        setslot(to, "IMPORTING", from_id).await;
        setslot(from, "MIGRATING", to_id).await;
        let keys: Vec<String> = query_port(
            from,
            redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(1000),
        )
        .await
        .expect("keys in slot");
        let moved: Option<String> = query_port(
            from,
            redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(to)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(&keys),
        )
        .await;
        assert_eq!(moved.as_deref(), Some("OK"), "MIGRATE {keys:?}");
    }

    /// Ends the move `start_moving` began: every master says `slot` is `to`'s, so `from`
    /// answers `MOVED` for it.
    pub async fn finish_moving(&self, slot: u16, from: u16, to: u16) {
        let to_id: String = query_port(to, redis::cmd("CLUSTER").arg("MYID"))
            .await
            .expect("myid");
        let mut masters = vec![to, from];
        masters.extend(
            self.master_ports()
                .await
                .into_iter()
                .filter(|p| *p != to && *p != from),
        );
        for port in masters {
            let done: Option<String> = query_port(
                port,
                redis::cmd("CLUSTER")
                    .arg("SETSLOT")
                    .arg(slot)
                    .arg("NODE")
                    .arg(&to_id),
            )
            .await;
            assert_eq!(done.as_deref(), Some("OK"), "SETSLOT {slot} NODE on {port}");
        }
    }

    /// How many keys match `pattern` on the master on `port`.
    pub async fn keys_on(&self, port: u16, pattern: &str) -> usize {
        let keys: Vec<String> = query_port(port, redis::cmd("KEYS").arg(pattern))
            .await
            .unwrap_or_default();
        keys.len()
    }
}
