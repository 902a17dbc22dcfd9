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

use std::time::Duration;

use futures_util::stream::{self, StreamExt};

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
pub struct FooterBudget(MemoryBudget);

impl FooterBudget {
    /// The budget for footers of at most `limits.max_footer_bytes`.
    pub fn new(limits: TableLimits) -> Self {
        Self(MemoryBudget::new(
            limits.max_footer_bytes.saturating_mul(FOOTER_MEMORY_FACTOR),
        ))
    }

    /// Bytes reserved now (for the tests' checks).
    pub fn in_use(&self) -> u64 {
        self.0.in_use()
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

/// The tables `current` added or modified since `previous`, read and compared.
///
/// # Errors
/// A transient store failure on any read: the details fail, and the message is retried.
pub(super) async fn read_tables<S: PackageStore>(
    reader: Tables<'_, S>,
    previous: &ManifestSummary,
    current: &ManifestSummary,
) -> Result<TableChanges, StoreError> {
    let plan = TablePlan::between(previous, current, reader.settings.max_tables);
    let more = plan.more;
    let mut reads = stream::iter(plan.tables)
        .map(|planned| read_change(reader, planned))
        .buffered(CONCURRENCY);
    let mut entries = Vec::new();
    while let Some(change) = reads.next().await {
        entries.push(change?.to_json());
    }
    Ok(TableChanges { entries, more })
}

/// What reading tables takes: the store, the settings, and the footers' memory.
pub(super) struct Tables<'a, S> {
    pub store: &'a S,
    pub settings: TableSettings,
    pub footers: &'a FooterBudget,
}

impl<S> Clone for Tables<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for Tables<'_, S> {}

/// Both versions of one file, one after the other (so a file holds at most one GET at once).
async fn read_change<S: PackageStore>(
    reader: Tables<'_, S>,
    planned: PlannedTable,
) -> Result<TableChange, StoreError> {
    let before = match &planned.before {
        Some(_) if planned.before_overwritten => Some(Err(TableError::Unreadable(
            "it was overwritten in place (the bucket keeps no versions)".to_owned(),
        ))),
        Some(version) => Some(describe(reader, planned.format, version).await?),
        None => None,
    };
    let after = describe(reader, planned.format, &planned.after).await?;
    Ok(TableChange {
        path: planned.path,
        format: planned.format,
        before,
        after,
    })
}

/// One version of a file, described; a read that failed for good is its error.
async fn describe<S: PackageStore>(
    reader: Tables<'_, S>,
    format: TableFormat,
    version: &TableVersion,
) -> Result<Result<Table, TableError>, StoreError> {
    let object = match parse_physical_key(&version.physical_key) {
        Ok(object) => object,
        Err(e) => return Ok(Err(TableError::Unreadable(e.to_string()))),
    };
    let mut read = TableRead::new(format, version.size, reader.settings.limits);
    let mut range = read.first();
    loop {
        // Held through the GET and the decoding: until the bytes are gone.
        let _room = reader.footers.reserve(&object, range).await?;
        let mut sink = Bounded::new(range);
        match reader.store.read_range(&object, range, &mut sink).await {
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
