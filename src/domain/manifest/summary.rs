//! What one manifest says ([`ManifestSummary`]): its header, its totals and largest top-level
//! folders, and the index of its files; [`ManifestSummary::package_json`] is the template's
//! `package` object. The reader ([`super::ManifestReader`]) fills it; the diff reads the index.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::error::ManifestError;
use super::hash::ContentHash;

/// The root's name in `package.top_level`: files without a `/` in their logical key.
pub const ROOT_FOLDER: &str = "";

/// At most this many folders in `package.top_level`.
pub const TOP_LEVEL_LIMIT: usize = 10;

/// `package.readme` holds at most this many characters of the README.
pub const README_CHARS: usize = 1_000;

/// The logical key whose physical key becomes `readme_key`.
pub const README_KEY: &str = "README.md";

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
    /// The first physical key, kept only for table files (`.parquet`, `.csv`, …): their
    /// footers or headers are read to say what changed in the data (issue 22). Other files'
    /// keys would only cost memory.
    pub physical_key: Option<Box<str>>,
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

/// The header line's fields that the summary keeps.
#[derive(Debug, Default)]
pub(super) struct Header {
    pub(super) message: Option<String>,
    pub(super) user_meta: Map<String, Value>,
    pub(super) workflow: Option<Workflow>,
}

/// What one manifest says, read by [`ManifestReader`](super::ManifestReader): header, totals,
/// the largest top-level folders, and the index of every file read (sorted by logical key, in
/// byte order).
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
    /// Sums the totals and the largest top-level folders of an index sorted by logical key, one
    /// entry per key. `header` is `None` when no header line was read.
    pub(super) fn new(
        header: Option<Header>,
        readme_key: Option<String>,
        entries: Vec<Entry>,
        error: Option<ManifestError>,
    ) -> Self {
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
        let header_read = header.is_some();
        let Header {
            message,
            user_meta,
            workflow,
        } = header.unwrap_or_default();
        Self {
            header_read,
            message,
            user_meta,
            workflow,
            files,
            bytes,
            top_level,
            readme_key,
            entries,
            error,
        }
    }

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
                    + e.physical_key.as_ref().map_or(0, |k| k.len())
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
