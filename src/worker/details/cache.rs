//! The summary cache: the most recently used manifest summaries, by bucket and top hash.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};

use lru::LruCache;

use crate::domain::manifest::ManifestSummary;

/// The most recently used manifest summaries, by bucket and top hash, bounded by count and by
/// bytes (a 100,000-file summary holds about 10 MB).
pub(super) struct SummaryCache {
    /// Summaries at most; 0: nothing is cached (every look is a miss).
    capacity: usize,
    max_bytes: usize,
    // std Mutex: a few map operations, never held across an await.
    state: Mutex<CacheState>,
}

struct CacheState {
    /// Bounded by count here, and by bytes in [`SummaryCache::put`].
    entries: LruCache<String, Arc<ManifestSummary>>,
    /// The summaries' heap bytes, summed.
    bytes: usize,
    hits: u64,
    misses: u64,
}

impl SummaryCache {
    pub(super) fn new(capacity: usize, max_bytes: usize) -> Self {
        let bound = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            capacity,
            max_bytes,
            state: Mutex::new(CacheState {
                entries: LruCache::new(bound),
                bytes: 0,
                hits: 0,
                misses: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, CacheState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A cached summary, counted as a hit or a miss.
    pub(super) fn get(&self, key: &str) -> Option<Arc<ManifestSummary>> {
        let mut state = self.lock();
        let found = state.entries.get(key).cloned();
        if found.is_some() {
            state.hits += 1;
        } else {
            state.misses += 1;
        }
        found
    }

    /// A cached summary, not counted (a second look after waiting for another reader).
    pub(super) fn peek(&self, key: &str) -> Option<Arc<ManifestSummary>> {
        self.lock().entries.get(key).cloned()
    }

    pub(super) fn put(&self, key: String, summary: Arc<ManifestSummary>) {
        let size = summary.heap_bytes();
        if self.capacity == 0 || size > self.max_bytes {
            return;
        }
        let mut state = self.lock();
        state.bytes += size;
        // Out goes the summary this one replaces, or the least recently used over the count.
        if let Some((_, gone)) = state.entries.push(key, summary) {
            state.bytes = state.bytes.saturating_sub(gone.heap_bytes());
        }
        while state.bytes > self.max_bytes {
            let Some((_, gone)) = state.entries.pop_lru() else {
                break;
            };
            state.bytes = state.bytes.saturating_sub(gone.heap_bytes());
        }
    }

    pub(super) fn stats(&self) -> (u64, u64) {
        let state = self.lock();
        (state.hits, state.misses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::fixtures::manifest;
    use crate::domain::manifest::{ManifestLimits, ManifestReader};

    #[test]
    fn the_cache_forgets_the_least_recently_used() {
        let cache = SummaryCache::new(2, usize::MAX);
        let summary = || Arc::new(ManifestReader::read_str(ManifestLimits::default(), "{}"));
        cache.put("a".into(), summary());
        cache.put("b".into(), summary());
        assert!(cache.get("a").is_some());
        cache.put("c".into(), summary());
        assert!(cache.get("b").is_none(), "b was least recently used");
        assert!(cache.get("a").is_some() && cache.get("c").is_some());
    }

    #[test]
    fn the_cache_holds_no_more_bytes_than_allowed() {
        let big = || {
            Arc::new(ManifestReader::read_str(
                ManifestLimits::default(),
                manifest("unicode_nested"),
            ))
        };
        let size = big().heap_bytes();
        let cache = SummaryCache::new(100, size * 2 + size / 2);
        for key in ["a", "b", "c"] {
            cache.put(key.into(), big());
        }
        assert!(
            cache.peek("a").is_none(),
            "two fit, the third pushed the oldest out"
        );
        assert!(cache.peek("b").is_some() && cache.peek("c").is_some());
        let tiny = SummaryCache::new(100, size - 1);
        tiny.put("a".into(), big());
        assert!(
            tiny.peek("a").is_none(),
            "a summary over the budget is not cached"
        );
    }
}
