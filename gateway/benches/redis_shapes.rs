//! The Redis store on each of its shapes against one server: what a login writes and what a
//! cache miss reads.
//!
//! ```text
//! cargo bench -p spotify-gateway --bench redis_shapes
//! ```
//!
//! - `login_writes/{single,sentinel,cluster}`: the store's share of a login (the callback
//!   takes the pending login, writes the session, adds it to the user's index): its inverse is
//!   the sessions per second one connection can sign in. On Sentinel and Cluster the session
//!   write waits for the replica (`WAIT 1`, `store.replica_wait` 250 ms; a replica on loopback
//!   answers at once); one server does not wait.
//! - `session_read/{single,sentinel,cluster}`: one session read, the egress's overhead on a
//!   call whose session is not in the replica's memory (a call whose session is in memory does
//!   not touch the store, whatever its shape).
//!
//! Every shape runs on loopback (`redis-server`; the sentinel as `redis-server --sentinel`;
//! the cluster made by `redis-cli --cluster create`, three masters with a replica each), no
//! persistence. Ratios are against one server. Skipped, saying why, without `redis-server`.

mod support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use spotify_gateway::config::Config;
use spotify_gateway::store::{self, Namespace, Store};
use spotify_gateway::telemetry::metrics::Metrics;

const MASTER_NAME: &str = "benchmaster";

/// One `redis-server` process; killed on drop.
struct Node {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Node {
    fn start(conf: Option<&str>, args: &[String]) -> Node {
        let port = free_port();
        let dir = tempfile::tempdir().expect("tmp");
        let mut cmd = Command::new("redis-server");
        if let Some(conf) = conf {
            let path = dir.path().join("node.conf");
            std::fs::write(&path, conf).expect("conf");
            cmd.arg(path);
        }
        let child = cmd
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir.path())
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        let node = Node {
            child,
            port,
            _dir: dir,
        };
        wait_for(&format!("redis-server on {port}"), || {
            cli(port, &["PING"]).is_some_and(|a| a == "PONG")
        });
        node
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `redis-cli -p port args…`, its answer when it succeeded.
fn cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A shape running, and the `[store]` table that reaches it.
struct Shape {
    _nodes: Vec<Node>,
    table: String,
}

fn single() -> Shape {
    let node = Node::start(None, &[]);
    let table = format!(
        "backend = \"redis\"\nurl = \"redis://127.0.0.1:{}\"",
        node.port
    );
    Shape {
        _nodes: vec![node],
        table,
    }
}

fn sentinel() -> Shape {
    let master = Node::start(None, &[]);
    let replica = Node::start(
        None,
        &[
            "--replicaof".into(),
            "127.0.0.1".into(),
            master.port.to_string(),
        ],
    );
    let conf = format!(
        "sentinel monitor {MASTER_NAME} 127.0.0.1 {} 1\n",
        master.port
    );
    let sentinel = Node::start(Some(&conf), &["--sentinel".into()]);
    wait_for("the replica to sync", || {
        cli(replica.port, &["INFO", "replication"])
            .is_some_and(|i| i.contains("master_link_status:up"))
    });
    let table = format!(
        "backend = \"redis-sentinel\"\nsentinels = [\"127.0.0.1:{}\"]\nmaster_name = \"{MASTER_NAME}\"",
        sentinel.port
    );
    Shape {
        _nodes: vec![master, replica, sentinel],
        table,
    }
}

fn cluster() -> Shape {
    let nodes: Vec<Node> = (0..6)
        .map(|_| {
            let args = [
                "--cluster-enabled".to_string(),
                "yes".into(),
                "--cluster-config-file".into(),
                "nodes.conf".into(),
                "--cluster-port".into(),
                free_port().to_string(),
            ];
            Node::start(None, &args)
        })
        .collect();
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let created = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", "1", "--cluster-yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("redis-cli");
    assert!(created.success(), "redis-cli --cluster create failed");
    wait_for("the cluster to be ok, with every replica in sync", || {
        nodes.iter().all(|n| {
            let state = cli(n.port, &["CLUSTER", "INFO"]).unwrap_or_default();
            let repl = cli(n.port, &["INFO", "replication"]).unwrap_or_default();
            state.contains("cluster_state:ok")
                && (repl.contains("role:master") && repl.contains("connected_slaves:1")
                    || repl.contains("master_link_status:up"))
        })
    });
    let seeds: Vec<String> = addrs.iter().map(|a| format!("{a:?}")).collect();
    let table = format!(
        "backend = \"redis-cluster\"\nnodes = [{}]",
        seeds.join(", ")
    );
    Shape {
        _nodes: nodes,
        table,
    }
}

/// The store the gateway opens for `table`.
fn open(table: &str) -> Arc<dyn Store> {
    let config: Config = support::config(table);
    store::open(&config.store, Arc::new(Metrics::new())).expect("store")
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

fn benches(c: &mut Criterion) {
    if !which("redis-server") || !which("redis-cli") {
        println!("note: redis-server or redis-cli is not installed; redis_shapes skipped");
        return;
    }
    let rt = support::runtime();
    let shapes = [
        ("single", single()),
        ("sentinel", sentinel()),
        ("cluster", cluster()),
    ];
    let stores: Vec<(&str, Arc<dyn Store>)> = shapes
        .iter()
        .map(|(name, s)| (*name, open(&s.table)))
        .collect();
    let day = Duration::from_secs(86_400);
    let record = vec![7u8; 600];

    let mut g = c.benchmark_group("login_writes");
    for (name, store) in &stores {
        let mut n = 0u64;
        g.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        n += 1;
                        let (state, key) = (format!("state-{n}"), format!("session-{n}"));
                        store
                            .put(Namespace::Pending, &state, record.clone(), day)
                            .await
                            .expect("pending");
                        store.take(Namespace::Pending, &state).await.expect("take");
                        store
                            .put(Namespace::Session, &key, record.clone(), day)
                            .await
                            .expect("session");
                        let user = format!("user-{}", n % 1000);
                        store
                            .add_user_session(&user, &key, day)
                            .await
                            .expect("index");
                    }
                    start.elapsed()
                })
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("session_read");
    for (name, store) in &stores {
        rt.block_on(store.put(Namespace::Session, "read-me", record.clone(), day))
            .expect("put");
        g.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let got = store.get(Namespace::Session, "read-me").await;
                        std::hint::black_box(got.expect("get"));
                    }
                    start.elapsed()
                })
            })
        });
    }
    g.finish();
    for group in ["login_writes", "session_read"] {
        for shape in ["sentinel", "cluster"] {
            support::print_ratio(group, shape, "single");
        }
    }
    drop(stores);
    drop(shapes);
}

criterion_group! {
    name = redis_shapes;
    config = support::criterion();
    targets = benches
}
criterion_main!(redis_shapes);
