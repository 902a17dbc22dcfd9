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

use futures_util::stream::{self, StreamExt};

use crate::domain::changes::TableChanges;
use crate::domain::manifest::ManifestSummary;
use crate::domain::revision::parse_physical_key;
use crate::domain::table::{
    ByteRange, Next, PlannedTable, Table, TableChange, TableError, TableFormat, TableLimits,
    TablePlan, TableRead, TableSettings, TableVersion,
};
use crate::ports::{PackageStore, ReadSink, StoreError, StoreFailureKind};

/// Table files read at once, per event.
pub const CONCURRENCY: usize = 8;

/// The tables `current` added or modified since `previous`, read and compared.
///
/// # Errors
/// A transient store failure on any read: the details fail, and the message is retried.
pub(super) async fn read_tables<S: PackageStore>(
    store: &S,
    settings: TableSettings,
    previous: &ManifestSummary,
    current: &ManifestSummary,
) -> Result<TableChanges, StoreError> {
    let plan = TablePlan::between(previous, current, settings.max_tables);
    let more = plan.more;
    let mut reads = stream::iter(plan.tables)
        .map(|planned| read_change(store, settings.limits, planned))
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
    limits: TableLimits,
    planned: PlannedTable,
) -> Result<TableChange, StoreError> {
    let before = match &planned.before {
        Some(_) if planned.before_overwritten => Some(Err(TableError::Unreadable(
            "it was overwritten in place (the bucket keeps no versions)".to_owned(),
        ))),
        Some(version) => Some(describe(store, planned.format, version, limits).await?),
        None => None,
    };
    let after = describe(store, planned.format, &planned.after, limits).await?;
    Ok(TableChange {
        path: planned.path,
        format: planned.format,
        before,
        after,
    })
}

/// One version of a file, described; a read that failed for good is its error.
async fn describe<S: PackageStore>(
    store: &S,
    format: TableFormat,
    version: &TableVersion,
    limits: TableLimits,
) -> Result<Result<Table, TableError>, StoreError> {
    let object = match parse_physical_key(&version.physical_key) {
        Ok(object) => object,
        Err(e) => return Ok(Err(TableError::Unreadable(e.to_string()))),
    };
    let mut read = TableRead::new(format, version.size, limits);
    let mut range = read.first();
    loop {
        let mut sink = Bounded::new(range);
        match store.read_range(&object, range, &mut sink).await {
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
        match read.feed(&sink.bytes) {
            Ok(Next::Done(table)) => return Ok(Ok(table)),
            Ok(Next::Read(next)) => range = next,
            Err(e) => return Ok(Err(e)),
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
