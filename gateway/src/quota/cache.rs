//! A small cache of the GET answers Spotify marks cacheable (RFC 9111): fresh for the
//! `max-age` of `Cache-Control`, then revalidated with `If-None-Match` when it carried an
//! `ETag`. Never what says `no-store` or `Vary: *`, never an answer but a 200. Bounded in
//! bytes (`egress.cache_size`; 0 turns it off) by moka: least recently used out first, and
//! a newcomer taken in over it only when asked for more often (TinyLFU).
//!
//! Keys carry the credential (`proxy::egress::shared`): an answer to a user's token is only
//! ever served to calls with that same token, an answer to the app token only to app-token
//! calls; and the request headers the answer depends on (`vary`), so no call gets an answer
//! negotiated for another (an encoding it did not accept). A user's answers are purged when
//! the user leaves (`purge`).
//!
//! The bound is on memory, not on a count of body bytes: an entry weighs what it really
//! holds (`Entry::weight`), so the process grows by about `egress.cache_size` when the cache
//! is full (`tests/egress_cache.rs` measures it).

use std::mem::size_of;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue};

use super::answer::Answer;
use super::owner::{owner_of, Memo, Recent};
use super::vary::Request;

/// What holding an entry costs beyond its key's bytes and its answer (`Answer::weight`):
/// moka's bookkeeping per entry (the key's `Arc`, the hash table's bucket and slot, the
/// entry's info and its node in the access-order queue, the frequency sketch's share: about
/// 300 bytes), our `Slot`, `Entry` and `Arc<Answer>`, the blocks' shared headers once they
/// are cloned, and the allocator's own rounding on these small blocks.
const ENTRY_OVERHEAD: usize = 640;

/// What moka holds for a key. moka drops what it let go only later (its hash table frees
/// removed entries through epoch-based reclamation, up to 64 at a time per thread), and a
/// large answer held there that long would be memory the cache no longer counts: so the
/// eviction listener takes the entry out of its slot at once.
struct Slot {
    entry: Mutex<Option<Arc<Entry>>>,
    /// What the entry weighs (`Entry::weight`), fixed when it was stored.
    weight: u32,
}

impl Slot {
    fn entry(&self) -> Option<Arc<Entry>> {
        self.entry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn empty(&self) {
        let entry = self
            .entry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(entry);
    }
}

/// A cached answer and how long it stays fresh.
pub struct Entry {
    pub answer: Arc<Answer>,
    stored: Instant,
    fresh_for: Duration,
}

impl Entry {
    /// Seconds it stays fresh, when it is.
    pub fn ttl(&self) -> Option<Duration> {
        self.fresh_for.checked_sub(self.stored.elapsed())
    }

    /// The `ETag` to revalidate it with.
    pub fn etag(&self) -> Option<HeaderValue> {
        self.answer.get(&http::header::ETAG)
    }

    /// What holding it under `key` costs, in bytes. Allocators hand out blocks in size
    /// classes: up to an eighth more than asked for the answer's blocks.
    fn weight(&self, key: &str) -> usize {
        let answer = self.answer.weight();
        key.len() + answer + answer / 8 + size_of::<Entry>() + size_of::<Slot>() + ENTRY_OVERHEAD
    }
}

pub enum Lookup {
    Fresh(Arc<Entry>),
    /// Stale, but it has an `ETag`: ask Spotify whether it still holds.
    Stale(Arc<Entry>),
    Miss,
}

/// What `Cache-Control` and `ETag` allow: fresh for so long, and whether it can be
/// revalidated (it has a tag).
#[derive(Debug, PartialEq)]
pub struct Policy {
    pub fresh_for: Duration,
    pub tagged: bool,
}

/// The policy of an answer's headers, `None` when it may not be stored.
pub fn policy(status: u16, headers: &HeaderMap) -> Option<Policy> {
    if status != 200 {
        return None;
    }
    let vary_any = headers
        .get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim() == "*");
    if vary_any {
        return None;
    }
    let mut max_age = None;
    let mut no_cache = false;
    for directive in headers
        .get_all("cache-control")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let (name, value) = match directive.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (directive.trim(), None),
        };
        match name.to_ascii_lowercase().as_str() {
            "no-store" => return None,
            "no-cache" => no_cache = true,
            "max-age" => max_age = value.and_then(|v| v.parse::<u64>().ok()),
            _ => {}
        }
    }
    let tagged = headers.contains_key("etag");
    let fresh_for = if no_cache {
        Duration::ZERO
    } else {
        // No max-age: nothing says how long it stays fresh (no heuristic freshness).
        Duration::from_secs(max_age.unwrap_or(0))
    };
    (!fresh_for.is_zero() || tagged).then_some(Policy { fresh_for, tagged })
}

pub struct AnswerCache {
    entries: Option<moka::sync::Cache<String, Arc<Slot>>>,
    /// The purges of late (`purge`). Held while an answer is stored and while a purge runs,
    /// so no answer a purge should have dropped is stored after it.
    purges: Mutex<Recent>,
}

impl AnswerCache {
    /// A cache of at most `bytes`; 0 is no cache.
    pub fn new(bytes: u64) -> AnswerCache {
        let entries = (bytes > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(bytes)
                .weigher(|_: &String, slot: &Arc<Slot>| slot.weight)
                // Evicted, refused by the admission policy, replaced or invalidated: freed
                // now (`Slot`).
                .eviction_listener(|_, slot: Arc<Slot>, _| slot.empty())
                .build()
        });
        AnswerCache {
            entries,
            purges: Mutex::new(Recent::default()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.entries.is_some()
    }

    /// The answer stored under `key`, if `request` may take it (its `Vary`).
    pub fn lookup(&self, key: &str, request: &impl Request) -> Lookup {
        let Some(entries) = &self.entries else {
            return Lookup::Miss;
        };
        match entries.get(key).and_then(|slot| slot.entry()) {
            Some(e) if !e.answer.selecting.admits(request) => Lookup::Miss,
            Some(e) if e.ttl().is_some() => Lookup::Fresh(e),
            Some(e) if e.etag().is_some() => Lookup::Stale(e),
            _ => Lookup::Miss,
        }
    }

    /// Entries held, and the bytes they weigh (what `egress.cache_size` bounds).
    pub fn size(&self) -> (u64, u64) {
        self.entries
            .as_ref()
            .map_or((0, 0), |e| (e.entry_count(), e.weighted_size()))
    }

    /// Keeps `answer` under `key` as `policy` allows, unless its owner was purged since the
    /// call `arrived` (the call may carry the credential of a session that ended).
    pub fn store(&self, key: &str, answer: Arc<Answer>, policy: Policy, arrived: Instant) {
        if let Some(entries) = &self.entries {
            let purges = self.purges.lock().unwrap_or_else(PoisonError::into_inner);
            if !purges.allows(owner_of(key), arrived, Instant::now()) {
                return;
            }
            let entry = Entry {
                answer,
                stored: Instant::now(),
                fresh_for: policy.fresh_for,
            };
            let slot = Slot {
                weight: u32::try_from(entry.weight(key)).unwrap_or(u32::MAX),
                entry: Mutex::new(Some(Arc::new(entry))),
            };
            entries.insert(key.to_string(), Arc::new(slot));
            // moka admits or evicts in batches (every 64 writes, or 300 ms); until then a
            // new entry is held uncounted, and as many as 64 large answers over the size
            // would be. Stores come at the pace of calls to Spotify: settle each at once.
            entries.run_pending_tasks();
        }
    }

    /// Spotify said the stale `entry` still holds (304): fresh again for what its new
    /// `Cache-Control` says (or the old one's, when it says nothing), for the call that
    /// `arrived` then (`store`).
    pub fn revalidated(
        &self,
        key: &str,
        entry: &Entry,
        not_modified: &HeaderMap,
        arrived: Instant,
    ) -> Arc<Answer> {
        let mut headers = entry.answer.header_map();
        for name in ["cache-control", "etag", "expires", "date"] {
            if let Some(v) = not_modified.get(name) {
                headers.insert(name, v.clone());
            }
        }
        let policy = policy(200, &headers);
        let Some(refreshed) = entry.answer.with_headers(&headers).map(Arc::new) else {
            return Arc::clone(&entry.answer);
        };
        match policy {
            Some(p) => self.store(key, Arc::clone(&refreshed), p, arrived),
            None => {
                if let Some(entries) = &self.entries {
                    entries.invalidate(key);
                }
            }
        }
        refreshed
    }

    /// Drops the answers of every owner `matches` names, and remembers the purge (`store`);
    /// returns how many it dropped.
    pub(super) fn purge(&self, matches: &Memo) -> usize {
        let mut purges = self.purges.lock().unwrap_or_else(PoisonError::into_inner);
        purges.record(matches.predicate(), Instant::now());
        let Some(entries) = &self.entries else {
            return 0;
        };
        // Under the lock no answer is stored meanwhile, so the walk sees every one there is.
        let doomed: Vec<Arc<String>> = entries
            .iter()
            .filter(|(key, _)| matches.test(owner_of(key)))
            .map(|(key, _)| key)
            .collect();
        for key in &doomed {
            entries.invalidate(key.as_str());
        }
        doomed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::vary::{Selecting, Sent};
    use super::*;

    /// A call that sends `x-thing` with this value, and nothing else.
    struct Call(Option<&'static str>);

    impl Request for Call {
        fn sent(&self, name: &http::HeaderName) -> Sent {
            Sent::Value(self.0.filter(|_| name == "x-thing").map(str::to_string))
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn what_may_be_stored_and_for_how_long() {
        let p = |pairs: &[(&'static str, &'static str)]| policy(200, &headers(pairs));
        let cc = "cache-control";
        assert_eq!(
            p(&[(cc, "public, max-age=7200")])
                .expect("cacheable")
                .fresh_for,
            Duration::from_secs(7200)
        );
        assert!(p(&[(cc, "no-store")]).is_none());
        assert!(
            p(&[(cc, "private, max-age=0")]).is_none(),
            "nothing to revalidate with"
        );
        let tagged = p(&[(cc, "public, max-age=0"), ("etag", "\"a\"")]).expect("tagged");
        assert_eq!(tagged.fresh_for, Duration::ZERO);
        assert!(p(&[(cc, "no-cache, max-age=60"), ("etag", "\"a\"")]).is_some());
        assert!(p(&[(cc, "max-age=60"), ("vary", "Accept-Encoding, *")]).is_none());
        assert!(p(&[]).is_none(), "no heuristic freshness");
        assert!(policy(404, &headers(&[(cc, "max-age=60")])).is_none());
    }

    #[test]
    fn the_cache_is_bounded_in_bytes_and_zero_is_off() {
        let off = AnswerCache::new(0);
        assert!(!off.enabled());
        let answer = |n: usize| {
            let body = [bytes::Bytes::from(vec![b'x'; n])];
            let answer = Answer::new(200, &HeaderMap::new(), &body, Selecting::Keyed);
            Arc::new(answer.expect("small"))
        };
        let policy = || Policy {
            fresh_for: Duration::from_secs(60),
            tagged: false,
        };
        let call = Call(None);
        off.store("k", answer(10), policy(), Instant::now());
        assert!(matches!(off.lookup("k", &call), Lookup::Miss));

        let c = AnswerCache::new(10_000);
        for i in 0..50 {
            c.store(&format!("k{i}"), answer(1000), policy(), Instant::now());
        }
        let entries = c.entries.as_ref().expect("on");
        entries.run_pending_tasks();
        assert!(
            entries.weighted_size() <= 10_000,
            "{}",
            entries.weighted_size()
        );
        let kept = (0..50)
            .filter(|i| matches!(c.lookup(&format!("k{i}"), &call), Lookup::Fresh(_)))
            .count();
        assert!((1..=10).contains(&kept), "{kept} kept");
        let (count, bytes) = c.size();
        assert_eq!(count, kept as u64);
        assert!(bytes <= 10_000 && bytes >= kept as u64 * 1000, "{bytes}");
    }

    #[test]
    fn what_the_cache_lets_go_is_freed_at_once() {
        let c = AnswerCache::new(20_000);
        let policy = || Policy {
            fresh_for: Duration::from_secs(60),
            tagged: false,
        };
        let answer = || {
            let body = [bytes::Bytes::from(vec![b'x'; 3_000])];
            Arc::new(Answer::new(200, &HeaderMap::new(), &body, Selecting::Keyed).expect("small"))
        };
        // Replaced, evicted or refused: only the answers the cache holds are alive (moka
        // alone would free them later, in batches).
        let mut stored = Vec::new();
        for i in 0..40 {
            let a = answer();
            stored.push(Arc::downgrade(&a));
            c.store(&format!("k{}", i % 30), a, policy(), Instant::now());
        }
        let alive = stored.iter().filter(|w| w.upgrade().is_some()).count();
        let (entries, bytes) = c.size();
        assert!(
            entries > 0 && bytes <= 20_000,
            "{entries} entries, {bytes} bytes"
        );
        assert_eq!(alive as u64, entries);
    }

    #[test]
    fn an_answer_goes_only_to_calls_its_vary_admits() {
        let c = AnswerCache::new(1 << 20);
        let first = Call(Some("a"));
        let vary = headers(&[("vary", "Accept-Encoding, X-Thing")]);
        let selecting = Selecting::of(&vary, &first);
        let body = [bytes::Bytes::from_static(b"{}")];
        let answer = Answer::new(200, &vary, &body, selecting).expect("small");
        let policy = Policy {
            fresh_for: Duration::from_secs(60),
            tagged: false,
        };
        c.store("k", Arc::new(answer), policy, Instant::now());
        assert!(matches!(c.lookup("k", &first), Lookup::Fresh(_)));
        assert!(matches!(c.lookup("k", &Call(Some("b"))), Lookup::Miss));
        assert!(matches!(c.lookup("k", &Call(None)), Lookup::Miss));
    }
}
