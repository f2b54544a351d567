//! One `tracing` subscriber for our logs and pingora's (`log` records arrive through the
//! tracing-log bridge). Human-readable by default, JSON when `server.log_format = "json"`.
//! `RUST_LOG` overrides `server.log_level`; SIGHUP can change the level at run time.
//!
//! Secrets never reach the log. Our code never formats a token, code, cookie or secret (they
//! are `Secret`s). Libraries are another matter: at debug and trace level pingora prints whole
//! request headers ("Sending header to upstream ..." — with the injected `Authorization`) and
//! hyper/reqwest print raw bytes. So every library is capped at `info`, whatever level is
//! asked for; only our own crates go more verbose.

use std::sync::OnceLock;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, Layer, Registry};

use crate::config::LogFormat;

/// Crates whose debug/trace output may be as verbose as the operator asks.
const OUR_CRATES: &[&str] = &["spotify_gateway", "access", "mock_spotify"];

type LevelHandle = reload::Handle<EnvFilter, Registry>;
static LEVEL: OnceLock<LevelHandle> = OnceLock::new();

fn env_filter(level: &str) -> EnvFilter {
    std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"))
}

/// Libraries at `info` at most; our crates unrestricted (the level filter decides).
fn caps() -> Targets {
    let mut t = Targets::new().with_default(LevelFilter::INFO);
    for krate in OUR_CRATES {
        t = t.with_target(*krate, LevelFilter::TRACE);
    }
    t
}

pub fn init(format: LogFormat, level: &str) {
    let (filter, handle) = reload::Layer::new(env_filter(level));
    let output = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(output.with_filter(caps()))
        .try_init();
    // A second init (tests, demo) keeps the first subscriber.
    if installed.is_ok() {
        let _ = LEVEL.set(handle);
    }
}

/// Applies a new `server.log_level` (SIGHUP). `RUST_LOG`, when set, still wins.
pub fn set_level(level: &str) -> Result<(), String> {
    let handle = LEVEL.get().ok_or("logging is not initialised")?;
    handle
        .reload(env_filter(level))
        .map_err(|e| format!("cannot change the log level: {e}"))
}
