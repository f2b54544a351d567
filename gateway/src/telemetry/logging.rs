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

/// [`env_filter`] with the audit target always on (`log_level = "warn"` or `"off"` included).
fn with_audit(filter: EnvFilter) -> EnvFilter {
    match format!("{}=info", crate::events::AUDIT_TARGET).parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

/// Libraries at `info` at most; our crates unrestricted (the level filter decides).
fn caps() -> Targets {
    let mut t = Targets::new().with_default(LevelFilter::INFO);
    for krate in OUR_CRATES {
        t = t.with_target(*krate, LevelFilter::TRACE);
    }
    // Printed by their own layer, as bare JSON lines.
    t.with_target(crate::events::AUDIT_TARGET, LevelFilter::OFF)
}

/// The `log` crate's own level gate, for the libraries that log through it (pingora). Its
/// records are capped at `info` anyway (see [`caps`]); setting the gate to that cap (or lower,
/// with the filter) lets their `debug!`/`trace!` calls return at one atomic load instead of
/// asking the subscriber on every request.
fn log_crate_level(filter: &EnvFilter) -> log::LevelFilter {
    let level = filter
        .max_level_hint()
        .unwrap_or(LevelFilter::TRACE)
        .min(LevelFilter::INFO);
    match level.into_level() {
        None => log::LevelFilter::Off,
        Some(tracing::Level::ERROR) => log::LevelFilter::Error,
        Some(tracing::Level::WARN) => log::LevelFilter::Warn,
        Some(_) => log::LevelFilter::Info,
    }
}

pub fn init(format: LogFormat, level: &str) {
    let filter = env_filter(level);
    let log_level = log_crate_level(&filter);
    let (filter, handle) = reload::Layer::new(with_audit(filter));
    // Colour codes only for a person at a terminal: in a file, a pipe or a log collector they
    // are noise that breaks grep and parsers.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let output = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(output.with_filter(caps()))
        .with(crate::events::AuditLayer.with_filter(
            Targets::new().with_target(crate::events::AUDIT_TARGET, LevelFilter::INFO),
        ))
        .try_init();
    // A second init (tests, demo) keeps the first subscriber.
    if installed.is_ok() {
        log::set_max_level(log_level);
        let _ = LEVEL.set(handle);
    }
}

/// Applies a new `server.log_level` (SIGHUP). `RUST_LOG`, when set, still wins.
pub fn set_level(level: &str) -> Result<(), String> {
    let handle = LEVEL.get().ok_or("logging is not initialised")?;
    let filter = env_filter(level);
    let log_level = log_crate_level(&filter);
    handle
        .reload(with_audit(filter))
        .map_err(|e| format!("cannot change the log level: {e}"))?;
    log::set_max_level(log_level);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_crate_gate_follows_the_filter_capped_at_info() {
        for (filter, expected) in [
            ("off", log::LevelFilter::Off),
            ("error", log::LevelFilter::Error),
            ("warn", log::LevelFilter::Warn),
            ("info", log::LevelFilter::Info),
            ("trace", log::LevelFilter::Info),
            ("warn,spotify_gateway=trace", log::LevelFilter::Info),
        ] {
            assert_eq!(
                log_crate_level(&EnvFilter::new(filter)),
                expected,
                "{filter}"
            );
        }
    }
}
