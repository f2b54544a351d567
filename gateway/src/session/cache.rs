//! The sessions this replica holds in memory, in front of the store: a sharded map from store
//! key to live session, bounded in count, that lets go of sessions idle for a while.
//!
//! It replaced a moka cache (issue 29, item 5): moka's bookkeeping per entry (its map's bucket,
//! an allocation for the key, the entry's info, a node in its access-order queue, its
//! frequency sketch) weighed about 210 bytes beside a session of about 900 (measured: 1,147
//! bytes per hot session with moka, 933 without), and every lookup recorded the access for
//! its admission policy (a session lookup took 2,145 instructions, now 1,206).
//! Here an entry is its key and a pointer in a hash table, and its last use a 4-byte stamp in
//! the session ([`LiveSession::touch`]). What it gives up: moka's admission policy (a full
//! cache here lets go of the least recently used of a few entries, not of the least
//! frequently used), which only matters past `CACHE_CAPACITY` hot sessions.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use super::record::LiveSession;
use crate::secret::SessionKey;

/// Shards, each behind its own lock: lookups on both proxies' threads rarely meet.
const SHARDS: usize = 16;
/// When a shard is full, the least recently used of this many of its entries goes.
const EVICTION_SAMPLE: usize = 8;

type Shard = HashMap<SessionKey, Arc<LiveSession>>;

pub struct SessionCache {
    shards: Box<[RwLock<Shard>]>,
    per_shard: usize,
    idle: Duration,
}

impl SessionCache {
    /// At most about `capacity` sessions; one unused for `idle` goes at the next
    /// [`SessionCache::evict_idle`].
    pub fn new(capacity: usize, idle: Duration) -> SessionCache {
        SessionCache {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            idle,
        }
    }

    fn shard(&self, key: &SessionKey) -> &RwLock<Shard> {
        // Store keys are base64 of a keyed hash: their bytes are already spread.
        let b = key.expose().as_bytes();
        let i = b
            .iter()
            .take(4)
            .fold(0usize, |h, &x| h.wrapping_mul(31) + x as usize);
        &self.shards[i % SHARDS]
    }

    fn read(&self, key: &SessionKey) -> RwLockReadGuard<'_, Shard> {
        self.shard(key).read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, key: &SessionKey) -> RwLockWriteGuard<'_, Shard> {
        self.shard(key).write().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached session, marked as used now.
    pub fn get(&self, key: &SessionKey) -> Option<Arc<LiveSession>> {
        let found = self.read(key).get(key).cloned();
        if let Some(s) = &found {
            s.touch();
        }
        found
    }

    /// The cached session, or `session` cached now: of two concurrent misses that both
    /// loaded the record, both get the one copy that is kept.
    pub fn get_or_insert(&self, key: SessionKey, session: Arc<LiveSession>) -> Arc<LiveSession> {
        let mut shard = self.write(&key);
        if let Some(s) = shard.get(&key) {
            s.touch();
            return Arc::clone(s);
        }
        self.make_room(&mut shard);
        session.touch();
        shard.insert(key, Arc::clone(&session));
        session
    }

    /// Caches `session` under `key`, replacing what was there.
    pub fn insert(&self, key: SessionKey, session: Arc<LiveSession>) {
        let mut shard = self.write(&key);
        if !shard.contains_key(&key) {
            self.make_room(&mut shard);
        }
        session.touch();
        shard.insert(key, session);
    }

    pub fn remove(&self, key: &SessionKey) -> Option<Arc<LiveSession>> {
        self.write(key).remove(key)
    }

    /// Forgets every session (invalidations may have been lost): each is read again when used.
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            shard.write().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }

    /// The cached sessions now (for housekeeping and the gauges; not on a request's path).
    pub fn snapshot(&self) -> Vec<Arc<LiveSession>> {
        let mut all = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.read().unwrap_or_else(|p| p.into_inner());
            all.extend(shard.values().cloned());
        }
        all
    }

    /// Lets go of the sessions unused for longer than the idle time (they stay in the store).
    pub fn evict_idle(&self) {
        for shard in self.shards.iter() {
            let mut shard = shard.write().unwrap_or_else(|p| p.into_inner());
            shard.retain(|_, s| s.idle_for() < self.idle);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    /// A full shard lets go of the least recently used of a few of its entries (the map's
    /// order is its keys' hashes: an arbitrary sample).
    fn make_room(&self, shard: &mut Shard) {
        if shard.len() < self.per_shard {
            return;
        }
        let oldest = shard
            .iter()
            .take(EVICTION_SAMPLE)
            .max_by_key(|(_, s)| s.idle_for())
            .map(|(k, _)| k.clone());
        if let Some(k) = oldest {
            shard.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::registry::tests::record;

    fn live(key: &str) -> (SessionKey, Arc<LiveSession>) {
        let key = SessionKey::new(key);
        (
            key.clone(),
            Arc::new(LiveSession::new(key, record("alice"))),
        )
    }

    #[test]
    fn sessions_are_found_kept_once_and_forgotten() {
        let cache = SessionCache::new(100, Duration::from_secs(60));
        let (key, first) = live("key-1");
        assert!(cache.get(&key).is_none());
        let kept = cache.get_or_insert(key.clone(), Arc::clone(&first));
        assert!(Arc::ptr_eq(&kept, &first));
        let (_, second) = live("key-1");
        let kept = cache.get_or_insert(key.clone(), second);
        assert!(
            Arc::ptr_eq(&kept, &first),
            "the copy already cached is kept"
        );
        assert!(Arc::ptr_eq(&cache.get(&key).expect("cached"), &first));
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.snapshot().len(), 1);
        assert!(cache.remove(&key).is_some());
        assert!(cache.get(&key).is_none());
        let (k2, s2) = live("key-2");
        cache.insert(k2.clone(), s2);
        cache.clear();
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_full_cache_stays_within_its_capacity() {
        let cache = SessionCache::new(SHARDS * 4, Duration::from_secs(60));
        for i in 0..1000 {
            let (k, s) = live(&format!("key-{i}"));
            cache.insert(k, s);
        }
        assert!(cache.len() <= SHARDS * 4, "{}", cache.len());
    }

    #[test]
    fn idle_sessions_go_and_used_ones_stay() {
        let cache = SessionCache::new(100, Duration::ZERO);
        let (k, s) = live("key-1");
        cache.insert(k.clone(), s);
        cache.evict_idle();
        assert!(cache.get(&k).is_none(), "idle longer than zero");
        let cache = SessionCache::new(100, Duration::from_secs(3600));
        let (k, s) = live("key-1");
        cache.insert(k.clone(), s);
        cache.evict_idle();
        assert!(cache.get(&k).is_some());
    }
}
