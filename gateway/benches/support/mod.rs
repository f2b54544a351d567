//! What the criterion benches share: a gateway library set up as `run` sets it up (minus the
//! listeners), and side-by-side ratios read back from criterion's own estimates.
#![allow(dead_code)]

pub mod seed;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::Criterion;
use spotify_gateway::config::Config;
use spotify_gateway::server::state::Gateway;

pub const SESSION_SECRET: &str = "bench-session-secret-0123456789abcdef-0123";

/// A valid config (nothing listens: the benches call the library directly).
pub fn config(store: &str) -> Config {
    let text = format!(
        r#"
[spotify]
client_id = "bench-client-id"
client_secret = "bench-client-secret"
flow = "authorization_code"
redirect_uri = "http://127.0.0.1:18080/auth/callback"
scopes = ["user-read-private", "user-read-email"]
accounts_url = "http://127.0.0.1:18900"
api_url = "http://127.0.0.1:18900"

[listen]
public = "127.0.0.1:18080"
egress = "127.0.0.1:18081"
admin = "127.0.0.1:18090"

[server]
threads = 2
log_level = "warn"

[session]
secret = "{SESSION_SECRET}"

[store]
{store}
"#
    );
    Config::parse(&text, "bench.toml", &|_| None).expect("bench config is valid")
}

/// The gateway's shared state (sessions, keys, metrics) over a memory store.
pub fn gateway() -> Arc<Gateway> {
    Gateway::new(config(r#"backend = "memory""#), None).expect("gateway state")
}

/// Short runs by default: three contenders per group on a 2-core machine. Command-line
/// options (`cargo bench -- --measurement-time 10`) still override these.
pub fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
        .configure_from_args()
}

/// Where criterion writes its estimates (the same rules criterion follows).
fn criterion_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    // The bench runs as <target>/<profile>/deps/<name>-<hash>.
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(|t| t.join("criterion")))
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

/// Median time of one benchmark, in nanoseconds, from criterion's `estimates.json`.
pub fn median_ns(group: &str, id: &str) -> Option<f64> {
    let path = criterion_home()
        .join(group)
        .join(id)
        .join("new")
        .join("estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value["median"]["point_estimate"].as_f64()
}

/// Prints `group: id / baseline = ratio` from the medians just measured; says so when one
/// of them did not run (filtered out, or `--test` mode).
pub fn print_ratio(group: &str, id: &str, baseline: &str) {
    match (median_ns(group, id), median_ns(group, baseline)) {
        (Some(a), Some(b)) if b > 0.0 => println!(
            "ratio {group}: {id} / {baseline} = {:.2} ({} vs {})",
            a / b,
            fmt_ns(a),
            fmt_ns(b)
        ),
        _ => println!("ratio {group}: {id} / {baseline} = n/a (not measured in this run)"),
    }
}

pub fn fmt_ns(ns: f64) -> String {
    if ns >= 1_000_000.0 {
        format!("{:.2} ms", ns / 1_000_000.0)
    } else if ns >= 1_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

/// A single-threaded runtime to drive the async library calls.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}
