//! Table files in the details (issue 22): for the added and modified `.parquet`, `.csv` and
//! `.tsv` files of a revision, their footers or header lines read by ranged GETs, both
//! versions compared, as the template's `changes.tables`.
//!
//! Bounded: at most `s3.max_tables` files per event ([`TableSettings::max_tables`]), at most
//! two GETs per Parquet version and one per CSV/TSV version (the [`TableRead`] plan), each GET
//! at most its range, footers at most `s3.max_footer_megabytes`, and [`CONCURRENCY`] files
//! read at once. A table that cannot be read is that table's `error` and the email still goes
//! out; only a transient store failure (throttling, 5xx) fails the details, as for the
//! manifest, so the message is retried.
//!
//! Memory and the runtime thread: a footer longer than the first tail is read and decoded
//! within the process-wide [`FooterBudget`], so forty messages with eight wide tables each do
//! not hold 2.5 GB at once; a large input (a wide footer, a `.gz` inflated to count its rows) is
//! decoded on Tokio's blocking pool, so its milliseconds do not stall the other messages on the
//! worker's one runtime thread.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use lru::LruCache;

use crate::domain::changes::TableChanges;
use crate::domain::manifest::ManifestSummary;
use crate::domain::revision::{parse_physical_key, ObjectRef};
use crate::domain::table::{
    ByteRange, Next, PlannedTable, Table, TableChange, TableError, TableFormat, TableLimits,
    TablePlan, TableRead, TableSettings, TableVersion, FOOTER_MEMORY_FACTOR, PARQUET_FIRST_TAIL,
};
use crate::ports::{PackageStore, ReadSink, StoreError, StoreFailureKind};

use super::budget::{Busy, MemoryBudget, Reservation};

/// Table files read at once, per event.
pub const CONCURRENCY: usize = 8;

/// Longest wait for room to read a large footer; then the details fail transiently and the
/// message is retried. A footer is held for one GET and its decoding, so waits are short.
const FOOTER_WAIT: Duration = Duration::from_secs(60);

/// Memory for the large footers being read at once, across all messages:
/// [`FOOTER_MEMORY_FACTOR`] × `s3.max_footer_megabytes`, so the largest footer allowed fits
/// alone, or many ordinary wide ones together. Separate from the manifests' budget: an event
/// reads its tables while holding its manifests' reservation, and waiting for more of the same
/// budget while holding part of it could leave two events each waiting for the other.
#[derive(Debug)]
struct FooterBudget(MemoryBudget);

impl FooterBudget {
    /// The budget for footers of at most `limits.max_footer_bytes`.
    fn new(limits: TableLimits) -> Self {
        Self(MemoryBudget::new(
            limits.max_footer_bytes.saturating_mul(FOOTER_MEMORY_FACTOR),
        ))
    }

    /// Room to read and decode the last `range` bytes of `object`'s file; none needed for a
    /// read no longer than the first tail.
    async fn reserve(
        &self,
        object: &ObjectRef,
        range: ByteRange,
    ) -> Result<Option<Reservation<'_>>, StoreError> {
        let bytes = range.max_len();
        if bytes <= PARQUET_FIRST_TAIL {
            return Ok(None);
        }
        let wanted = bytes.saturating_mul(FOOTER_MEMORY_FACTOR);
        match self.0.reserve(wanted, FOOTER_WAIT).await {
            Ok(reservation) => Ok(Some(reservation)),
            Err(Busy) => Err(StoreError {
                kind: StoreFailureKind::Transient,
                operation: "GetObject",
                bucket: object.bucket.clone(),
                key: object.key.clone(),
                code: "MemoryBudgetBusy".to_owned(),
                message: format!(
                    "waited {} s for {wanted} bytes of the memory for Parquet footers ({} bytes, \
                     {FOOTER_MEMORY_FACTOR} × s3.max_footer_megabytes, shared by every message)",
                    FOOTER_WAIT.as_secs(),
                    self.0.bytes()
                ),
            }),
        }
    }
}

/// What the details reader keeps to read tables: the settings, the large footers' memory, and
/// the versions already described.
#[derive(Debug)]
pub struct TableReading {
    settings: TableSettings,
    footers: FooterBudget,
    known: KnownTables,
}

impl TableReading {
    /// Reading tables with these settings.
    pub fn new(settings: TableSettings) -> Self {
        Self {
            settings,
            footers: FooterBudget::new(settings.limits),
            known: KnownTables::new(KNOWN_TABLES),
        }
    }
}

/// The tables `current` added or modified since `previous`, read and compared.
///
/// # Errors
/// A transient store failure on any read: the details fail, and the message is retried.
pub(super) async fn read_tables<S: PackageStore>(
    store: &S,
    reading: &TableReading,
    previous: &ManifestSummary,
    current: &ManifestSummary,
) -> Result<TableChanges, StoreError> {
    let plan = TablePlan::between(previous, current, reading.settings.max_tables);
    let more = plan.more;
    let mut reads = stream::iter(plan.tables)
        .map(|planned| read_change(store, reading, planned))
        .buffered(CONCURRENCY);
    let mut entries = Vec::new();
    while let Some(change) = reads.next().await {
        entries.push(change?.to_json());
    }
    Ok(TableChanges { entries, more })
}

/// Both versions of one file, one after the other (so a file holds at most one GET at once).
async fn read_change<S: PackageStore>(
    store: &S,
    reading: &TableReading,
    planned: PlannedTable,
) -> Result<TableChange, StoreError> {
    let before = match &planned.before {
        Some(_) if planned.before_overwritten => Some(Err(TableError::Unreadable(
            "it was overwritten in place (the bucket keeps no versions)".to_owned(),
        ))),
        Some(version) => Some(describe(store, reading, planned.format, version).await?),
        None => None,
    };
    let after = describe(store, reading, planned.format, &planned.after).await?;
    Ok(TableChange {
        path: planned.path,
        format: planned.format,
        before,
        after,
    })
}

/// One version of a file, described (from those already known when it names its version); a
/// read that failed for good is its error.
async fn describe<S: PackageStore>(
    store: &S,
    reading: &TableReading,
    format: TableFormat,
    version: &TableVersion,
) -> Result<Result<Table, TableError>, StoreError> {
    let object = match parse_physical_key(&version.physical_key) {
        Ok(object) => object,
        Err(e) => return Ok(Err(TableError::Unreadable(e.to_string()))),
    };
    // Only a named version is known for good: an unversioned key may be overwritten.
    let known = object
        .version
        .is_some()
        .then(|| (format, version.physical_key.clone()));
    if let Some(table) = known.as_ref().and_then(|key| reading.known.get(key)) {
        return Ok(Ok(table));
    }
    let described = read_and_decode(store, reading, format, version, &object).await?;
    if let (Some(key), Ok(table)) = (known, &described) {
        reading.known.put(key, table);
    }
    Ok(described)
}

/// One version of a file, read from the store and decoded.
async fn read_and_decode<S: PackageStore>(
    store: &S,
    reading: &TableReading,
    format: TableFormat,
    version: &TableVersion,
    object: &ObjectRef,
) -> Result<Result<Table, TableError>, StoreError> {
    let mut read = TableRead::new(format, version.size, reading.settings.limits);
    let mut range = read.first();
    loop {
        // Held through the GET and the decoding: until the bytes are gone.
        let _room = reading.footers.reserve(object, range).await?;
        let mut sink = Bounded::new(range);
        match store.read_range(object, range, &mut sink).await {
            Ok(()) => {}
            Err(e) if e.kind == StoreFailureKind::Transient => return Err(e),
            Err(e) => {
                super::warn_unreadable(&e, "cannot read a table file; the email says why");
                return Ok(Err(TableError::Unreadable(format!(
                    "cannot read it: {} ({})",
                    e.code, e.message
                ))));
            }
        }
        let next;
        (read, next) = match decode(read, sink.bytes).await {
            Ok(decoded) => decoded,
            Err(e) => return Ok(Err(e)),
        };
        match next {
            Ok(Next::Done(table)) => return Ok(Ok(table)),
            Ok(Next::Read(next)) => range = next,
            Err(e) => return Ok(Err(e)),
        }
    }
}

/// Feeds `bytes` to `read`: here when that is quick, else on the blocking pool.
async fn decode(
    mut read: TableRead,
    bytes: Vec<u8>,
) -> Result<(TableRead, Result<Next, TableError>), TableError> {
    if !read.may_take_long(bytes.len()) {
        let next = read.feed(&bytes);
        return Ok((read, next));
    }
    tokio::task::spawn_blocking(move || {
        let next = read.feed(&bytes);
        (read, next)
    })
    .await
    .map_err(|e| TableError::Unreadable(format!("decoding it failed: {e}")))
}

/// Versions described at most, kept between events.
const KNOWN_TABLES: usize = 256;

/// A table whose names and types take more than this many bytes is not kept (so the known
/// tables hold at most 256 × 32 KiB = 8 MiB; a table of a few hundred columns fits).
const KNOWN_TABLE_BYTES: usize = 32 * 1024;

/// The versions of table files described lately, by format and versioned physical key. A
/// version of an S3 object never changes, and a revision's previous version of a file is
/// usually the one the previous revision's event described: with it known, a modified table
/// costs one GET, not two.
#[derive(Debug)]
struct KnownTables {
    // std Mutex: a lookup or an insert, never held across an await.
    entries: Mutex<LruCache<(TableFormat, String), Arc<Table>>>,
}

impl KnownTables {
    fn new(capacity: usize) -> Self {
        let bound = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            entries: Mutex::new(LruCache::new(bound)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LruCache<(TableFormat, String), Arc<Table>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, key: &(TableFormat, String)) -> Option<Table> {
        let table = self.lock().get(key).cloned()?;
        Some(Table::clone(&table))
    }

    fn put(&self, key: (TableFormat, String), table: &Table) {
        let bytes: usize = table
            .columns
            .iter()
            .map(|c| c.name.len() + c.data_type.as_ref().map_or(0, String::len))
            .sum();
        if bytes <= KNOWN_TABLE_BYTES {
            self.lock().put(key, Arc::new(table.clone()));
        }
    }
}

/// Keeps at most the range's length of what a read hands over, whatever the store does.
struct Bounded {
    bytes: Vec<u8>,
    limit: usize,
}

impl Bounded {
    fn new(range: ByteRange) -> Self {
        Self {
            bytes: Vec::new(),
            limit: usize::try_from(range.max_len()).unwrap_or(usize::MAX),
        }
    }
}

impl ReadSink for Bounded {
    fn size(&mut self, bytes: u64) -> bool {
        let expected = usize::try_from(bytes).unwrap_or(usize::MAX).min(self.limit);
        self.bytes.reserve_exact(expected);
        true
    }

    fn chunk(&mut self, chunk: &[u8]) -> bool {
        let room = self.limit.saturating_sub(self.bytes.len());
        self.bytes
            .extend_from_slice(&chunk[..chunk.len().min(room)]);
        self.bytes.len() < self.limit
    }
}

#[cfg(test)]
mod tests;
