//! Which table files of a revision to read: the added and modified ones, in path order, at
//! most `s3.max_tables` of them (the rest only counted), each with where its versions are.

use std::cmp::Ordering;

use super::TableFormat;
use crate::domain::manifest::{Entry, ManifestSummary};

/// One version of a table file: where it is and how large the manifest says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableVersion {
    /// Its physical key (`s3://bucket/key?versionId=…`).
    pub physical_key: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A table file to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedTable {
    /// The logical key.
    pub path: String,
    /// Its format, by its name.
    pub format: TableFormat,
    /// The previous revision's version; None for an added file.
    pub before: Option<TableVersion>,
    /// The previous version has the current one's physical key but other content: it was
    /// overwritten in place (a bucket without versioning), so reading it would read the
    /// current one. It is not read.
    pub before_overwritten: bool,
    /// The current revision's version.
    pub after: TableVersion,
}

/// The table files to read for one event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TablePlan {
    /// The first `max` added or modified table files, in path (byte) order.
    pub tables: Vec<PlannedTable>,
    /// How many more there are (the template's `changes.tables_more`).
    pub more: u64,
}

impl TablePlan {
    /// The table files `current` added or modified since `previous`, as quilt3's diff calls
    /// them modified (size, hash or metadata), at most `max` of them.
    pub fn between(previous: &ManifestSummary, current: &ManifestSummary, max: usize) -> Self {
        let mut plan = Self::default();
        let mut old = previous.entries().iter().peekable();
        for entry in current.entries() {
            // Both indexes are sorted by key: skip the previous entries before this one.
            let mut before = None;
            while let Some(prev) = old.peek() {
                match prev.logical_key.cmp(&entry.logical_key) {
                    Ordering::Less => {
                        old.next();
                    }
                    Ordering::Equal => {
                        before = old.next();
                        break;
                    }
                    Ordering::Greater => break,
                }
            }
            let (Some(format), Some(after)) = (TableFormat::of(&entry.logical_key), version(entry))
            else {
                continue;
            };
            let (before, before_overwritten) = match before {
                Some(prev) if !prev.differs_from(entry) => continue,
                Some(prev) => (
                    version(prev),
                    prev.physical_key == entry.physical_key
                        && (prev.hash != entry.hash || prev.size != entry.size),
                ),
                None => (None, false),
            };
            if plan.tables.len() < max {
                plan.tables.push(PlannedTable {
                    path: entry.logical_key.to_string(),
                    format,
                    before,
                    before_overwritten,
                    after,
                });
            } else {
                plan.more += 1;
            }
        }
        plan
    }
}

fn version(entry: &Entry) -> Option<TableVersion> {
    Some(TableVersion {
        physical_key: entry.physical_key.as_deref()?.to_owned(),
        size: entry.size,
    })
}
