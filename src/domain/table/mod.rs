//! Tables in a package (issue 22): what a Parquet footer or a CSV/TSV header line says about a
//! file (its columns, their types, its rows), and what changed between two versions of it.
//!
//! Sans I/O: a [`TableRead`] names the byte ranges to fetch (at most two for Parquet, one for
//! CSV/TSV) and turns the bytes into a [`Table`]; [`TableChange`] compares two and renders the
//! template's `changes.tables` entry. Bad input (corrupt or truncated files, binary files with
//! a table's name, huge headers) is never a panic: it is a [`TableError`], which the template
//! shows as that table's `error`.

mod compare;
mod depth;
mod parquet;
mod plan;
mod text;

pub use compare::{TableChange, TableStatus, COLUMNS_LISTED};
pub use plan::{PlannedTable, TablePlan, TableVersion};

use crate::domain::cut;

/// The first bytes of a CSV/TSV read for its header line.
pub const HEADER_BYTES: u64 = 64 * 1024;

/// A CSV/TSV (its compressed bytes, for `.gz`) this small is read whole and its rows counted;
/// a larger one has its header read and no row count.
pub const ROW_COUNT_BYTES: u64 = 1024 * 1024;

/// The last bytes of a Parquet file read first: the footer of a file with up to a few hundred
/// columns fits, so most files take one GET; a larger footer takes a second.
pub const PARQUET_FIRST_TAIL: u64 = 64 * 1024;

/// Memory a footer takes while it is decoded, as a multiple of its bytes (the bytes read, and
/// the metadata the `parquet` crate builds from them): what the worker reserves of
/// `s3.memory_megabytes` before reading a footer longer than [`PARQUET_FIRST_TAIL`]. Its
/// decoding peaked at 5.6× for pyarrow's 2,000-column footer (`tests/table_memory.rs`).
pub const FOOTER_MEMORY_FACTOR: u64 = 8;

/// Inputs at least this long may take milliseconds to decode (a footer of several hundred
/// columns: about 0.5 µs a column), see [`TableRead::may_take_long`].
pub const SLOW_INPUT_BYTES: u64 = 256 * 1024;

/// A gzip-compressed CSV/TSV inflates to at most this much while its rows are counted; past it
/// the count is given up (null), which bounds a decompression bomb's CPU.
pub const INFLATED_ROW_COUNT_BYTES: u64 = 64 * 1024 * 1024;

/// Column names and type names are shown in at most this many characters (see [`cut`]).
pub const NAME_CHARS: usize = 120;

/// A range of an object's bytes, as a store reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// Bytes `start..end` (`end` exclusive); what exists of them when the object is shorter.
    Span {
        /// The first byte.
        start: u64,
        /// One past the last byte.
        end: u64,
    },
    /// The last `n` bytes; the whole object when it is shorter.
    Suffix(u64),
}

impl ByteRange {
    /// The first `n` bytes.
    pub fn prefix(n: u64) -> Self {
        Self::Span { start: 0, end: n }
    }

    /// At most this many bytes come back.
    pub fn max_len(self) -> u64 {
        match self {
            Self::Span { start, end } => end.saturating_sub(start),
            Self::Suffix(n) => n,
        }
    }
}

/// Which kind of table a file is, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableFormat {
    /// `.parquet`
    Parquet,
    /// `.csv`, or `.csv.gz` when `gzip`.
    Csv {
        /// Gzip-compressed.
        gzip: bool,
    },
    /// `.tsv`, or `.tsv.gz` when `gzip`.
    Tsv {
        /// Gzip-compressed.
        gzip: bool,
    },
}

impl TableFormat {
    /// The format of a logical key, by its extension (any case); `None` when it is no table.
    ///
    /// Called for every entry of a manifest (100,000s): it allocates nothing.
    pub fn of(logical_key: &str) -> Option<Self> {
        let name = logical_key.rsplit('/').next().unwrap_or(logical_key);
        let ends_with = |text: &str, suffix: &str| {
            text.len() >= suffix.len()
                && text.as_bytes()[text.len() - suffix.len()..]
                    .eq_ignore_ascii_case(suffix.as_bytes())
        };
        let (stem, gzip) = if ends_with(name, ".gz") {
            // ".gz" is ASCII: cutting it leaves a char boundary.
            (&name[..name.len() - 3], true)
        } else {
            (name, false)
        };
        // A bare ".csv" (no stem) is a hidden file, not a table.
        let ext = |e: &str| stem.len() > e.len() && ends_with(stem, e);
        if ext(".csv") {
            Some(Self::Csv { gzip })
        } else if ext(".tsv") {
            Some(Self::Tsv { gzip })
        } else if ext(".parquet") && !gzip {
            Some(Self::Parquet)
        } else {
            None
        }
    }

    /// The template's `format`: `parquet`, `csv` or `tsv` (compressed or not).
    pub fn name(self) -> &'static str {
        match self {
            Self::Parquet => "parquet",
            Self::Csv { .. } => "csv",
            Self::Tsv { .. } => "tsv",
        }
    }
}

/// Bounds on what is read of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableLimits {
    /// A Parquet footer longer than this is not read (`s3.max_footer_megabytes`).
    pub max_footer_bytes: u64,
}

impl Default for TableLimits {
    fn default() -> Self {
        Self {
            max_footer_bytes: 8 * 1024 * 1024,
        }
    }
}

/// What of an event's tables to read (`s3.max_tables`, `s3.max_footer_megabytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSettings {
    /// Table files read per event at most; the rest are counted in `changes.tables_more`.
    pub max_tables: usize,
    /// Bounds on one file's read.
    pub limits: TableLimits,
}

impl Default for TableSettings {
    fn default() -> Self {
        Self {
            max_tables: 20,
            limits: TableLimits::default(),
        }
    }
}

/// One column: its name and, for Parquet, its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The name, control characters replaced (see [`clean_name`]); not cut.
    pub name: String,
    /// Parquet: the logical type where there is one, else the physical type, lower case (a
    /// nested column's type spells out its children, e.g. `list<string>`). CSV/TSV: none.
    pub data_type: Option<String>,
}

/// What a table file says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Table {
    /// The columns, in file order. Parquet: the top-level fields (a struct, list or map is one
    /// column whose type names its children).
    pub columns: Vec<Column>,
    /// The rows: Parquet's footer count; for CSV/TSV the records after the header when the
    /// file was read whole, else none.
    pub rows: Option<u64>,
}

/// Why a table could not be described. Its text is the template's `error` for that table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// Too short, or no `PAR1` at its end.
    #[error("not a Parquet file: {0}")]
    NotParquet(String),
    /// The footer is encrypted (`PARE`): its schema cannot be read without the key.
    #[error("the Parquet footer is encrypted")]
    Encrypted,
    /// The footer is longer than `s3.max_footer_megabytes` allows.
    #[error("the Parquet footer is {bytes} bytes, over the limit of {limit} bytes")]
    FooterTooLarge {
        /// The footer's length.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// The footer did not decode.
    #[error("corrupt Parquet footer: {0}")]
    CorruptFooter(String),
    /// A file named as a CSV/TSV that is not text.
    #[error("not a text table: {0}")]
    NotText(String),
    /// No end of the header line within the first bytes read.
    #[error("the header line is longer than {} KiB", HEADER_BYTES / 1024)]
    HeaderTooLong,
    /// A `.gz` file that does not inflate.
    #[error("not a gzip file: {0}")]
    Gzip(String),
    /// The store refused or failed the read (set by the worker; e.g. access denied).
    #[error("{0}")]
    Unreadable(String),
}

/// What to do after bytes were fed to a [`TableRead`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// The table, described.
    Done(Table),
    /// Read this range next and feed it (a Parquet footer longer than the first tail).
    Read(ByteRange),
}

/// Reading one version of one table file, sans I/O: read [`first`](Self::first), feed the
/// bytes to [`feed`](Self::feed), and read again while it says [`Next::Read`]. Parquet takes
/// at most two reads (the tail, then the whole footer when it was longer); CSV/TSV one.
#[derive(Debug, Clone)]
pub struct TableRead {
    format: TableFormat,
    size: u64,
    limits: TableLimits,
    /// Reads fed so far.
    reads: u8,
    /// The length of the range last asked for.
    asked: u64,
}

impl TableRead {
    /// A read of a file of `size` bytes (the manifest's size).
    pub fn new(format: TableFormat, size: u64, limits: TableLimits) -> Self {
        Self {
            format,
            size,
            limits,
            reads: 0,
            asked: 0,
        }
    }

    /// The first range to read: Parquet's last [`PARQUET_FIRST_TAIL`] bytes; a CSV/TSV's
    /// first [`HEADER_BYTES`], or the whole of one up to [`ROW_COUNT_BYTES`] (rows counted).
    pub fn first(&mut self) -> ByteRange {
        let range = match self.format {
            // The whole tail even when the manifest says the file is shorter: a suffix range
            // longer than the object reads all of it.
            TableFormat::Parquet => ByteRange::Suffix(PARQUET_FIRST_TAIL),
            TableFormat::Csv { .. } | TableFormat::Tsv { .. } => {
                if self.size <= ROW_COUNT_BYTES {
                    ByteRange::prefix(self.size)
                } else {
                    ByteRange::prefix(HEADER_BYTES)
                }
            }
        };
        self.asked = range.max_len();
        range
    }

    /// Whether feeding `bytes` bytes may take milliseconds, so that an async caller should
    /// feed them off its runtime thread: a long input (a wide footer), or a `.gz` read whole,
    /// which is inflated (up to [`INFLATED_ROW_COUNT_BYTES`]) to count its rows.
    pub fn may_take_long(&self, bytes: usize) -> bool {
        let gzip = matches!(
            self.format,
            TableFormat::Csv { gzip: true } | TableFormat::Tsv { gzip: true }
        );
        bytes as u64 >= SLOW_INPUT_BYTES || (gzip && self.size <= ROW_COUNT_BYTES)
    }

    /// Takes the bytes of the range last asked for.
    ///
    /// # Errors
    /// Why the table cannot be described from them.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Next, TableError> {
        self.reads = self.reads.saturating_add(1);
        match self.format {
            TableFormat::Parquet => {
                // Fewer bytes than asked for: the tail is the whole file.
                let whole = (bytes.len() as u64) < self.asked || bytes.len() as u64 >= self.size;
                match parquet::from_tail(bytes, whole, self.limits)? {
                    parquet::Tail::Table(table) => Ok(Next::Done(table)),
                    // The second read was the whole footer: needing more means it changed
                    // under us or lied about its length.
                    parquet::Tail::Need(_) if self.reads > 1 => Err(TableError::CorruptFooter(
                        "the footer's length does not match the bytes read".to_owned(),
                    )),
                    parquet::Tail::Need(n) => {
                        self.asked = n;
                        Ok(Next::Read(ByteRange::Suffix(n)))
                    }
                }
            }
            TableFormat::Csv { gzip } | TableFormat::Tsv { gzip } => {
                let delimiter = if matches!(self.format, TableFormat::Tsv { .. }) {
                    b'\t'
                } else {
                    b','
                };
                let whole = self.size <= ROW_COUNT_BYTES && bytes.len() as u64 == self.size;
                text::describe(bytes, delimiter, gzip, whole).map(Next::Done)
            }
        }
    }
}

/// A name as shown: control characters (newlines, escapes, NUL) replaced by U+FFFD, so that no
/// name breaks a line of the text mail or a subject; markup is left as data for the templates
/// to escape.
pub fn clean_name(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

#[cfg(test)]
mod tests;
