//! Package details for an event: its manifest summarized, the previous revision found and
//! diffed, and the README excerpt, read from the [`PackageStore`] and cached by top hash.
//!
//! A notification must not be lost because its enrichment failed: only transient store errors
//! (throttling, 5xx, timeouts) fail the read, so the message is retried with backoff. Anything
//! else (a missing manifest, access denied, a corrupt manifest) still gives details, with
//! `package.error` saying what could not be read, and one WARN line naming bucket, key and cause.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use serde_json::Value;

use super::event_lock::EventLocks;
use crate::domain::changes::{changes_json, CatalogLinks, Revision};
pub use crate::domain::details::Details;
use crate::domain::event::PackageEvent;
use crate::domain::manifest::{ManifestError, ManifestLimits, ManifestReader, ManifestSummary};
use crate::domain::revision::{
    manifest_key, parse_physical_key, pointer_hash, pointers_newest_first, pointers_prefix,
    ObjectRef, PreviousSearch, Step, POINTER_SKEW_SECONDS,
};
use crate::ports::{PackageStore, StoreError, StoreFailureKind};

/// Bytes read from a README: enough for 1,000 characters of any UTF-8.
const README_BYTES: u64 = 4_000;
/// Bytes read from a revision pointer (a top hash and a line break).
const POINTER_BYTES: u64 = 512;
/// Revision pointers listed at most, and read at most while looking for the previous one.
const MAX_POINTERS_LISTED: usize = 100_000;
const MAX_POINTERS_READ: usize = 20;

/// How much the summary cache may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Summaries at most (0: no cache).
    pub entries: usize,
    /// Their heap bytes at most, summed; a larger summary is not cached.
    pub bytes: usize,
}

impl CacheLimits {
    /// No cache at all (a one-off read, as in `render`).
    pub const NONE: Self = Self {
        entries: 0,
        bytes: 0,
    };

    /// At most `entries` summaries in `megabytes` MiB.
    pub fn new(entries: usize, megabytes: usize) -> Self {
        Self {
            entries,
            bytes: megabytes.saturating_mul(1024 * 1024),
        }
    }
}

/// Where the pipeline gets an event's details: a [`DetailsReader`] over any store, behind one
/// object so that the pipeline and the worker need no store type parameter.
pub trait DetailsSource: Send + Sync {
    /// The details of the event's revision; fails only transiently.
    fn details<'a>(
        &'a self,
        event: &'a PackageEvent,
    ) -> Pin<Box<dyn Future<Output = Result<Details, StoreError>> + Send + 'a>>;
}

impl<S: PackageStore> DetailsSource for DetailsReader<S> {
    fn details<'a>(
        &'a self,
        event: &'a PackageEvent,
    ) -> Pin<Box<dyn Future<Output = Result<Details, StoreError>> + Send + 'a>> {
        Box::pin(self.read(event))
    }
}

/// Reads details through a store; shared by all pollers.
pub struct DetailsReader<S> {
    store: S,
    limits: ManifestLimits,
    catalog_host: Option<String>,
    cache: SummaryCache,
    /// One read of a manifest at a time: concurrent events of one package wait for the first
    /// read and then find it in the cache.
    loading: EventLocks,
}

impl<S: PackageStore> DetailsReader<S> {
    /// A reader with these manifest limits and cache limits.
    pub fn new(
        store: S,
        limits: ManifestLimits,
        cache: CacheLimits,
        catalog_host: Option<String>,
    ) -> Self {
        Self {
            store,
            limits,
            catalog_host,
            cache: SummaryCache::new(cache.entries, cache.bytes),
            loading: EventLocks::default(),
        }
    }

    /// The summary cache's hits and misses so far.
    pub fn cache_stats(&self) -> (u64, u64) {
        self.cache.stats()
    }

    /// The details of the event's revision.
    ///
    /// # Errors
    /// Only a transient store failure: try the message again later.
    pub async fn read(&self, event: &PackageEvent) -> Result<Details, StoreError> {
        let bucket = event.bucket();
        let top_hash = event.top_hash();
        let current = self.summary(bucket, top_hash).await?;
        let readme = match current.readme_key() {
            Some(key) => self.readme(key).await?,
            None => None,
        };
        let mut package = current.package_json(readme.as_deref());
        if let (Some(cause), Some(object)) = (current.error(), package.as_object_mut()) {
            // Say which manifest: a reason like "line 2 is not valid JSON" alone does not.
            if !matches!(cause, ManifestError::Interrupted(_)) {
                object.insert(
                    "error".to_owned(),
                    Value::String(format!(
                        "manifest s3://{bucket}/{}: {cause}",
                        manifest_key(top_hash)
                    )),
                );
            }
        }
        let previous = match self.previous_hash(event).await {
            Ok(previous) => previous,
            Err(e) if e.kind == StoreFailureKind::Transient => return Err(e),
            Err(e) => {
                warn_unreadable(&e, "cannot list the package's revisions; no changes shown");
                note_error(&mut package, &format!("previous revision unknown: {e}"));
                None
            }
        };
        let links = self
            .catalog_host
            .as_deref()
            .map(|host| CatalogLinks::new(host, bucket, event.handle()));
        let current_revision = Revision {
            top_hash,
            summary: &current,
        };
        let (changes, unchanged) = match previous {
            None => (Value::Null, false),
            Some(hash) => {
                let summary = self.summary(bucket, &hash).await?;
                let previous_revision = Revision {
                    top_hash: &hash,
                    summary: &summary,
                };
                let changes =
                    changes_json(Some(previous_revision), current_revision, links.as_ref());
                (changes, hash.eq_ignore_ascii_case(top_hash))
            }
        };
        Ok(Details {
            package,
            changes,
            unchanged,
        })
    }

    /// The summary of one manifest, from the cache or the store. Only whole summaries are
    /// cached: a manifest that could not be read may be readable for the next event.
    async fn summary(
        &self,
        bucket: &str,
        top_hash: &str,
    ) -> Result<Arc<ManifestSummary>, StoreError> {
        let cache_key = format!("{bucket}/{top_hash}");
        if let Some(hit) = self.cache.get(&cache_key) {
            return Ok(hit);
        }
        let _only_reader = self.loading.lock(&cache_key).await;
        if let Some(hit) = self.cache.peek(&cache_key) {
            return Ok(hit);
        }
        let object = ObjectRef {
            bucket: bucket.to_owned(),
            key: manifest_key(top_hash),
            version: None,
        };
        let mut lines =
            LineSplitter::new(ManifestReader::new(self.limits), self.limits.max_line_bytes);
        let read = self
            .store
            .read(&object, None, &mut |chunk| lines.feed(chunk))
            .await;
        let mut reader = lines.finish();
        match read {
            Ok(()) => {}
            Err(e) if e.kind == StoreFailureKind::Transient => return Err(e),
            Err(e) => {
                warn_unreadable(&e, "cannot read the manifest; the email says why");
                reader.fail(ManifestError::Interrupted(e.to_string()));
            }
        }
        let summary = Arc::new(reader.finish());
        match summary.error() {
            None => self.cache.put(cache_key, Arc::clone(&summary)),
            Some(ManifestError::Interrupted(_)) => {}
            Some(cause) => tracing::warn!(
                bucket,
                key = %object.key,
                cause = %cause,
                "manifest not read whole; the email shows what was read and why"
            ),
        }
        Ok(summary)
    }

    /// The previous revision's top hash: the pointer just older than the event's own (see
    /// [`PreviousSearch`]). None for a first revision, or when the event's own pointer is not
    /// among the [`MAX_POINTERS_READ`] closest to its time.
    async fn previous_hash(&self, event: &PackageEvent) -> Result<Option<String>, StoreError> {
        let bucket = event.bucket();
        let prefix = pointers_prefix(event.handle());
        let keys = self
            .store
            .list(bucket, &prefix, MAX_POINTERS_LISTED)
            .await?;
        let event_time = event
            .timestamp()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs());
        let not_after = event_time.map(|t| t.saturating_add(POINTER_SKEW_SECONDS));
        let pointers = pointers_newest_first(&prefix, &keys, not_after);
        let mut search =
            PreviousSearch::new(event.top_hash(), event_time, &pointers, MAX_POINTERS_READ);
        loop {
            match search.step() {
                Step::Read(i) => {
                    let hash = self.pointer(bucket, &pointers[i].1).await?;
                    search.feed(i, hash.as_deref());
                }
                Step::Done(previous) => return Ok(previous),
            }
        }
    }

    /// The top hash a pointer holds; None when its text is not a hash.
    async fn pointer(&self, bucket: &str, key: &str) -> Result<Option<String>, StoreError> {
        let object = ObjectRef {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            version: None,
        };
        let text = self.read_text(&object, POINTER_BYTES).await?;
        Ok(pointer_hash(&text).map(str::to_ascii_lowercase))
    }

    /// The README's first characters; None (with a WARN) when it cannot be read.
    async fn readme(&self, physical_key: &str) -> Result<Option<String>, StoreError> {
        let object = match parse_physical_key(physical_key) {
            Ok(object) => object,
            Err(e) => {
                tracing::warn!(error = %e, "README.md not shown");
                return Ok(None);
            }
        };
        match self.read_text(&object, README_BYTES).await {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind == StoreFailureKind::Transient => Err(e),
            Err(e) => {
                warn_unreadable(&e, "cannot read README.md; the email goes without it");
                Ok(None)
            }
        }
    }

    /// At most `max_bytes` of an object, as text (invalid UTF-8 replaced: it is shown, never
    /// trusted).
    async fn read_text(&self, object: &ObjectRef, max_bytes: u64) -> Result<String, StoreError> {
        let limit = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        let mut bytes = Vec::new();
        self.store
            .read(object, Some(max_bytes), &mut |chunk| {
                let room = limit.saturating_sub(bytes.len());
                bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
                bytes.len() < limit
            })
            .await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

fn warn_unreadable(e: &StoreError, what: &str) {
    tracing::warn!(
        bucket = %e.bucket,
        key = %e.key,
        error.code = %e.code,
        error.kind = e.kind.as_str(),
        cause = %e.message,
        "{what}"
    );
}

/// Adds a reason to `package.error`, after any the manifest gave.
fn note_error(package: &mut Value, reason: &str) {
    if let Some(object) = package.as_object_mut() {
        let text = match object.get("error").and_then(Value::as_str) {
            Some(first) => format!("{first}; {reason}"),
            None => reason.to_owned(),
        };
        object.insert("error".to_owned(), Value::String(text));
    }
}

/// Cuts a byte stream into lines for the manifest reader, never buffering more than one line of
/// at most `max_line` bytes.
struct LineSplitter {
    reader: ManifestReader,
    pending: Vec<u8>,
    max_line: usize,
    stopped: bool,
}

impl LineSplitter {
    fn new(reader: ManifestReader, max_line: usize) -> Self {
        Self {
            reader,
            pending: Vec::new(),
            max_line,
            stopped: false,
        }
    }

    /// Takes the next chunk; false once the reader stopped (no more bytes are wanted).
    fn feed(&mut self, mut chunk: &[u8]) -> bool {
        while !self.stopped {
            let Some(end) = chunk.iter().position(|&b| b == b'\n') else {
                break;
            };
            if self.pending.is_empty() {
                self.stopped = self.reader.feed_line(&chunk[..end]).is_err();
            } else {
                self.pending.extend_from_slice(&chunk[..end]);
                let line = std::mem::take(&mut self.pending);
                self.stopped = self.reader.feed_line(&line).is_err();
            }
            chunk = &chunk[end + 1..];
        }
        if self.stopped {
            return false;
        }
        if self.pending.len() + chunk.len() > self.max_line {
            self.reader.fail(ManifestError::LineTooLong {
                line: self.reader.next_line(),
                bytes: (self.pending.len() + chunk.len()) as u64,
                limit: self.max_line,
            });
            self.stopped = true;
            return false;
        }
        self.pending.extend_from_slice(chunk);
        true
    }

    /// The reader, fed the last line if the stream did not end with a line break.
    fn finish(mut self) -> ManifestReader {
        if !self.stopped && !self.pending.is_empty() {
            let _ = self.reader.feed_line(&self.pending);
        }
        self.reader
    }
}

/// The most recently used manifest summaries, by bucket and top hash, bounded by count and by
/// bytes (a 100,000-file summary holds about 10 MB).
struct SummaryCache {
    capacity: usize,
    max_bytes: usize,
    // std Mutex: a few map operations, never held across an await.
    state: Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    entries: HashMap<String, Arc<ManifestSummary>>,
    /// Keys, least recently used first.
    order: VecDeque<String>,
    /// The summaries' heap bytes, summed.
    bytes: usize,
    hits: u64,
    misses: u64,
}

impl SummaryCache {
    fn new(capacity: usize, max_bytes: usize) -> Self {
        Self {
            capacity,
            max_bytes,
            state: Mutex::default(),
        }
    }

    /// A cached summary, counted as a hit or a miss.
    fn get(&self, key: &str) -> Option<Arc<ManifestSummary>> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let found = Self::touch(&mut state, key);
        if found.is_some() {
            state.hits += 1;
        } else {
            state.misses += 1;
        }
        found
    }

    /// A cached summary, not counted (a second look after waiting for another reader).
    fn peek(&self, key: &str) -> Option<Arc<ManifestSummary>> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Self::touch(&mut state, key)
    }

    fn touch(state: &mut CacheState, key: &str) -> Option<Arc<ManifestSummary>> {
        let found = state.entries.get(key).cloned()?;
        if let Some(at) = state.order.iter().position(|k| k == key) {
            if let Some(k) = state.order.remove(at) {
                state.order.push_back(k);
            }
        }
        Some(found)
    }

    fn put(&self, key: String, summary: Arc<ManifestSummary>) {
        let size = summary.heap_bytes();
        if self.capacity == 0 || size > self.max_bytes {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match state.entries.insert(key.clone(), summary) {
            Some(old) => state.bytes = state.bytes.saturating_sub(old.heap_bytes()),
            None => state.order.push_back(key),
        }
        state.bytes += size;
        while state.entries.len() > self.capacity || state.bytes > self.max_bytes {
            let Some(oldest) = state.order.pop_front() else {
                break;
            };
            if let Some(gone) = state.entries.remove(&oldest) {
                state.bytes = state.bytes.saturating_sub(gone.heap_bytes());
            }
        }
    }

    fn stats(&self) -> (u64, u64) {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (state.hits, state.misses)
    }
}

#[cfg(test)]
mod tests;
