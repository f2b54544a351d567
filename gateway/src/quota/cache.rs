//! A small cache of the GET answers Spotify marks cacheable (RFC 9111): fresh for the
//! `max-age` of `Cache-Control`, then revalidated with `If-None-Match` when it carried an
//! `ETag`. Never what says `no-store` or `Vary: *`, never an answer but a 200. Bounded in
//! bytes (`egress.cache_size`; 0 turns it off), least recently used out first (moka).
//!
//! Keys carry the credential's scope (`proxy::egress`): an answer to a user's token is only
//! ever served to that user, an answer to the app token only to app-token calls. A user's
//! answers are purged when the user leaves (`purge`).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue};

use super::answer::Answer;
use super::purge::{owner_of, Memo, Recent};

/// A cached answer and how long it stays fresh.
pub struct Entry {
    pub answer: Arc<Answer>,
    stored: Instant,
    fresh_for: Duration,
    pub etag: Option<HeaderValue>,
}

impl Entry {
    /// Seconds it stays fresh, when it is.
    pub fn ttl(&self) -> Option<Duration> {
        self.fresh_for.checked_sub(self.stored.elapsed())
    }
}

pub enum Lookup {
    Fresh(Arc<Entry>),
    /// Stale, but it has an `ETag`: ask Spotify whether it still holds.
    Stale(Arc<Entry>),
    Miss,
}

/// What `Cache-Control` and `ETag` allow: fresh for so long, and the tag to revalidate with.
#[derive(Debug, PartialEq)]
pub struct Policy {
    pub fresh_for: Duration,
    pub etag: Option<HeaderValue>,
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
    let etag = headers.get("etag").cloned();
    let fresh_for = if no_cache {
        Duration::ZERO
    } else {
        // No max-age: nothing says how long it stays fresh (no heuristic freshness).
        Duration::from_secs(max_age.unwrap_or(0))
    };
    (!fresh_for.is_zero() || etag.is_some()).then_some(Policy { fresh_for, etag })
}

pub struct AnswerCache {
    entries: Option<moka::sync::Cache<String, Arc<Entry>>>,
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
                .weigher(|key: &String, e: &Arc<Entry>| {
                    u32::try_from(key.len() + e.answer.weight()).unwrap_or(u32::MAX)
                })
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

    pub fn lookup(&self, key: &str) -> Lookup {
        let Some(entries) = &self.entries else {
            return Lookup::Miss;
        };
        match entries.get(key) {
            Some(e) if e.ttl().is_some() => Lookup::Fresh(e),
            Some(e) if e.etag.is_some() => Lookup::Stale(e),
            _ => Lookup::Miss,
        }
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
                etag: policy.etag,
            };
            entries.insert(key.to_string(), Arc::new(entry));
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
        let answer = Arc::clone(&entry.answer);
        let mut headers = answer.headers.clone();
        for name in ["cache-control", "etag", "expires", "date"] {
            if let Some(v) = not_modified.get(name) {
                headers.insert(name, v.clone());
            }
        }
        let policy = policy(200, &headers);
        let refreshed = Arc::new(Answer {
            status: answer.status,
            headers,
            body: answer.body.clone(),
        });
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
    use super::*;

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
        let answer = |n: usize| Arc::new(Answer::new(200, &HeaderMap::new(), vec![b'x'; n].into()));
        let policy = || Policy {
            fresh_for: Duration::from_secs(60),
            etag: None,
        };
        off.store("k", answer(10), policy(), Instant::now());
        assert!(matches!(off.lookup("k"), Lookup::Miss));

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
            .filter(|i| matches!(c.lookup(&format!("k{i}")), Lookup::Fresh(_)))
            .count();
        assert!((1..=10).contains(&kept), "{kept} kept");
    }
}
