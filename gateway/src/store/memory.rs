//! The in-process backend: for tests and the demo. Nothing survives a restart.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::api::{frame, unframe, Namespace, Store, StoreResult};

#[derive(Default)]
pub struct MemoryStore {
    map: Mutex<HashMap<(Namespace, String), Vec<u8>>>,
}

impl MemoryStore {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(Namespace, String), Vec<u8>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
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
        let mut map = self.map();
        let before = map.len();
        map.retain(|_, raw| unframe(raw).is_some());
        Ok(before - map.len())
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
}
