//! A session read from each store backend: what a cache miss costs (a session not used in the
//! last 15 minutes, another replica's login, a restart).
//!
//! ```text
//! cargo bench -p spotify-gateway --bench stores
//! ```
//!
//! - `store_get/{memory,file,redis}`: one `Store::get` of a sealed session record among
//!   10 000. Redis runs only when `redis-server` is installed (the bench starts its own on a
//!   free loopback port, no persistence); otherwise it prints why it skipped. Ratios are
//!   against the memory store.
//! - `store_get/unseal_record`: opening and parsing the record once read (AES-256-GCM and
//!   JSON), which every backend adds.

mod support;

use std::hint::black_box;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use spotify_gateway::config::{RedisConfig, RedisShape, StoreConfig};
use spotify_gateway::crypto::{Keyring, Purpose};
use spotify_gateway::secret::Secret;
use spotify_gateway::session::SessionRecord;
use spotify_gateway::store::{self, Namespace, Store};
use spotify_gateway::telemetry::metrics::Metrics;

const RECORDS: usize = 10_000;

/// A sealed record as the gateway stores it, and its key.
fn sealed_records(keys: &Keyring) -> Vec<(String, Vec<u8>)> {
    (0..RECORDS)
        .map(|i| {
            let key = keys.index_key("session", &format!("session-{i}"));
            let plain = serde_json::to_vec(&support::seed::record(i)).expect("json");
            let sealed = keys.seal(Purpose::StoredRecord, key.as_bytes(), &plain);
            (key, sealed.into_bytes())
        })
        .collect()
}

/// Fills a store (file: in one pass of puts, each its own transaction as in production).
fn fill(rt: &tokio::runtime::Runtime, store: &dyn Store, records: &[(String, Vec<u8>)]) {
    rt.block_on(async {
        for (key, value) in records {
            store
                .put(
                    Namespace::Session,
                    key,
                    value.clone(),
                    Duration::from_secs(86_400),
                )
                .await
                .expect("put");
        }
    });
}

fn bench_get(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    name: &str,
    store: &dyn Store,
    key: &str,
) {
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(store.get(Namespace::Session, key).await.expect("get"));
                }
                start.elapsed()
            })
        })
    });
}

/// `redis-server` on a free loopback port, no persistence; killed on drop.
struct RedisServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    fn start() -> Option<RedisServer> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .ok()?
            .port();
        let dir = tempfile::tempdir().ok()?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let server = RedisServer {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(server)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn benches(c: &mut Criterion) {
    let rt = support::runtime();
    let keys = Keyring::new(&Secret::runtime(support::SESSION_SECRET), None);
    let records = sealed_records(&keys);
    let (key, sealed) = records[RECORDS / 2].clone();

    // Opened as the gateway opens them: wrapped in the operation counters.
    let metrics = Arc::new(Metrics::new());
    let open = |cfg: StoreConfig| store::open(&cfg, metrics.clone()).expect("store");
    let memory = open(StoreConfig::Memory);
    fill(&rt, memory.as_ref(), &records);

    let dir = tempfile::tempdir().expect("tmp");
    let file = open(StoreConfig::File {
        path: dir.path().join("bench.redb"),
    });
    fill(&rt, file.as_ref(), &records);

    let redis_server = if which("redis-server") {
        let server = RedisServer::start();
        if server.is_none() {
            println!("note: redis-server did not start; store_get/redis skipped");
        }
        server
    } else {
        println!("note: redis-server is not installed; store_get/redis skipped");
        None
    };
    let redis: Option<Arc<dyn Store>> = redis_server.as_ref().map(|s| {
        let url = Secret::runtime(format!("redis://127.0.0.1:{}", s.port));
        let store = open(StoreConfig::Redis(RedisConfig {
            shape: RedisShape::Single { url },
            password: None,
            tls: false,
            ca_file: None,
            replica_wait: Duration::ZERO,
        }));
        fill(&rt, store.as_ref(), &records);
        store
    });

    let mut g = c.benchmark_group("store_get");
    bench_get(&mut g, &rt, "memory", memory.as_ref(), &key);
    bench_get(&mut g, &rt, "file", file.as_ref(), &key);
    if let Some(redis) = &redis {
        bench_get(&mut g, &rt, "redis", redis.as_ref(), &key);
    }
    g.bench_function("unseal_record", |b| {
        b.iter(|| {
            let text = std::str::from_utf8(black_box(&sealed)).expect("utf-8");
            let plain = keys
                .open(Purpose::StoredRecord, key.as_bytes(), text)
                .expect("opens");
            serde_json::from_slice::<SessionRecord>(&plain).expect("record")
        })
    });
    g.finish();
    support::print_ratio("store_get", "file", "memory");
    if redis.is_some() {
        support::print_ratio("store_get", "redis", "memory");
    }
    support::print_ratio("store_get", "unseal_record", "memory");
    drop(redis);
    drop(redis_server);
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

criterion_group! {
    name = stores;
    config = support::criterion();
    targets = benches
}
criterion_main!(stores);
