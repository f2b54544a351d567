//! Why the gateway did not start, and why a reload changed nothing: one type each, so that
//! `main` prints a failed start in one place (with the exit code its kind calls for) and the
//! SIGHUP handler logs a failed reload in one line. Every message names the key or the part
//! that failed and what the operator can do; none carries a secret.

use std::io;
use std::net::SocketAddr;

use crate::config::ConfigError;
use crate::store::StoreError;

/// What stopped the gateway from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config file cannot be read or is invalid; each issue names its key and line.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listen address is taken: pingora would panic in that listener's thread instead, and
    /// leave a half-started process behind.
    #[error("{key} = \"{addr}\": cannot listen there ({source}); is another process using it?")]
    Listen {
        key: &'static str,
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// The TLS trust (the system store, a `ca_file`) or a client built on it: the token
    /// client, the webhook client. The message names the key.
    #[error(transparent)]
    Clients(io::Error),
    /// The session store cannot be opened (a file in use, Redis' URL).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A part of the built-in demo (its mock Spotify, its sample app, its test CA).
    #[error("the demo's {part}: {source}")]
    Demo {
        part: &'static str,
        #[source]
        source: io::Error,
    },
}

impl StartError {
    /// The process' exit code: 2 for a config the operator must fix (as `check-config`),
    /// 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Config(_) => 2,
            _ => 1,
        }
    }
}

/// Why a reload (SIGHUP) changed nothing: the running config stays as it was.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("this gateway runs the built-in demo config; there is no file to reload")]
    NoConfigFile,
    /// The new file cannot be read or is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `server.log_level` names no level the logger takes.
    #[error("server.log_level: {0}")]
    LogLevel(String),
    /// The file adds, removes or renames an app (`[[apps]]`): each app is wired at start.
    #[error(
        "apps changed (added: {}; removed: {}): adding, removing or renaming an app needs \
         a restart",
        names(added),
        names(removed)
    )]
    AppsChanged {
        added: Vec<String>,
        removed: Vec<String>,
    },
}

/// `a, b`, or `none`.
fn names(list: &[String]) -> String {
    if list.is_empty() {
        "none".to_string()
    } else {
        list.join(", ")
    }
}
