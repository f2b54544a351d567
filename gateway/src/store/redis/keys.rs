//! The names the gateway's keys have on Redis, per shape.
//!
//! On one server and on Sentinel (one keyspace) the names are those every release has used,
//! so a store written by an earlier release, or moved from one server to a Sentinel set,
//! keeps its sessions. On a Cluster a script's keys must share a slot, so the keys scripts use
//! together carry a hash tag (`{…}`): the budget's two windows one tag, and the user index
//! split into [`USER_BUCKETS`] tagged buckets (each a user list and its users' session sets),
//! so it spreads over the masters while each user's script stays in one slot. Session records,
//! locks and the cool-down are single keys and need no tag.

use crate::store::api::Namespace;

/// Every key the gateway writes starts with this, so a shared Redis stays tidy.
const PREFIX: &str = "sgw";
pub(super) const INVALIDATION_CHANNEL: &str = "sgw:invalidate";
pub(super) const PURGE_CHANNEL: &str = "sgw:purge-answers";
pub(super) const COOL_DOWN_CHANNEL: &str = "sgw:cool-down";
/// The running cool-down's reason, expiring when it ends.
pub(super) const COOL_DOWN_KEY: &str = "sgw:cool-down";
/// Buckets of the user index on a cluster: enough to spread over a few masters; the admin
/// listing reads every bucket per page.
const USER_BUCKETS: u32 = 16;
/// The slots a cluster has (Redis Cluster specification, "Key distribution model").
const CLUSTER_SLOTS: u16 = 16384;

/// The key layout of one shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Keys {
    cluster: bool,
}

impl Keys {
    pub(super) fn new(cluster: bool) -> Keys {
        Keys { cluster }
    }

    /// A record of a namespace (one key, any slot).
    pub(super) fn record(self, ns: Namespace, key: &str) -> String {
        format!("{PREFIX}:{}:{key}", ns.name())
    }

    /// The `SCAN` pattern of a namespace's records.
    pub(super) fn records(self, ns: Namespace) -> String {
        self.record(ns, "*")
    }

    pub(super) fn lock(self, name: &str) -> String {
        format!("{PREFIX}:lock:{name}")
    }

    /// The shared budget's window of every call, and of app-token calls (one slot), of a
    /// developer account: `None`, the default account, keeps the names earlier releases used
    /// (an upgrade keeps the running window); another account's carry `~NAME`, which no
    /// earlier name does.
    pub(super) fn budget(self, account: Option<&str>) -> (String, String) {
        let base = match account {
            Some(name) => format!("budget~{name}"),
            None => "budget".to_string(),
        };
        if self.cluster {
            (
                format!("{PREFIX}:{{{base}}}"),
                format!("{PREFIX}:{{{base}}}:app"),
            )
        } else {
            (format!("{PREFIX}:{base}"), format!("{PREFIX}:{base}:app"))
        }
    }

    /// The sorted set of a user's sessions (the user → sessions index).
    pub(super) fn user_sessions(self, user_id: &str) -> String {
        match self.bucket(user_id) {
            Some(b) => format!("{PREFIX}:{{u{b}}}:user_sessions:{user_id}"),
            None => format!("{PREFIX}:user_sessions:{user_id}"),
        }
    }

    /// The list of users (a sorted set, all scores 0) that holds `user_id`, in the same slot
    /// as its session set.
    pub(super) fn users_of(self, user_id: &str) -> String {
        match self.bucket(user_id) {
            Some(b) => Self::users_bucket(b),
            None => "sgw:users".to_string(),
        }
    }

    /// Every list of users (one per bucket on a cluster).
    pub(super) fn user_lists(self) -> Vec<String> {
        if self.cluster {
            (0..USER_BUCKETS).map(Self::users_bucket).collect()
        } else {
            vec!["sgw:users".to_string()]
        }
    }

    fn users_bucket(b: u32) -> String {
        format!("{PREFIX}:{{u{b}}}:users")
    }

    /// A user's bucket on a cluster: FNV-1a of the id, stable across releases and replicas.
    fn bucket(self, user_id: &str) -> Option<u32> {
        self.cluster.then(|| {
            let hash = user_id.bytes().fold(0x811c_9dc5_u32, |h, b| {
                (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
            });
            hash % USER_BUCKETS
        })
    }
}

/// The cluster slot of `key`: CRC16 (XMODEM) of its hash tag, or of the whole key without one.
pub(super) fn slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = bytes.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &bytes[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16::State::<crc16::XMODEM>::calculate(tagged.unwrap_or(bytes)) % CLUSTER_SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_server_keeps_the_names_earlier_releases_wrote() {
        let k = Keys::new(false);
        assert_eq!(k.record(Namespace::Session, "abc"), "sgw:sessions:abc");
        assert_eq!(k.user_sessions("alice"), "sgw:user_sessions:alice");
        assert_eq!(k.users_of("alice"), "sgw:users");
        assert_eq!(k.user_lists(), ["sgw:users"]);
        assert_eq!(
            k.budget(None),
            ("sgw:budget".to_string(), "sgw:budget:app".to_string())
        );
        assert_eq!(k.lock("refresh:x"), "sgw:lock:refresh:x");
    }

    #[test]
    fn on_a_cluster_keys_used_together_share_a_slot() {
        let k = Keys::new(true);
        for user in ["alice", "bob", "ali", "user-07", ""] {
            assert_eq!(
                slot(&k.user_sessions(user)),
                slot(&k.users_of(user)),
                "{user}"
            );
            assert!(k.user_lists().contains(&k.users_of(user)));
        }
        for account in [None, Some("acme"), Some("app")] {
            let (all, app) = k.budget(account);
            assert_eq!(slot(&all), slot(&app));
        }
        assert_eq!(k.user_lists().len(), USER_BUCKETS as usize);
        // The buckets spread: not all in one slot.
        let slots: std::collections::BTreeSet<u16> =
            k.user_lists().iter().map(|l| slot(l)).collect();
        assert!(slots.len() > 8, "{slots:?}");
    }

    #[test]
    fn each_developer_account_has_its_own_budget_keys() {
        for k in [Keys::new(false), Keys::new(true)] {
            let default = k.budget(None);
            let acme = k.budget(Some("acme"));
            // An account named like a key suffix still gets keys of its own.
            let app = k.budget(Some("app"));
            let all = [&default.0, &default.1, &acme.0, &acme.1, &app.0, &app.1];
            let distinct: std::collections::BTreeSet<&String> = all.iter().copied().collect();
            assert_eq!(distinct.len(), all.len(), "{all:?}");
        }
        assert_eq!(
            Keys::new(false).budget(Some("acme")),
            (
                "sgw:budget~acme".to_string(),
                "sgw:budget~acme:app".to_string()
            )
        );
    }

    #[test]
    fn slots_match_the_specification() {
        // The examples of the Redis Cluster specification.
        assert_eq!(slot("123456789"), 0x31C3);
        assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
        assert_eq!(slot("foo{}{bar}"), slot("foo{}{bar}"));
        assert_eq!(slot("foo{{bar}}zap"), slot("{bar"));
        assert_eq!(slot("foo{bar}{zap}"), slot("bar"));
    }
}
