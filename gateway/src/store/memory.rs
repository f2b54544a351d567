//! The in-process backend: for tests and the demo. Nothing survives a restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::api::{frame, unframe, Namespace, Store, StoreResult, UsersPage};
use crate::clock::now_ms;

#[derive(Default)]
pub struct MemoryStore {
    map: Mutex<HashMap<(Namespace, String), Vec<u8>>>,
    /// The user → sessions index: user id → session key → expiry (unix ms). Ordered by user
    /// id for `users_page`.
    user_sessions: Mutex<BTreeMap<String, HashMap<String, u64>>>,
}

impl MemoryStore {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(Namespace, String), Vec<u8>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn user_sessions_map(
        &self,
    ) -> std::sync::MutexGuard<'_, BTreeMap<String, HashMap<String, u64>>> {
        self.user_sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }
    async fn get(&self, ns: Namespace, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let map = self.map();
        Ok(map
            .get(&(ns, key.to_string()))
            .and_then(|raw| unframe(raw))
            .map(<[u8]>::to_vec))
    }
    async fn put(
        &self,
        ns: Namespace,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> StoreResult<()> {
        self.map().insert((ns, key.to_string()), frame(&value, ttl));
        Ok(())
    }
    async fn delete(&self, ns: Namespace, key: &str) -> StoreResult<bool> {
        Ok(self.map().remove(&(ns, key.to_string())).is_some())
    }
    async fn take(&self, ns: Namespace, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let raw = self.map().remove(&(ns, key.to_string()));
        Ok(raw.as_deref().and_then(unframe).map(<[u8]>::to_vec))
    }
    async fn purge_expired(&self) -> StoreResult<usize> {
        let purged = {
            let mut map = self.map();
            let before = map.len();
            map.retain(|_, raw| unframe(raw).is_some());
            before - map.len()
        };
        let now = now_ms();
        let mut users = self.user_sessions_map();
        for sessions in users.values_mut() {
            sessions.retain(|_, expires| *expires > now);
        }
        users.retain(|_, sessions| !sessions.is_empty());
        Ok(purged)
    }
    async fn count(&self, ns: Namespace) -> StoreResult<usize> {
        let map = self.map();
        Ok(map
            .iter()
            .filter(|((n, _), raw)| *n == ns && unframe(raw).is_some())
            .count())
    }
    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
    async fn add_user_session(&self, user_id: &str, key: &str, ttl: Duration) -> StoreResult<()> {
        let expires = now_ms().saturating_add(ttl.as_millis() as u64);
        self.user_sessions_map()
            .entry(user_id.to_string())
            .or_default()
            .insert(key.to_string(), expires);
        Ok(())
    }
    async fn user_sessions(&self, user_id: &str) -> StoreResult<Vec<String>> {
        let now = now_ms();
        Ok(self
            .user_sessions_map()
            .get(user_id)
            .map(|s| {
                s.iter()
                    .filter(|(_, expires)| **expires > now)
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default())
    }
    async fn remove_user_session(&self, user_id: &str, key: &str) -> StoreResult<bool> {
        let mut users = self.user_sessions_map();
        let Some(sessions) = users.get_mut(user_id) else {
            return Ok(false);
        };
        let removed = sessions.remove(key).is_some();
        if sessions.is_empty() {
            users.remove(user_id);
        }
        Ok(removed)
    }
    async fn users_page(&self, after: Option<&str>, limit: usize) -> StoreResult<UsersPage> {
        use std::ops::Bound;
        let now = now_ms();
        let users = self.user_sessions_map();
        let from = match after {
            Some(a) => Bound::Excluded(a.to_string()),
            None => Bound::Unbounded,
        };
        let candidates = users
            .range((from, Bound::Unbounded))
            .filter(|(_, sessions)| sessions.values().any(|expires| *expires > now))
            .map(|(user, _)| user.clone())
            .take(limit.saturating_add(1))
            .collect();
        Ok(UsersPage::of(candidates, limit))
    }
}
