//! `[store]`: the backend and, for Redis, its shape (one server, Sentinel, Cluster), the
//! passwords, TLS and its trust, and how long a write waits for a replica.

use std::time::Duration;

use url::Url;

use crate::config::file::*;
use crate::config::values::Validator;
use crate::config::*;
use crate::net::host::HostPort;
use crate::secret::{Secret, SecretSource};

/// `store.replica_wait` with a sentinel or a cluster when not set: long enough for a replica
/// on the same network to acknowledge, short enough that a login or a refresh barely notices
/// a replica that is gone.
const DEFAULT_REPLICA_WAIT: Duration = Duration::from_millis(250);
/// Beyond this a caller's deadline would pass before the write returns.
const MAX_REPLICA_WAIT: Duration = Duration::from_secs(2);

/// The keys that belong to one shape only, with the backend that takes them.
const SHAPE_KEYS: [(&str, &str); 6] = [
    ("url", "redis"),
    ("sentinels", "redis-sentinel"),
    ("master_name", "redis-sentinel"),
    ("sentinel_password_env", "redis-sentinel"),
    ("sentinel_password_file", "redis-sentinel"),
    ("nodes", "redis-cluster"),
];

impl Validator<'_> {
    pub(super) fn store(&mut self, s: FileStore) -> Option<StoreConfig> {
        let FileStore {
            backend,
            path,
            url,
            password_env,
            password_file,
            sentinels,
            master_name,
            sentinel_password_env,
            sentinel_password_file,
            nodes,
            tls,
            ca_file,
            replica_wait,
        } = s;
        let set = [
            url.is_some(),
            sentinels.is_some(),
            master_name.is_some(),
            sentinel_password_env.is_some(),
            sentinel_password_file.is_some(),
            nodes.is_some(),
        ];
        for ((key, owner), is_set) in SHAPE_KEYS.iter().zip(set) {
            if is_set && backend != *owner {
                self.issue(
                    &format!("store.{key}"),
                    format!("only for backend = \"{owner}\""),
                );
            }
        }
        let redis_only = [
            ("password_env", password_env.is_some()),
            ("password_file", password_file.is_some()),
            ("tls", tls.is_some()),
            ("ca_file", ca_file.is_some()),
            ("replica_wait", replica_wait.is_some()),
        ];
        if !backend.starts_with("redis") {
            for (key, _) in redis_only.iter().filter(|(_, is_set)| *is_set) {
                self.issue(&format!("store.{key}"), "only for a Redis backend");
            }
        }
        let shape = match backend.as_str() {
            "file" => {
                return Some(StoreConfig::File {
                    path: PathBuf::from(path.unwrap_or_else(|| "spotify-gateway.redb".into())),
                })
            }
            "memory" => return Some(StoreConfig::Memory),
            "redis" => {
                if tls.is_some() {
                    self.issue("store.tls", "a redis URL says it: use rediss://");
                }
                self.single(url, password_env.clone(), password_file.clone())
                    .map(|url| RedisShape::Single { url })
            }
            "redis-sentinel" => {
                let sentinels = self.nodes("store.sentinels", sentinels);
                let master_name = match master_name {
                    Some(name) if !name.trim().is_empty() => Some(name),
                    _ => {
                        self.issue(
                            "store.master_name",
                            "backend = \"redis-sentinel\" needs the master's name at the \
                             sentinels, such as master_name = \"mymaster\"",
                        );
                        None
                    }
                };
                let sentinel_password = self
                    .secret(
                        "store",
                        "sentinel_password",
                        None,
                        sentinel_password_env,
                        sentinel_password_file,
                    )
                    .ok();
                match (sentinels, master_name, sentinel_password) {
                    (Some(sentinels), Some(master_name), Some(sentinel_password)) => {
                        Some(RedisShape::Sentinel {
                            sentinels,
                            master_name,
                            sentinel_password,
                        })
                    }
                    _ => None,
                }
            }
            "redis-cluster" => self
                .nodes("store.nodes", nodes)
                .map(|nodes| RedisShape::Cluster { nodes }),
            other => {
                self.issue(
                    "store.backend",
                    format!(
                        "{other:?} is not a store; use \"file\", \"redis\", \"redis-sentinel\", \
                         \"redis-cluster\" or \"memory\""
                    ),
                );
                return None;
            }
        };
        let password = match shape {
            // A single server's password went into its URL.
            Some(RedisShape::Single { .. }) | None => None,
            Some(_) => self
                .secret("store", "password", None, password_env, password_file)
                .ok()?,
        };
        let ca_file = match ca_file {
            Some(path) => Some(self.ca_file("store.ca_file", &path)?),
            None => None,
        };
        let replica_wait = match (&replica_wait, &shape) {
            (Some(text), _) => self.duration("store.replica_wait", text)?,
            (None, Some(RedisShape::Single { .. })) => Duration::ZERO,
            (None, _) => DEFAULT_REPLICA_WAIT,
        };
        if replica_wait > MAX_REPLICA_WAIT {
            self.issue(
                "store.replica_wait",
                format!(
                    "at most {}: a login or a refresh waits this long when no replica answers",
                    humantime::format_duration(MAX_REPLICA_WAIT)
                ),
            );
            return None;
        }
        Some(StoreConfig::Redis(RedisConfig {
            shape: shape?,
            password,
            tls: tls.unwrap_or(false),
            ca_file,
            replica_wait,
        }))
    }

    /// `backend = "redis"`: the URL, with the password from its own key added to it.
    fn single(
        &mut self,
        url: Option<String>,
        password_env: Option<String>,
        password_file: Option<String>,
    ) -> Option<Secret> {
        let Some(url) = url else {
            self.issue(
                "store.url",
                "backend = \"redis\" needs url = \"redis://host:6379\"",
            );
            return None;
        };
        let mut full = match Url::parse(&url) {
            Ok(u) if matches!(u.scheme(), "redis" | "rediss") => u,
            Ok(_) => {
                self.url_issue("store.url", &url, "must be a redis:// or rediss:// URL");
                return None;
            }
            Err(e) => {
                self.url_issue("store.url", &url, format_args!("is not a URL: {e}"));
                return None;
            }
        };
        let password = self
            .secret("store", "password", None, password_env, password_file)
            .ok()?;
        // The URL may hold a password itself; it is a secret either way.
        let mut source = SecretSource::Inline;
        if let Some(pw) = password {
            if full.set_password(Some(pw.expose())).is_err() {
                self.issue("store.url", "cannot carry a password (no host)");
                return None;
            }
            source = pw.source().clone();
        }
        Some(Secret::new(full.to_string(), source))
    }

    /// A non-empty list of `host:port` (the port required: Redis has two usual ones).
    fn nodes(&mut self, key: &str, list: Option<Vec<String>>) -> Option<Vec<NodeAddr>> {
        let list = match list {
            Some(list) if !list.is_empty() => list,
            _ => {
                self.issue(key, "needs at least one \"host:port\"");
                return None;
            }
        };
        let mut nodes = Vec::with_capacity(list.len());
        for raw in &list {
            match HostPort::parse(raw) {
                Ok(HostPort {
                    host,
                    port: Some(port),
                }) => nodes.push(NodeAddr {
                    // The Redis client wants an IPv6 literal without its brackets.
                    host: host.trim_start_matches('[').trim_end_matches(']').into(),
                    port,
                }),
                Ok(_) => self.issue(key, format!("{raw:?} needs a port, such as \"{raw}:6379\"")),
                Err(why) => self.issue(key, format!("{raw:?} {why}")),
            }
        }
        (nodes.len() == list.len()).then_some(nodes)
    }
}
