//! Package details for an event: its manifest summarized, the previous revision found and
//! diffed, and the README excerpt, read from the [`PackageStore`] and cached by top hash.
//!
//! A notification must not be lost because its enrichment failed: only transient store errors
//! (throttling, 5xx, timeouts) fail the read, so the message is retried with backoff. Anything
//! else (a missing manifest, access denied, a corrupt manifest) still gives details, with
//! `package.error` saying what could not be read, and one WARN line naming bucket, key and cause.
//!
//! Large manifests are read within a process-wide [`MemoryBudget`] (`s3.memory_megabytes`), so
//! that many messages on large packages cannot hold more summaries at once than the task has
//! memory: an event waits for room, and a manifest larger than the budget is not read (its
//! details say so).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use super::event_lock::EventLocks;
use crate::domain::changes::{CatalogLinks, Changes, Revision};
pub use crate::domain::details::Details;
use crate::domain::details::{Package, PackageRead};
use crate::domain::event::PackageEvent;
use crate::domain::manifest::{ManifestError, ManifestLimits, ManifestReader, ManifestSummary};
use crate::domain::revision::{
    manifest_key, parse_physical_key, pointer_hash, pointers_newest_first, pointers_prefix,
    ObjectRef, PreviousSearch, Step, POINTER_SKEW_SECONDS,
};
use crate::ports::DetailsSource;
use crate::ports::{PackageStore, ReadSink, StoreError, StoreFailureKind};

mod budget;
pub use budget::MemoryBudget;
use budget::{Busy, Reservation};
mod tables;
pub use crate::domain::table::TableSettings;
pub use tables::CONCURRENCY as TABLE_CONCURRENCY;

/// Bytes read from a README: enough for 1,000 characters of any UTF-8.
const README_BYTES: u64 = 4_000;
/// Bytes read from a revision pointer (a top hash and a line break).
const POINTER_BYTES: u64 = 512;
/// Revision pointers listed at most, and read at most while looking for the previous one.
const MAX_POINTERS_LISTED: usize = 100_000;
const MAX_POINTERS_READ: usize = 20;
/// Manifests up to this size are read at once, outside the memory budget: a few hundred files,
/// at most 2 × `worker.concurrency` of them at a time (5 MiB for 40 messages). A larger one is
/// sized by its first response, reserved, then read again.
pub const SMALL_MANIFEST_BYTES: u64 = 64 * 1024;
/// Longest wait for the memory budget; then the details fail transiently and the message is
/// retried with backoff (its visibility is renewed by the batch's heartbeat meanwhile).
pub const MEMORY_WAIT: Duration = Duration::from_secs(120);

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

impl<S: PackageStore> DetailsSource for DetailsReader<S> {
    async fn details(&self, event: &PackageEvent) -> Result<Details, StoreError> {
        self.read(event).await
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
    /// Large manifests being read, across all messages (None: unbounded).
    budget: Option<MemoryBudget>,
    /// Table files to describe in `changes.tables` (None: not read).
    tables: Option<TableSettings>,
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
            budget: None,
            tables: None,
        }
    }

    /// Reads the added and modified table files into `changes.tables` (see [`TableSettings`]).
    pub fn with_tables(mut self, settings: TableSettings) -> Self {
        self.tables = Some(settings);
        self
    }

    /// Reads large manifests within `budget`, shared by every message (see [`MemoryBudget`]).
    pub fn with_memory_budget(mut self, budget: MemoryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// The memory budget, if any (for the benchmark's and the tests' checks).
    pub fn memory_budget(&self) -> Option<&MemoryBudget> {
        self.budget.as_ref()
    }

    /// The summary cache's hits and misses so far.
    pub fn cache_stats(&self) -> (u64, u64) {
        self.cache.stats()
    }

    /// The details of the event's revision.
    ///
    /// # Errors
    /// Only a transient store failure (or no memory budget within [`MEMORY_WAIT`]): try the
    /// message again later.
    pub async fn read(&self, event: &PackageEvent) -> Result<Details, StoreError> {
        let bucket = event.bucket();
        let top_hash = event.top_hash();
        // The previous revision first: its manifest is sized and reserved with this one's.
        let (previous, unknown) = match self.previous_hash(event).await {
            Ok(previous) => (previous, None),
            Err(e) if e.kind == StoreFailureKind::Transient => return Err(e),
            Err(e) => {
                warn_unreadable(&e, "cannot list the package's revisions; no changes shown");
                (None, Some(format!("previous revision unknown: {e}")))
            }
        };
        let mut hashes = vec![top_hash];
        if let Some(hash) = previous.as_deref() {
            // A re-push's predecessor is its own manifest: read once.
            if !hash.eq_ignore_ascii_case(top_hash) {
                hashes.push(hash);
            }
        }
        // Held until the details are made: the summaries live until then.
        let (summaries, _reservation) = self.summaries(bucket, &hashes).await?;
        let current = &summaries[0];
        let readme = match current.readme_key() {
            Some(key) => self.readme(key).await?,
            None => None,
        };
        let mut package = PackageRead::Complete(Package::from_summary(current, readme.as_deref()));
        match current.error() {
            None => {}
            // The store's error names the object already.
            Some(cause @ ManifestError::Interrupted(_)) => {
                package = package.failed(&cause.to_string());
            }
            // Say which manifest: a reason like "line 2 is not valid JSON" alone does not.
            Some(cause) => {
                package = package.failed(&format!(
                    "manifest s3://{bucket}/{}: {cause}",
                    manifest_key(top_hash)
                ));
            }
        }
        if let Some(reason) = unknown {
            package = package.failed(&reason);
        }
        let links = self
            .catalog_host
            .as_deref()
            .map(|host| CatalogLinks::new(host, bucket, event.handle()));
        let current_revision = Revision {
            top_hash,
            summary: current,
        };
        let (changes, unchanged) = match previous.as_deref() {
            None => (None, false),
            Some(hash) => {
                let previous_revision = Revision {
                    top_hash: hash,
                    summary: summaries.get(1).unwrap_or(current),
                };
                let mut changes =
                    Changes::between(previous_revision, current_revision, links.as_ref());
                if let (Some(settings), Ok(_)) = (self.tables, &changes.diff) {
                    changes.tables = Some(
                        tables::read_tables(
                            &self.store,
                            settings,
                            previous_revision.summary,
                            current,
                        )
                        .await?,
                    );
                }
                (Some(changes), hash.eq_ignore_ascii_case(top_hash))
            }
        };
        Ok(Details {
            package,
            changes,
            unchanged,
        })
    }

    /// The summaries of these manifests (the event's own first), and the memory budget reserved
    /// for them.
    ///
    /// Cached ones are taken as they are, and small ones ([`SMALL_MANIFEST_BYTES`]) are read at
    /// once, outside the budget. The large ones are only sized by their first response; then
    /// all of them are reserved together (the event's own first: one that does not fit in what
    /// is left is not read, and says why), waiting at most [`MEMORY_WAIT`], and read again.
    async fn summaries(
        &self,
        bucket: &str,
        hashes: &[&str],
    ) -> Result<(Vec<Arc<ManifestSummary>>, Option<Reservation<'_>>), StoreError> {
        let mut slots = Vec::with_capacity(hashes.len());
        for hash in hashes {
            slots.push(self.first_look(bucket, hash).await?);
        }
        let mut reservation = None;
        if let Some(budget) = &self.budget {
            let mut wanted = 0u64;
            for (slot, hash) in slots.iter_mut().zip(hashes) {
                let Slot::Large(size) = *slot else { continue };
                let available = budget.bytes().saturating_sub(wanted);
                // A size the store did not say: all that is left, and the read stops there.
                let need = size.unwrap_or(available);
                if need > available || need == 0 {
                    let cause = ManifestError::OverMemoryBudget {
                        bytes: size,
                        available,
                        budget: budget.bytes(),
                    };
                    tracing::warn!(
                        bucket,
                        key = %manifest_key(hash),
                        cause = %cause,
                        "manifest not read; the email says why"
                    );
                    let mut reader = ManifestReader::new(self.limits);
                    reader.fail(cause);
                    *slot = Slot::Ready(Arc::new(reader.finish()));
                } else {
                    wanted += need;
                    *slot = Slot::Reserved(need);
                }
            }
            if wanted > 0 {
                reservation = Some(self.reserve(budget, bucket, hashes[0], wanted).await?);
            }
        }
        let mut summaries = Vec::with_capacity(slots.len());
        for (slot, hash) in slots.into_iter().zip(hashes) {
            summaries.push(match slot {
                Slot::Ready(summary) => summary,
                Slot::Large(_) => self.load(bucket, hash, None).await?,
                Slot::Reserved(cap) => self.load(bucket, hash, Some(cap)).await?,
            });
        }
        Ok((summaries, reservation))
    }

    /// Waits at most [`MEMORY_WAIT`] for `bytes` of the budget, for the manifests of the event
    /// whose own top hash is `top_hash`.
    async fn reserve<'a>(
        &self,
        budget: &'a MemoryBudget,
        bucket: &str,
        top_hash: &str,
        bytes: u64,
    ) -> Result<Reservation<'a>, StoreError> {
        let asked = Instant::now();
        let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0));
        match budget.reserve(bytes, MEMORY_WAIT).await {
            Ok(reservation) => {
                let waited = asked.elapsed();
                if waited >= Duration::from_secs(1) {
                    tracing::info!(
                        bucket,
                        key = %manifest_key(top_hash),
                        bytes,
                        waited_ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
                        "waited for s3.memory_megabytes to read large manifests"
                    );
                }
                Ok(reservation)
            }
            Err(Busy) => Err(StoreError {
                kind: StoreFailureKind::Transient,
                operation: "GetObject",
                bucket: bucket.to_owned(),
                key: manifest_key(top_hash),
                code: "MemoryBudgetBusy".to_owned(),
                message: format!(
                    "waited {} s for {} of s3.memory_megabytes ({}, shared by every message) \
                     to read this event's manifests",
                    MEMORY_WAIT.as_secs(),
                    mib(bytes),
                    mib(budget.bytes())
                ),
            }),
        }
    }

    /// A manifest's summary from the cache, or read at once when it is small; else its size.
    async fn first_look(&self, bucket: &str, top_hash: &str) -> Result<Slot, StoreError> {
        let cache_key = format!("{bucket}/{top_hash}");
        if let Some(hit) = self.cache.get(&cache_key) {
            return Ok(Slot::Ready(hit));
        }
        if self.budget.is_none() {
            return Ok(Slot::Large(None));
        }
        let _only_reader = self.loading.lock(&cache_key).await;
        if let Some(hit) = self.cache.peek(&cache_key) {
            return Ok(Slot::Ready(hit));
        }
        let (object, mut sink) = self.manifest_sink(bucket, top_hash, Cap::Probe);
        let read = self.store.read(&object, None, &mut sink).await;
        if sink.over.is_some() {
            return Ok(Slot::Large(sink.size));
        }
        self.finish(cache_key, &object, sink, read).map(Slot::Ready)
    }

    /// Reads a manifest within `cap` bytes (None: no budget), unless another event read it
    /// meanwhile.
    async fn load(
        &self,
        bucket: &str,
        top_hash: &str,
        cap: Option<u64>,
    ) -> Result<Arc<ManifestSummary>, StoreError> {
        let cache_key = format!("{bucket}/{top_hash}");
        let _only_reader = self.loading.lock(&cache_key).await;
        if let Some(hit) = self.cache.peek(&cache_key) {
            return Ok(hit);
        }
        let (object, mut sink) =
            self.manifest_sink(bucket, top_hash, cap.map_or(Cap::None, Cap::Reserved));
        let read = self.store.read(&object, None, &mut sink).await;
        if let (Some(seen), Some(budget)) = (sink.over, &self.budget) {
            // Over what was reserved for it: a store that did not say the size, or an object
            // that grew since it was sized. Stopped there.
            sink.lines.reader.fail(ManifestError::OverMemoryBudget {
                bytes: sink.size.or(Some(seen)).filter(|&b| b > 0),
                available: cap.unwrap_or(0),
                budget: budget.bytes(),
            });
        }
        self.finish(cache_key, &object, sink, read)
    }

    fn manifest_sink(&self, bucket: &str, top_hash: &str, cap: Cap) -> (ObjectRef, ManifestSink) {
        let object = ObjectRef {
            bucket: bucket.to_owned(),
            key: manifest_key(top_hash),
            version: None,
        };
        let lines = LineSplitter::new(ManifestReader::new(self.limits), self.limits.max_line_bytes);
        (object, ManifestSink::new(lines, cap))
    }

    /// The summary of a read, cached when whole: a manifest that could not be read may be
    /// readable for the next event.
    fn finish(
        &self,
        cache_key: String,
        object: &ObjectRef,
        sink: ManifestSink,
        read: Result<(), StoreError>,
    ) -> Result<Arc<ManifestSummary>, StoreError> {
        let mut reader = sink.lines.finish();
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
                bucket = %object.bucket,
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
            .read(object, Some(max_bytes), &mut |chunk: &[u8]| {
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

/// Where one manifest of an event stands before it is read.
enum Slot {
    /// Its summary: cached, read at once, or refused for the budget.
    Ready(Arc<ManifestSummary>),
    /// Larger than [`SMALL_MANIFEST_BYTES`], or any size without a budget (its size, when the
    /// store said it): to be read.
    Large(Option<u64>),
    /// Large, and this many bytes of the budget are reserved for it.
    Reserved(u64),
}

/// How many bytes a manifest read may take.
#[derive(Clone, Copy)]
enum Cap {
    /// Any (no budget).
    None,
    /// Up to [`SMALL_MANIFEST_BYTES`]: a larger manifest is only sized, not read.
    Probe,
    /// Up to the bytes reserved for it.
    Reserved(u64),
}

/// Takes a manifest's bytes into the line splitter, up to its [`Cap`].
struct ManifestSink {
    lines: LineSplitter,
    cap: Option<u64>,
    /// The object's size, when the store said it.
    size: Option<u64>,
    seen: u64,
    /// Set (to the bytes known then) when the manifest is over the cap: reading stopped.
    over: Option<u64>,
}

impl ManifestSink {
    fn new(lines: LineSplitter, cap: Cap) -> Self {
        let cap = match cap {
            Cap::None => None,
            Cap::Probe => Some(SMALL_MANIFEST_BYTES),
            Cap::Reserved(bytes) => Some(bytes),
        };
        Self {
            lines,
            cap,
            size: None,
            seen: 0,
            over: None,
        }
    }
}

impl ReadSink for ManifestSink {
    fn size(&mut self, bytes: u64) -> bool {
        self.size = Some(bytes);
        if self.cap.is_some_and(|cap| bytes > cap) {
            self.over = Some(bytes);
            return false;
        }
        true
    }

    fn chunk(&mut self, chunk: &[u8]) -> bool {
        self.seen += chunk.len() as u64;
        if self.cap.is_some_and(|cap| self.seen > cap) {
            self.over = Some(self.seen);
            return false;
        }
        self.lines.feed(chunk)
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
