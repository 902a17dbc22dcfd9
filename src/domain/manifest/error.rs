//! Why a manifest could not be read to the end ([`ManifestError`]): the reader stops at the
//! first one, and the summary carries it.

/// Why a manifest could not be read to the end. Messages quote keys with `{:?}`, so control
/// characters in hostile input are escaped before they reach a log line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// No line at all (blank lines do not count).
    #[error("the manifest is empty: it has no header line")]
    Empty,
    /// A line is longer than [`ManifestLimits::max_line_bytes`](super::ManifestLimits::max_line_bytes).
    #[error("line {line} is {bytes} bytes long, over the limit of {limit} bytes")]
    LineTooLong {
        /// 1-based line number.
        line: u64,
        /// Bytes seen (a splitter may stop counting early: at least this many).
        bytes: u64,
        /// The limit.
        limit: usize,
    },
    /// More file entries than [`ManifestLimits::max_entries`](super::ManifestLimits::max_entries).
    #[error("the manifest has more than {limit} entries")]
    TooManyEntries {
        /// The limit.
        limit: usize,
    },
    /// A line is not JSON (syntax error, truncated, lone surrogate, nested too deep).
    #[error("line {line} is not valid JSON: {reason}")]
    InvalidJson {
        /// 1-based line number.
        line: u64,
        /// What the JSON parser said.
        reason: String,
    },
    /// A line is JSON but not what quilt3 writes (a missing field, a size that is not a u64…).
    #[error("line {line} is not a manifest {what}: {reason}")]
    Shape {
        /// 1-based line number.
        line: u64,
        /// "header" or "entry".
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The header names a format this reader does not know.
    #[error("manifest version {0:?} is not supported (expected \"v0\")")]
    UnsupportedVersion(String),
    /// Two entries share a logical key; the first one is kept.
    #[error("logical key {0:?} appears more than once")]
    DuplicateKey(String),
    /// The caller stopped reading (the stream broke, a splitter gave up): see
    /// [`ManifestReader::fail`](super::ManifestReader::fail).
    #[error("the manifest could not be read: {0}")]
    Interrupted(String),
    /// Not read: larger than the memory the reader may give it (`s3.memory_megabytes`, a budget
    /// of manifest bytes shared by every message, of which another manifest read for the same
    /// event may already hold part).
    #[error("{}", over_budget(*.bytes, *.available, *.budget))]
    OverMemoryBudget {
        /// The manifest's size, when the store said it.
        bytes: Option<u64>,
        /// What was left of the budget for it.
        available: u64,
        /// The whole budget.
        budget: u64,
    },
}

fn over_budget(bytes: Option<u64>, available: u64, budget: u64) -> String {
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0));
    let size = bytes.map_or_else(
        || "the manifest is larger".to_owned(),
        |b| format!("the manifest is {}, larger", mib(b)),
    );
    if available >= budget {
        format!(
            "{size} than s3.memory_megabytes ({}) allows to read at once",
            mib(budget)
        )
    } else {
        format!(
            "{size} than the {} that s3.memory_megabytes ({}) leaves beside the other manifest \
             read for this event",
            mib(available),
            mib(budget)
        )
    }
}
