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
//!
//! This file reads one event's details; beside it: `manifests` (an event's manifests from the
//! cache or the store, within the budget), `stream` (a manifest's bytes cut into lines for the
//! reader), `previous` (the previous revision's top hash), `cache` (the summary cache) and
//! `budget` (the memory budget).

use std::time::Duration;

use super::event_lock::EventLocks;
use crate::domain::changes::{CatalogLinks, Changes, Revision};
pub use crate::domain::details::Details;
use crate::domain::details::{Package, PackageRead};
use crate::domain::event::PackageEvent;
use crate::domain::manifest::{ManifestError, ManifestLimits};
use crate::domain::revision::{manifest_key, parse_physical_key, ObjectRef};
use crate::ports::{DetailsSource, DetailsWanted};
use crate::ports::{PackageStore, StoreError, StoreFailureKind};

mod budget;
mod cache;
mod manifests;
mod previous;
mod stream;

pub use budget::MemoryBudget;
use cache::SummaryCache;
mod tables;
pub use crate::domain::table::TableSettings;
use tables::TableReading;
pub use tables::CONCURRENCY as TABLE_CONCURRENCY;

/// Bytes read from a README: enough for 1,000 characters of any UTF-8.
const README_BYTES: u64 = 4_000;
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
    async fn details(
        &self,
        event: &PackageEvent,
        wanted: DetailsWanted,
    ) -> Result<Details, StoreError> {
        self.read_wanted(event, wanted).await
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
    tables: Option<TableReading>,
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
        self.tables = Some(TableReading::new(settings));
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
        self.read_wanted(event, DetailsWanted::ALL).await
    }

    /// The details of the event's revision, the table files read only when `wanted` and
    /// this reader reads tables.
    ///
    /// # Errors
    /// As [`read`](Self::read).
    pub async fn read_wanted(
        &self,
        event: &PackageEvent,
        wanted: DetailsWanted,
    ) -> Result<Details, StoreError> {
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
                let tables = self.tables.as_ref().filter(|_| wanted.tables);
                if let (Some(reading), Ok(_)) = (tables, &changes.diff) {
                    let read = tables::read_tables(
                        &self.store,
                        reading,
                        previous_revision.summary,
                        current,
                    );
                    changes.tables = Some(read.await?);
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

#[cfg(test)]
mod tests;
