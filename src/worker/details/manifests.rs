//! An event's manifest summaries: from the cache, read at once when small, or sized first,
//! reserved within the memory budget together, and read; whole ones are cached.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::budget::{Busy, MemoryBudget, Reservation};
use super::stream::{Cap, LineSplitter, ManifestSink};
use super::{warn_unreadable, DetailsReader, MEMORY_WAIT};
use crate::domain::manifest::{ManifestError, ManifestReader, ManifestSummary};
use crate::domain::revision::{manifest_key, ObjectRef};
use crate::ports::{PackageStore, StoreError, StoreFailureKind};

impl<S: PackageStore> DetailsReader<S> {
    /// The summaries of these manifests (the event's own first), and the memory budget reserved
    /// for them.
    ///
    /// Cached ones are taken as they are, and small ones
    /// ([`SMALL_MANIFEST_BYTES`](super::SMALL_MANIFEST_BYTES)) are read at once, outside the
    /// budget. The large ones are only sized by their first response; then all of them are
    /// reserved together (the event's own first: one that does not fit in what is left is not
    /// read, and says why), waiting at most [`MEMORY_WAIT`], and read again.
    pub(super) async fn summaries(
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
}

/// Where one manifest of an event stands before it is read.
enum Slot {
    /// Its summary: cached, read at once, or refused for the budget.
    Ready(Arc<ManifestSummary>),
    /// Larger than [`SMALL_MANIFEST_BYTES`](super::SMALL_MANIFEST_BYTES), or any size without
    /// a budget (its size, when the store said it): to be read.
    Large(Option<u64>),
    /// Large, and this many bytes of the budget are reserved for it.
    Reserved(u64),
}
