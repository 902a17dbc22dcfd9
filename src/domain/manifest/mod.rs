//! Quilt package manifests: a push parser that reads one JSON Lines manifest line at a time into
//! a compact summary (what the package is) and an index (what the diff needs).
//!
//! The manifest of `s3://<bucket>/.quilt/packages/<topHash>` is JSON Lines: line 1 is the header
//! `{"version": "v0", "message", "user_meta", "workflow"}` (any key may be missing or null), and
//! every later line is one file `{"logical_key", "physical_keys", "size", "hash", "meta"}`. The
//! reader never holds the manifest: per file it keeps the logical key, the size, the content hash
//! (32 decoded bytes when it is SHA-256, as quilt3 writes) and a 64-bit fingerprint of the file's
//! metadata, about 100 bytes a file.
//!
//! A manifest that breaks a rule stops the reader at its first error, and the summary still
//! carries what was read before it, because an email with partial details beats no email.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::json_kind;

mod hash;

use hash::fingerprint;
pub use hash::ContentHash;

/// The root's name in `package.top_level`: files without a `/` in their logical key.
pub const ROOT_FOLDER: &str = "";

/// At most this many folders in `package.top_level`.
pub const TOP_LEVEL_LIMIT: usize = 10;

/// `package.readme` holds at most this many characters of the README.
pub const README_CHARS: usize = 1_000;

/// The logical key whose physical key becomes `readme_key`.
pub const README_KEY: &str = "README.md";

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
    /// 1 MiB lines (the issue's limit) and 1,000,000 entries (about 100 MB of index).
    fn default() -> Self {
        Self {
            max_line_bytes: 1024 * 1024,
            max_entries: 1_000_000,
        }
    }
}

/// Why a manifest could not be read to the end. Messages quote keys with `{:?}`, so control
/// characters in hostile input are escaped before they reach a log line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// No line at all (blank lines do not count).
    #[error("the manifest is empty: it has no header line")]
    Empty,
    /// A line is longer than [`ManifestLimits::max_line_bytes`].
    #[error("line {line} is {bytes} bytes long, over the limit of {limit} bytes")]
    LineTooLong {
        /// 1-based line number.
        line: u64,
        /// Bytes seen (a splitter may stop counting early: at least this many).
        bytes: u64,
        /// The limit.
        limit: usize,
    },
    /// More file entries than [`ManifestLimits::max_entries`].
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
    /// The caller stopped reading (the stream broke, a splitter gave up): see [`ManifestReader::fail`].
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

/// The manifest's format version this reader understands.
const VERSION: &str = "v0";

/// One file of the package, as the diff needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The logical key, e.g. `data/table.csv`.
    pub logical_key: Box<str>,
    /// Size in bytes.
    pub size: u64,
    /// Content hash.
    pub hash: ContentHash,
    /// Fingerprint of the file's `meta` (quilt3's diff counts a metadata change as modified).
    pub meta_fingerprint: u64,
}

impl Entry {
    /// Whether quilt3 would call the file modified: its size, hash or metadata differ (the
    /// physical key does not count, as in `PackageEntry.__eq__`).
    pub fn differs_from(&self, other: &Self) -> bool {
        self.size != other.size
            || self.hash != other.hash
            || self.meta_fingerprint != other.meta_fingerprint
    }
}

/// The header's `workflow`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workflow {
    /// Workflow id; null when the registry has a workflow config but the push named none.
    pub id: Option<String>,
    /// The workflow config's S3 URL.
    pub config: Option<String>,
}

/// Files and bytes under one top-level folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    /// Folder name, [`ROOT_FOLDER`] for files at the root.
    pub name: String,
    /// Number of files.
    pub files: u64,
    /// Total size.
    pub bytes: u64,
}

/// What one manifest says, read by [`ManifestReader`]: header, totals, the largest top-level
/// folders, and the index of every file read (sorted by logical key, in byte order).
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestSummary {
    header_read: bool,
    message: Option<String>,
    user_meta: Map<String, Value>,
    workflow: Option<Workflow>,
    files: u64,
    bytes: u64,
    top_level: Vec<Folder>,
    readme_key: Option<String>,
    entries: Vec<Entry>,
    error: Option<ManifestError>,
}

impl ManifestSummary {
    /// The header's message.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// The header's `user_meta`, empty when missing or null.
    pub fn user_meta(&self) -> &Map<String, Value> {
        &self.user_meta
    }

    /// The header's workflow, when it is an object.
    pub fn workflow(&self) -> Option<&Workflow> {
        self.workflow.as_ref()
    }

    /// Number of files read.
    pub fn files(&self) -> u64 {
        self.files
    }

    /// Total size of the files read (saturates at `u64::MAX`).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The largest top-level folders, by bytes then name, at most [`TOP_LEVEL_LIMIT`].
    pub fn top_level(&self) -> &[Folder] {
        &self.top_level
    }

    /// The first physical key of `README.md` at the package root.
    pub fn readme_key(&self) -> Option<&str> {
        self.readme_key.as_deref()
    }

    /// Every file read, sorted by logical key (byte order), one per key.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The first error, when the manifest was not read to the end (or was not a valid one).
    pub fn error(&self) -> Option<&ManifestError> {
        self.error.as_ref()
    }

    /// Whether the header was read (false: message, user_meta and workflow are defaults).
    pub fn header_read(&self) -> bool {
        self.header_read
    }

    /// Approximate heap bytes held, for sizing a cache of summaries.
    pub fn heap_bytes(&self) -> usize {
        let entries = self.entries.capacity() * std::mem::size_of::<Entry>();
        let keys: usize = self
            .entries
            .iter()
            .map(|e| {
                e.logical_key.len()
                    + match &e.hash {
                        ContentHash::Other { kind, value } => kind.len() + value.len(),
                        _ => 0,
                    }
            })
            .sum();
        let meta = serde_json::to_string(&self.user_meta).map_or(0, |s| s.len() * 2);
        entries + keys + meta
    }

    /// The template's `package` object. `readme` is the README text the caller fetched from
    /// [`Self::readme_key`] (cut to [`README_CHARS`] characters here), or `None`.
    ///
    /// ```json
    /// {"message": "…", "user_meta": {}, "workflow": {"id": "…", "config": "…"} | null,
    ///  "files": 3, "bytes": 120, "top_level": [{"name": "data", "files": 2, "bytes": 100}],
    ///  "readme_key": "s3://…" | null, "readme": "…" | null, "error": "…" | null}
    /// ```
    pub fn package_json(&self, readme: Option<&str>) -> Value {
        let workflow = self.workflow.as_ref().map_or(
            Value::Null,
            |w| serde_json::json!({"id": w.id, "config": w.config}),
        );
        let top_level: Vec<Value> = self
            .top_level
            .iter()
            .map(|f| serde_json::json!({"name": f.name, "files": f.files, "bytes": f.bytes}))
            .collect();
        serde_json::json!({
            "message": self.message,
            "user_meta": self.user_meta,
            "workflow": workflow,
            "files": self.files,
            "bytes": self.bytes,
            "top_level": top_level,
            "readme_key": self.readme_key,
            "readme": readme.map(readme_excerpt),
            "error": self.error.as_ref().map(ToString::to_string),
        })
    }
}

/// The first [`README_CHARS`] characters of `text` (cut on a character boundary).
pub fn readme_excerpt(text: &str) -> &str {
    match text.char_indices().nth(README_CHARS) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

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
    header_read: bool,
    message: Option<String>,
    user_meta: Map<String, Value>,
    workflow: Option<Workflow>,
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
            header_read: false,
            message: None,
            user_meta: Map::new(),
            workflow: None,
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
        if !self.header_read && error.is_none() {
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
        let mut files = 0u64;
        let mut bytes = 0u64;
        let mut folders: HashMap<&str, (u64, u64)> = HashMap::new();
        for entry in &entries {
            files += 1;
            bytes = bytes.saturating_add(entry.size);
            let folder = entry
                .logical_key
                .split_once('/')
                .map_or(ROOT_FOLDER, |(first, _)| first);
            let totals = folders.entry(folder).or_default();
            totals.0 += 1;
            totals.1 = totals.1.saturating_add(entry.size);
        }
        let mut top_level: Vec<Folder> = folders
            .into_iter()
            .map(|(name, (files, bytes))| Folder {
                name: name.to_owned(),
                files,
                bytes,
            })
            .collect();
        top_level.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
        top_level.truncate(TOP_LEVEL_LIMIT);
        ManifestSummary {
            header_read: self.header_read,
            message: self.message,
            user_meta: self.user_meta,
            workflow: self.workflow,
            files,
            bytes,
            top_level,
            readme_key: self.readme_key,
            entries,
            error,
        }
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
        if self.header_read {
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
        self.message = message;
        self.user_meta = user_meta;
        self.workflow = workflow;
        self.header_read = true;
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
        self.entries.push(Entry {
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
    let mut reason = error.to_string();
    if let Some((end, _)) = reason.char_indices().nth(REASON_CHARS) {
        reason.truncate(end);
        reason.push('…');
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: &str = include_str!("../../../tests/data/quilt/first.jsonl");
    const WORKFLOW: &str = include_str!("../../../tests/data/quilt/workflow.jsonl");
    const UNICODE: &str = include_str!("../../../tests/data/quilt/unicode_nested.jsonl");

    fn read(text: &str) -> ManifestSummary {
        ManifestReader::read_str(ManifestLimits::default(), text)
    }

    const HEADER: &str = r#"{"version": "v0", "message": "m", "user_meta": {"a": 1}}"#;

    fn entry(key: &str, size: u64) -> String {
        serde_json::json!({
            "logical_key": key,
            "physical_keys": [format!("s3://b/{key}")],
            "size": size,
            "hash": {"type": "sha2-256-chunked", "value": "be5m2dvcqgcLtgo/H6TDCJQshHJhEFstBs2aKdZ8XF4="},
            "meta": {},
        })
        .to_string()
    }

    fn manifest(entries: &[(&str, u64)]) -> String {
        let mut lines = vec![HEADER.to_owned()];
        lines.extend(entries.iter().map(|(k, s)| entry(k, *s)));
        lines.join("\n")
    }

    #[test]
    fn a_real_quilt3_manifest_becomes_the_package_object() {
        let summary = read(FIRST);
        assert_eq!(summary.error(), None);
        assert_eq!(
            summary.package_json(None),
            serde_json::json!({
                "message": "First revision",
                "user_meta": {"stage": "dev", "owner": "data-team", "tags": ["raw"]},
                "workflow": null,
                "files": 5,
                "bytes": 52 + 22 + 19 + 26 + 10,
                "top_level": [
                    {"name": ROOT_FOLDER, "files": 2, "bytes": 62},
                    {"name": "data", "files": 2, "bytes": 41},
                    {"name": "docs", "files": 1, "bytes": 26},
                ],
                "readme_key": "s3://quilt-notify-fixtures/team/demo/README.md",
                "readme": null,
                "error": null,
            })
        );
    }

    #[test]
    fn the_workflow_is_id_and_config() {
        let summary = read(WORKFLOW);
        assert_eq!(
            summary.package_json(None)["workflow"],
            serde_json::json!({"id": "release", "config": "s3://quilt-notify-fixtures/.quilt/workflows/config.yml"})
        );
    }

    #[test]
    fn unicode_and_nested_keys_group_by_their_first_segment() {
        let summary = read(UNICODE);
        assert_eq!(summary.error(), None);
        let names: Vec<&str> = summary
            .top_level()
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        for expected in ["données", "日本語", "a", "with space", "data", ""] {
            assert!(names.contains(&expected), "{expected} in {names:?}");
        }
        assert!(summary
            .entries()
            .iter()
            .any(|e| &*e.logical_key == "données/été/résumé.csv"));
    }

    #[test]
    fn quilt3_hashes_are_kept_as_32_bytes() {
        let summary = read(FIRST);
        assert!(summary
            .entries()
            .iter()
            .all(|e| matches!(e.hash, ContentHash::Sha256Chunked(_))));
    }

    #[test]
    fn missing_and_null_header_fields_have_defaults() {
        let summary = read("{}\n");
        assert_eq!(summary.error(), None);
        let package = summary.package_json(None);
        assert_eq!(package["message"], Value::Null);
        assert_eq!(package["user_meta"], serde_json::json!({}));
        assert_eq!(package["workflow"], Value::Null);
        assert_eq!(package["files"], 0);
        assert_eq!(package["top_level"], serde_json::json!([]));
        let nulls =
            read(r#"{"version": null, "message": null, "user_meta": null, "workflow": null}"#);
        assert_eq!(nulls.error(), None);
        assert_eq!(nulls.package_json(None)["user_meta"], serde_json::json!({}));
    }

    #[test]
    fn top_level_is_largest_first_ties_by_name_at_most_ten() {
        let mut files: Vec<(String, u64)> = (0..12).map(|i| (format!("f{i:02}/x"), 5)).collect();
        files.push(("big/a".into(), 7));
        files.push(("big/b".into(), 7));
        files.push(("root.txt".into(), 6));
        let borrowed: Vec<(&str, u64)> = files.iter().map(|(k, s)| (k.as_str(), *s)).collect();
        let summary = read(&manifest(&borrowed));
        let top: Vec<(&str, u64, u64)> = summary
            .top_level()
            .iter()
            .map(|f| (f.name.as_str(), f.files, f.bytes))
            .collect();
        assert_eq!(top.len(), TOP_LEVEL_LIMIT);
        assert_eq!(top[0], ("big", 2, 14));
        assert_eq!(top[1], (ROOT_FOLDER, 1, 6));
        assert_eq!(top[2], ("f00", 1, 5));
        assert_eq!(top[9], ("f07", 1, 5));
        assert_eq!(summary.files(), 15);
        assert_eq!(summary.bytes(), 12 * 5 + 14 + 6);
    }

    #[test]
    fn the_readme_is_the_one_at_the_root() {
        let summary = read(&manifest(&[("docs/README.md", 1), ("x", 1)]));
        assert_eq!(summary.readme_key(), None);
        assert_eq!(read(FIRST).package_json(Some("# Hi"))["readme"], "# Hi");
    }

    #[test]
    fn readme_excerpts_stop_at_1000_characters_on_a_char_boundary() {
        let text = "é".repeat(1500);
        let excerpt = readme_excerpt(&text);
        assert_eq!(excerpt.chars().count(), README_CHARS);
        assert_eq!(excerpt.len(), 2 * README_CHARS);
        assert_eq!(readme_excerpt("short"), "short");
        let package = read(FIRST).package_json(Some(&text));
        assert_eq!(
            package["readme"].as_str().map(|s| s.chars().count()),
            Some(1000)
        );
    }

    #[test]
    fn entries_are_sorted_in_byte_order_whatever_the_line_order() {
        let summary = read(&manifest(&[("b", 1), ("a/z", 1), ("a.b", 1), ("B", 1)]));
        let keys: Vec<&str> = summary.entries().iter().map(|e| &*e.logical_key).collect();
        assert_eq!(keys, ["B", "a.b", "a/z", "b"]);
    }

    #[test]
    fn a_duplicate_key_keeps_the_first_and_is_an_error() {
        let summary = read(&manifest(&[("a", 1), ("a", 2), ("b", 3)]));
        assert_eq!(
            summary.error(),
            Some(&ManifestError::DuplicateKey("a".into()))
        );
        assert_eq!(summary.files(), 2);
        assert_eq!(summary.bytes(), 4);
    }

    #[test]
    fn an_empty_manifest_is_an_error() {
        assert_eq!(read("").error(), Some(&ManifestError::Empty));
        assert_eq!(read("\n \r\n").error(), Some(&ManifestError::Empty));
    }

    #[test]
    fn a_line_over_the_limit_stops_the_reader_and_keeps_what_was_read() {
        let limits = ManifestLimits {
            max_line_bytes: 300,
            max_entries: 10,
        };
        let mut reader = ManifestReader::new(limits);
        reader.feed_line(HEADER.as_bytes()).expect("header");
        reader.feed_line(entry("a", 3).as_bytes()).expect("entry");
        let long = entry(&"x".repeat(300), 1);
        let error = reader.feed_line(long.as_bytes()).expect_err("too long");
        assert_eq!(
            error,
            ManifestError::LineTooLong {
                line: 3,
                bytes: long.len() as u64,
                limit: 300
            }
        );
        // Stopped: later lines are refused with the same error.
        assert_eq!(
            reader.feed_line(entry("b", 1).as_bytes()),
            Err(error.clone())
        );
        let summary = reader.finish();
        assert_eq!(summary.files(), 1);
        assert_eq!(summary.message(), Some("m"));
        let package = summary.package_json(None);
        assert_eq!(
            package["error"],
            format!(
                "line 3 is {} bytes long, over the limit of 300 bytes",
                long.len()
            )
        );
    }

    #[test]
    fn a_splitter_can_report_its_own_long_line_or_a_broken_stream() {
        let mut reader = ManifestReader::new(ManifestLimits::default());
        reader.feed_line(HEADER.as_bytes()).expect("header");
        let line = reader.next_line();
        reader.fail(ManifestError::LineTooLong {
            line,
            bytes: 2 << 20,
            limit: 1 << 20,
        });
        reader.fail(ManifestError::Interrupted("later".into()));
        let summary = reader.finish();
        assert!(matches!(
            summary.error(),
            Some(ManifestError::LineTooLong { line: 2, .. })
        ));
        assert_eq!(summary.user_meta()["a"], 1);
    }

    #[test]
    fn more_entries_than_the_limit_is_an_error_after_the_limit() {
        let limits = ManifestLimits {
            max_line_bytes: 1024,
            max_entries: 2,
        };
        let summary = ManifestReader::read_str(limits, &manifest(&[("a", 1), ("b", 1), ("c", 1)]));
        assert_eq!(
            summary.error(),
            Some(&ManifestError::TooManyEntries { limit: 2 })
        );
        assert_eq!(summary.files(), 2);
        // Exactly the limit, then directory metadata (not a file): fine.
        let dir = r#"{"logical_key": "a/", "meta": {}}"#;
        let at_limit = ManifestReader::read_str(
            limits,
            &format!("{}\n{dir}", manifest(&[("a/x", 1), ("b", 1)])),
        );
        assert_eq!(at_limit.error(), None);
        assert_eq!(at_limit.files(), 2);
    }

    #[test]
    fn invalid_json_and_wrong_shapes_are_typed_errors_with_the_line() {
        let cases = [
            ("not json", "line 1 is not valid JSON"),
            ("[1]", "line 1 is not a manifest header: found an array"),
            (
                r#"{"version": "v1"}"#,
                "manifest version \"v1\" is not supported",
            ),
            (r#"{"version": 0}"#, "\"version\" is a number"),
            (
                r#"{"user_meta": []}"#,
                "\"user_meta\" is an array, not an object",
            ),
            (
                r#"{"workflow": "w"}"#,
                "\"workflow\" is a string, not an object",
            ),
            (r#"{"message": 5}"#, "\"message\" is a number, not a string"),
            (r#"{"workflow": {"id": 1}}"#, "\"workflow.id\" is a number"),
        ];
        for (header, expected) in cases {
            let error = read(header).error().map(ToString::to_string);
            assert!(
                error.as_deref().is_some_and(|e| e.contains(expected)),
                "{header}: {error:?}"
            );
        }
        let first_line_is_an_entry = read(&entry("a", 1));
        assert!(first_line_is_an_entry
            .error()
            .is_some_and(|e| e.to_string().contains("the header line is missing")));
        let entries = [
            (
                r#"{"logical_key": "a", "physical_keys": ["s3://b/a"]}"#,
                "missing field `size`",
            ),
            (
                r#"{"logical_key": "a", "physical_keys": ["s3://b/a"], "size": 1}"#,
                "missing field `hash`",
            ),
            (
                r#"{"logical_key": "a", "size": "1", "hash": {"type": "t", "value": "v"}}"#,
                "invalid type: string \"1\"",
            ),
            (r#"{"logical_key": 1}"#, "invalid type"),
            (
                r#"{"logical_key": "a", "size": 1, "hash": {"type": "t", "value": "v"}"#,
                "not valid JSON",
            ),
        ];
        for (line, expected) in entries {
            let error = read(&format!("{HEADER}\n{line}"))
                .error()
                .map(ToString::to_string);
            assert!(
                error
                    .as_deref()
                    .is_some_and(|e| e.starts_with("line 2 ") && e.contains(expected)),
                "{line}: {error:?}"
            );
        }
    }

    #[test]
    fn sizes_that_are_not_u64_are_errors_not_wrapped_or_rounded() {
        for size in ["-1", "1.5", "18446744073709551616", "1e400", "1e3"] {
            let line = format!(
                r#"{{"logical_key": "a", "size": {size}, "hash": {{"type": "t", "value": "v"}}}}"#
            );
            let summary = read(&format!("{HEADER}\n{line}"));
            assert!(
                matches!(
                    summary.error(),
                    Some(
                        ManifestError::Shape { line: 2, .. }
                            | ManifestError::InvalidJson { line: 2, .. }
                    )
                ),
                "{size}: {:?}",
                summary.error()
            );
            assert_eq!(summary.files(), 0);
        }
        // The largest u64 is read, and totals saturate instead of overflowing.
        let max = u64::MAX;
        let summary = read(&manifest(&[("a", max), ("b", max)]));
        assert_eq!(summary.error(), None);
        assert_eq!(summary.bytes(), u64::MAX);
    }

    #[test]
    fn deep_json_is_an_error_not_a_stack_overflow() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let header = format!(r#"{{"user_meta": {{"x": {deep}}}}}"#);
        assert!(matches!(
            read(&header).error(),
            Some(ManifestError::InvalidJson { line: 1, .. })
        ));
        let line = format!(
            r#"{{"logical_key": "a", "size": 1, "hash": {{"type": "t", "value": "v"}}, "meta": {deep}}}"#
        );
        let summary = read(&format!("{HEADER}\n{line}"));
        assert!(summary
            .error()
            .is_some_and(|e| e.to_string().contains("recursion limit")));
    }

    #[test]
    fn lone_surrogates_are_invalid_json() {
        let summary = read(r#"{"message": "\ud800"}"#);
        assert!(matches!(
            summary.error(),
            Some(ManifestError::InvalidJson { line: 1, .. })
        ));
        let summary = read(&format!(
            "{HEADER}\n{}",
            r#"{"logical_key": "\udfff", "size": 1, "hash": {"type": "t", "value": "v"}}"#
        ));
        assert!(summary.error().is_some());
        // Invalid UTF-8 bytes too.
        let mut reader = ManifestReader::new(ManifestLimits::default());
        assert!(reader.feed_line(b"{\"message\": \"\xff\"}").is_err());
    }

    #[test]
    fn markup_and_line_breaks_in_keys_and_metadata_are_kept_as_data() {
        let header =
            r#"{"message": "<script>x</script>\r\nBcc: a@b", "user_meta": {"<b>": "\r\n"}}"#;
        let line = entry("<img src=x>/a\r\nb", 1);
        let summary = read(&format!("{header}\n{line}"));
        assert_eq!(summary.error(), None);
        assert_eq!(summary.message(), Some("<script>x</script>\r\nBcc: a@b"));
        assert_eq!(summary.user_meta()["<b>"], "\r\n");
        assert_eq!(summary.top_level()[0].name, "<img src=x>");
        // Error messages escape what they quote.
        let duplicate = read(&format!("{header}\n{line}\n{line}"));
        let text = duplicate
            .error()
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(!text.contains('\n') && !text.contains('\r'), "{text}");
    }

    #[test]
    fn a_trailing_carriage_return_and_unknown_fields_are_accepted() {
        let line = r#"{"logical_key": "a", "physical_keys": ["s3://b/a"], "size": 1, "hash": {"type": "t", "value": "v"}, "new": [1]}"#;
        let summary = read(&format!("{HEADER}\r\n{line}\r\n"));
        assert_eq!(summary.error(), None);
        assert_eq!(summary.files(), 1);
    }

    #[test]
    fn directory_metadata_lines_are_not_files() {
        let dir = r#"{"logical_key": "data/", "meta": {"about": "tables"}}"#;
        let summary = read(&format!("{HEADER}\n{dir}\n{}", entry("data/a", 2)));
        assert_eq!(summary.error(), None);
        assert_eq!(summary.files(), 1);
        assert_eq!(summary.bytes(), 2);
    }

    #[test]
    fn entry_metadata_is_fingerprinted_whatever_its_key_order() {
        let with = |meta: &str| {
            let line = format!(
                r#"{{"logical_key": "a", "physical_keys": ["s3://b/a"], "size": 1, "hash": {{"type": "t", "value": "v"}}, "meta": {meta}}}"#
            );
            read(&format!("{HEADER}\n{line}")).entries()[0].meta_fingerprint
        };
        assert_eq!(with(r#"{"x": 1, "y": [2]}"#), with(r#"{"y": [2], "x": 1}"#));
        assert_ne!(with(r#"{"x": 1}"#), with(r#"{"x": 2}"#));
        // As in quilt3 (`meta or {}`), null and missing are `{}`.
        assert_eq!(with("{}"), with("null"));
        assert_ne!(with("{}"), with("[]"));
    }

    #[test]
    fn long_parser_reasons_are_cut() {
        let key = "k".repeat(5000);
        let line = format!(
            r#"{{"logical_key": "a", "size": "{key}", "hash": {{"type": "t", "value": "v"}}}}"#
        );
        let text = read(&format!("{HEADER}\n{line}"))
            .error()
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(text.chars().count() < 300, "{}", text.len());
    }
}
