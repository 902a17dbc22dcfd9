//! The streaming reader ([`ManifestReader`]): a push parser fed one manifest line at a time,
//! within [`ManifestLimits`], that never holds the manifest.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::ManifestError;
use super::hash::{fingerprint, ContentHash};
use super::summary::{Entry, Header, ManifestSummary, Workflow, README_KEY};
use crate::domain::json_kind;
use crate::domain::table::TableFormat;

/// Longest error reason kept from the JSON parser, in characters: a hostile line must not turn
/// into a megabyte log line.
const REASON_CHARS: usize = 200;

/// How much of a manifest the reader accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManifestLimits {
    /// Longest line, in bytes, without its line break.
    pub max_line_bytes: usize,
    /// Most file entries (header not counted).
    pub max_entries: usize,
}

impl Default for ManifestLimits {
    /// 1 MiB lines (the limit) and 1,000,000 entries (about 100 MB of index).
    fn default() -> Self {
        Self {
            max_line_bytes: 1024 * 1024,
            max_entries: 1_000_000,
        }
    }
}

/// The manifest's format version this reader understands.
const VERSION: &str = "v0";

/// A push parser for one manifest: feed it each line (without its line break), then
/// [`finish`](Self::finish). Pure: the caller does the I/O and the line splitting.
///
/// The first error stops it: that [`feed_line`](Self::feed_line) returns it, later calls return
/// it again without reading, and [`finish`](Self::finish) still gives the summary of what was
/// read before, with [`ManifestSummary::error`] set.
#[derive(Debug)]
pub struct ManifestReader {
    limits: ManifestLimits,
    /// Lines seen, blank ones included (the next line's number minus one).
    lines: u64,
    /// The header line, once read.
    header: Option<Header>,
    readme_key: Option<String>,
    entries: Vec<Entry>,
    error: Option<ManifestError>,
}

impl ManifestReader {
    /// A reader that has seen nothing yet.
    pub fn new(limits: ManifestLimits) -> Self {
        Self {
            limits,
            lines: 0,
            header: None,
            readme_key: None,
            entries: Vec::new(),
            error: None,
        }
    }

    /// The 1-based number the next fed line will get (for a splitter's own errors).
    pub fn next_line(&self) -> u64 {
        self.lines + 1
    }

    /// Reads one line, without its line break (a trailing `\r` is fine). Blank lines are
    /// skipped. A line over the limit is refused before it is parsed.
    ///
    /// # Errors
    /// The first [`ManifestError`] of this manifest, again on every later call.
    pub fn feed_line(&mut self, line: &[u8]) -> Result<(), ManifestError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        self.lines += 1;
        let result = self.read_line(line);
        if let Err(error) = &result {
            self.error = Some(error.clone());
        }
        result
    }

    /// Records why reading stopped early (the stream broke, the splitter met a line it would
    /// not buffer): the summary carries it as its error. The first error wins.
    pub fn fail(&mut self, error: ManifestError) {
        self.error.get_or_insert(error);
    }

    /// Ends the manifest: sorts the index, drops duplicate keys, and sums totals and folders.
    pub fn finish(self) -> ManifestSummary {
        let mut error = self.error;
        if self.header.is_none() && error.is_none() {
            error = Some(ManifestError::Empty);
        }
        let mut entries = self.entries;
        entries.sort_by(|a, b| a.logical_key.cmp(&b.logical_key));
        // A stable sort keeps the first of equal keys; dedup_by drops the later ones.
        let mut duplicate = None;
        entries.dedup_by(|later, first| {
            let same = later.logical_key == first.logical_key;
            if same && duplicate.is_none() {
                duplicate = Some(later.logical_key.to_string());
            }
            same
        });
        if let Some(key) = duplicate {
            error.get_or_insert(ManifestError::DuplicateKey(key));
        }
        entries.shrink_to_fit();
        ManifestSummary::new(self.header, self.readme_key, entries, error)
    }

    /// Reads all of `text` (tests, small manifests): splits on `\n` and finishes.
    pub fn read_str(limits: ManifestLimits, text: &str) -> ManifestSummary {
        let mut reader = Self::new(limits);
        for line in text.split('\n') {
            if reader.feed_line(line.as_bytes()).is_err() {
                break;
            }
        }
        reader.finish()
    }

    fn read_line(&mut self, line: &[u8]) -> Result<(), ManifestError> {
        if line.len() > self.limits.max_line_bytes {
            return Err(ManifestError::LineTooLong {
                line: self.lines,
                bytes: line.len() as u64,
                limit: self.limits.max_line_bytes,
            });
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        if self.header.is_some() {
            self.read_entry(line)
        } else {
            self.read_header(line)
        }
    }

    fn read_header(&mut self, line: &[u8]) -> Result<(), ManifestError> {
        let number = self.lines;
        let shape = |reason: String| ManifestError::Shape {
            line: number,
            what: "header",
            reason,
        };
        let mut header = match serde_json::from_slice::<Value>(line) {
            Ok(Value::Object(map)) => map,
            Ok(other) => return Err(shape(format!("found {}", json_kind(&other)))),
            Err(e) => return Err(json_error(number, "header", &e)),
        };
        if header.contains_key("logical_key") {
            return Err(shape(
                "it is a file entry: the header line is missing".into(),
            ));
        }
        match header.get("version") {
            None | Some(Value::Null) => {}
            Some(Value::String(v)) if v == VERSION => {}
            Some(Value::String(v)) => return Err(ManifestError::UnsupportedVersion(v.clone())),
            Some(other) => {
                return Err(shape(format!("\"version\" is {}", json_kind(other))));
            }
        }
        let message = optional_string(header.remove("message"), "message").map_err(&shape)?;
        let user_meta = match header.remove("user_meta") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map,
            Some(other) => {
                return Err(shape(format!(
                    "\"user_meta\" is {}, not an object",
                    json_kind(&other)
                )))
            }
        };
        let workflow = match header.remove("workflow") {
            None | Some(Value::Null) => None,
            Some(Value::Object(mut w)) => Some(Workflow {
                id: optional_string(w.remove("id"), "workflow.id").map_err(&shape)?,
                config: optional_string(w.remove("config"), "workflow.config").map_err(&shape)?,
            }),
            Some(other) => {
                return Err(shape(format!(
                    "\"workflow\" is {}, not an object",
                    json_kind(&other)
                )))
            }
        };
        self.header = Some(Header {
            message,
            user_meta,
            workflow,
        });
        Ok(())
    }

    fn read_entry(&mut self, line: &[u8]) -> Result<(), ManifestError> {
        let number = self.lines;
        let entry: EntryLine<'_> =
            serde_json::from_slice(line).map_err(|e| json_error(number, "entry", &e))?;
        if entry.physical_keys.is_empty() {
            // Directory metadata (`{"logical_key": "data/", "meta": …}`): not a file.
            return Ok(());
        }
        if self.entries.len() >= self.limits.max_entries {
            return Err(ManifestError::TooManyEntries {
                limit: self.limits.max_entries,
            });
        }
        let missing = |field: &str| ManifestError::Shape {
            line: number,
            what: "entry",
            reason: format!("missing field `{field}`"),
        };
        let size = entry.size.ok_or_else(|| missing("size"))?;
        let hash = entry.hash.ok_or_else(|| missing("hash"))?;
        if entry.logical_key == README_KEY && self.readme_key.is_none() {
            self.readme_key = entry.physical_keys.first().map(|k| k.to_string());
        }
        // quilt3 reads a missing or null `meta` as `{}` (`meta or {}`).
        let meta_fingerprint = match &entry.meta {
            None | Some(Value::Null) => fingerprint(&Value::Object(Map::new())),
            Some(meta) => fingerprint(meta),
        };
        let physical_key = TableFormat::of(&entry.logical_key)
            .and_then(|_| entry.physical_keys.first())
            .map(|k| Box::from(k.as_ref()));
        self.entries.push(Entry {
            physical_key,
            logical_key: entry.logical_key.into(),
            size,
            hash: ContentHash::new(&hash.kind, &hash.value),
            meta_fingerprint,
        });
        Ok(())
    }
}

/// One entry line as quilt3 writes it; strings are borrowed from the line unless escaped.
/// Unknown fields are ignored (forward compatibility); a `size` that is not a `u64` (negative,
/// fractional, over 2^64-1) is an error, because totals built on it would lie. A line without
/// physical keys is directory metadata, which quilt3 also writes, and has no size or hash.
#[derive(Deserialize)]
struct EntryLine<'a> {
    #[serde(borrow)]
    logical_key: Cow<'a, str>,
    #[serde(default, borrow)]
    physical_keys: Vec<Cow<'a, str>>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default, borrow)]
    hash: Option<HashLine<'a>>,
    #[serde(default)]
    meta: Option<Value>,
}

#[derive(Deserialize)]
struct HashLine<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    value: Cow<'a, str>,
}

/// Sorts serde_json's errors: syntax (and depth, and lone surrogates) make a line invalid JSON,
/// a data error makes it the wrong shape.
fn json_error(line: u64, what: &'static str, error: &serde_json::Error) -> ManifestError {
    let reason = crate::domain::cut(&error.to_string(), REASON_CHARS);
    match error.classify() {
        serde_json::error::Category::Data => ManifestError::Shape { line, what, reason },
        _ => ManifestError::InvalidJson { line, reason },
    }
}

fn optional_string(value: Option<Value>, name: &str) -> Result<Option<String>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!("{name:?} is {}, not a string", json_kind(&other))),
    }
}
