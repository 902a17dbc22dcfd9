//! What changed between two revisions of a package: files added, removed and modified, the size
//! delta, the `user_meta` keys that changed, and catalog links. Built from two
//! [`ManifestSummary`] values, whose sorted indexes are merged in one pass.
//!
//! A file is modified when quilt3's `Package.diff` says so: its size, hash or metadata differ
//! (a new physical key alone is not a change).

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

pub use super::catalog::CatalogLinks;
use super::manifest::{Entry, ManifestSummary};

/// At most this many logical keys in each `paths` list.
pub const PATHS_LIMIT: usize = 20;

/// At most this many entries in `user_meta.values`; `values_more` counts the rest.
pub const META_VALUES_LIMIT: usize = 100;

/// One revision: its top hash and its manifest's summary.
#[derive(Debug, Clone, Copy)]
pub struct Revision<'a> {
    /// The top hash (the manifest's name).
    pub top_hash: &'a str,
    /// The manifest, read.
    pub summary: &'a ManifestSummary,
}

/// Files in one kind of change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct FileChanges {
    /// How many files.
    pub count: u64,
    /// Bytes added or removed; for modified files the net change (may be negative).
    pub bytes: i64,
    /// The first [`PATHS_LIMIT`] logical keys, in byte order.
    pub paths: Vec<String>,
}

impl FileChanges {
    fn push(&mut self, key: &str, bytes: i128) {
        self.count += 1;
        self.bytes = clamp(i128::from(self.bytes) + bytes);
        if self.paths.len() < PATHS_LIMIT {
            self.paths.push(key.to_owned());
        }
    }

    fn to_json(&self) -> Value {
        json!({"count": self.count, "bytes": self.bytes, "paths": self.paths})
    }
}

/// Top-level `user_meta` keys that changed, each list sorted, and the values of the leaves
/// that changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct MetaChanges {
    /// Keys only the current revision has.
    pub added: Vec<String>,
    /// Keys only the previous revision has.
    pub removed: Vec<String>,
    /// Keys both have, with different values.
    pub changed: Vec<String>,
    /// The first [`META_VALUES_LIMIT`] changed leaves, in key order.
    #[serde(default)]
    pub values: Vec<MetaValue>,
    /// How many more changed leaves there are.
    #[serde(default)]
    pub values_more: u64,
}

/// Objects are compared down to this many levels; deeper, a changed object is one value.
pub const META_DEPTH: usize = 3;

/// A value is shown in at most this many characters.
pub const META_VALUE_CHARS: usize = 120;

/// One changed `user_meta` leaf: `{"key": "qc.passed", "before": "false", "after": "true"}`.
///
/// Values are shown, never matched as JSON: a string as itself, anything else as compact JSON
/// text, cut at [`META_VALUE_CHARS`] characters with control characters replaced (so that
/// `stage: review → prod` reads well in a subject or a text mail).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct MetaValue {
    /// The dotted path of the key (`qc.by.name`); keys are not escaped, so a key with a dot
    /// in it reads like a nested one.
    pub key: String,
    /// The previous value; None when the key was added.
    pub before: Option<String>,
    /// The current value; None when the key was removed.
    pub after: Option<String>,
}

/// How a metadata value is shown (see [`MetaValue`]).
fn shown_value(value: &Value) -> String {
    let text = match value {
        Value::String(s) => super::table::clean_name(s),
        other => other.to_string(),
    };
    super::cut(&text, META_VALUE_CHARS)
}

/// Collects changed leaves under `prefix`, objects compared down to [`META_DEPTH`] levels.
struct MetaValues {
    values: Vec<MetaValue>,
    more: u64,
}

impl MetaValues {
    fn push(
        &mut self,
        key: impl FnOnce() -> String,
        before: Option<&Value>,
        after: Option<&Value>,
    ) {
        if self.values.len() < META_VALUES_LIMIT {
            self.values.push(MetaValue {
                key: key(),
                before: before.map(shown_value),
                after: after.map(shown_value),
            });
        } else {
            self.more += 1;
        }
    }

    /// Both maps' keys in order (serde_json's maps are sorted), one level down.
    fn compare(
        &mut self,
        prefix: &str,
        previous: &Map<String, Value>,
        current: &Map<String, Value>,
        depth: usize,
    ) {
        let path = |key: &str| {
            if prefix.is_empty() {
                key.to_owned()
            } else {
                format!("{prefix}.{key}")
            }
        };
        let mut old = previous.iter().peekable();
        let mut new = current.iter().peekable();
        loop {
            let order = match (old.peek(), new.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((a, _)), Some((b, _))) => a.cmp(b),
            };
            match order {
                Ordering::Less => {
                    if let Some((key, gone)) = old.next() {
                        self.push(|| path(key), Some(gone), None);
                    }
                }
                Ordering::Greater => {
                    if let Some((key, came)) = new.next() {
                        self.push(|| path(key), None, Some(came));
                    }
                }
                Ordering::Equal => {
                    let (Some((key, a)), Some((_, b))) = (old.next(), new.next()) else {
                        break;
                    };
                    if a == b {
                        continue;
                    }
                    match (a, b) {
                        (Value::Object(a), Value::Object(b)) if depth < META_DEPTH => {
                            self.compare(&path(key), a, b, depth + 1);
                        }
                        _ => self.push(|| path(key), Some(a), Some(b)),
                    }
                }
            }
        }
    }
}

impl MetaChanges {
    fn between(previous: &Map<String, Value>, current: &Map<String, Value>) -> Self {
        let mut values = MetaValues {
            values: Vec::new(),
            more: 0,
        };
        values.compare("", previous, current, 1);
        let mut changes = Self {
            values: values.values,
            values_more: values.more,
            ..Self::default()
        };
        // serde_json's maps iterate in key order, so every list comes out sorted.
        for (key, value) in current {
            match previous.get(key) {
                None => changes.added.push(key.clone()),
                Some(old) if old != value => changes.changed.push(key.clone()),
                Some(_) => {}
            }
        }
        changes.removed = previous
            .keys()
            .filter(|key| !current.contains_key(*key))
            .cloned()
            .collect();
        changes
    }
}

/// The difference between a revision and its predecessor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    /// The predecessor's top hash.
    pub previous_top_hash: String,
    /// Both top hashes are equal: a re-push of the same content.
    pub unchanged: bool,
    /// The file and metadata differences; `Err` with the reason when either manifest was not
    /// read whole, because a diff against part of a manifest would report false removals.
    pub diff: Result<Diff, String>,
    /// The catalog's page comparing both revisions; None without a catalog host.
    pub compare_url: Option<String>,
    /// The table files added or modified, described (the template's `changes.tables`); None
    /// when they were not read (`s3.tables = false`, no route uses them, or no whole diff).
    pub tables: Option<TableChanges>,
}

/// The template's `changes.tables` and `changes.tables_more`.
///
/// The entries are kept as the JSON templates and patterns see
/// ([`TableChange::to_json`](super::table::TableChange::to_json)): they are read once per event,
/// and only ever shown or matched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableChanges {
    /// One entry per table file, in path order.
    pub entries: Vec<Value>,
    /// Table files added or modified but not read (over `s3.max_tables`).
    pub more: u64,
}

impl TableChanges {
    /// The rows added in all: `rows.after - rows.before` summed over the entries whose both
    /// counts are known, an added table counting all its rows; None when no entry has one.
    pub fn rows_delta(&self) -> Option<i64> {
        let mut total: Option<i64> = None;
        for entry in &self.entries {
            let rows = &entry["rows"];
            let after = rows["after"].as_i64();
            let before = match entry["status"].as_str() {
                Some("added") => Some(0),
                _ => rows["before"].as_i64(),
            };
            if let (Some(a), Some(b)) = (after, before) {
                total = Some(total.unwrap_or(0).saturating_add(a.saturating_sub(b)));
            }
        }
        total
    }
}

/// Files and metadata that changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// Files only the current revision has.
    pub added: FileChanges,
    /// Files only the previous revision has.
    pub removed: FileChanges,
    /// Files both have, with a different size, hash or metadata.
    pub modified: FileChanges,
    /// Current total size minus the previous one.
    pub bytes_delta: i64,
    /// Top-level `user_meta` keys that changed.
    pub user_meta: MetaChanges,
}

impl Changes {
    /// Compares `current` with its predecessor `previous`; `links` give the compare page.
    pub fn between(
        previous: Revision<'_>,
        current: Revision<'_>,
        links: Option<&CatalogLinks>,
    ) -> Self {
        let unreadable = |which: &str, summary: &ManifestSummary| {
            summary
                .error()
                .map(|e| format!("the {which} revision's manifest was not read whole: {e}"))
        };
        let diff = match unreadable("previous", previous.summary)
            .or_else(|| unreadable("current", current.summary))
        {
            Some(reason) => Err(reason),
            None => Ok(Diff::between(previous.summary, current.summary)),
        };
        Self {
            previous_top_hash: previous.top_hash.to_owned(),
            unchanged: previous.top_hash == current.top_hash,
            diff,
            compare_url: links.map(|l| l.compare(previous.top_hash, current.top_hash)),
            tables: None,
        }
    }

    /// The template's `changes` object (`compare_url` is null without a catalog host).
    ///
    /// ```json
    /// {"previous_top_hash": "…", "unchanged": false, "error": null,
    ///  "added": {"count": 1, "bytes": 9, "paths": ["a.csv"]}, "removed": {…}, "modified": {…},
    ///  "bytes_delta": 9, "user_meta": {"added": [], "removed": [], "changed": ["stage"],
    ///  "values": [{"key": "stage", "before": "review", "after": "prod"}], "values_more": 0},
    ///  "compare_url": "https://…/compare/<previous>/<current>/" | null}
    /// ```
    /// `tables` (see [`TableChange::to_json`](super::table::TableChange::to_json)) and
    /// `tables_more` are null when the tables were not read.
    /// When a manifest was not read whole, `error` says why and the diff fields are null.
    pub fn to_json(&self) -> Value {
        let (diff, error) = match &self.diff {
            Ok(d) => (
                [
                    d.added.to_json(),
                    d.removed.to_json(),
                    d.modified.to_json(),
                    Value::from(d.bytes_delta),
                    json!({
                        "added": d.user_meta.added,
                        "removed": d.user_meta.removed,
                        "changed": d.user_meta.changed,
                        "values": d.user_meta.values,
                        "values_more": d.user_meta.values_more,
                    }),
                ],
                Value::Null,
            ),
            Err(reason) => (
                [
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    Value::Null,
                ],
                Value::String(reason.clone()),
            ),
        };
        let [added, removed, modified, bytes_delta, user_meta] = diff;
        let (tables, tables_more) = match (&self.tables, &self.diff) {
            (Some(t), Ok(_)) => (Value::from(t.entries.clone()), Value::from(t.more)),
            _ => (Value::Null, Value::Null),
        };
        json!({
            "previous_top_hash": self.previous_top_hash,
            "unchanged": self.unchanged,
            "error": error,
            "added": added,
            "removed": removed,
            "modified": modified,
            "bytes_delta": bytes_delta,
            "user_meta": user_meta,
            "tables": tables,
            "tables_more": tables_more,
            "compare_url": self.compare_url,
        })
    }

    /// Reads a `changes` object back from [`Self::to_json`]'s form (the built-in sample).
    ///
    /// # Errors
    /// A field missing or of the wrong type, or a diff field missing while `error` is null.
    pub fn from_json(value: &Value) -> Result<Self, serde_json::Error> {
        let form = ChangesForm::deserialize(value)?;
        let diff = match form.error {
            Some(reason) => Err(reason),
            None => Ok(Diff {
                added: required(form.added, "added")?,
                removed: required(form.removed, "removed")?,
                modified: required(form.modified, "modified")?,
                bytes_delta: required(form.bytes_delta, "bytes_delta")?,
                user_meta: required(form.user_meta, "user_meta")?,
            }),
        };
        let tables = form.tables.map(|entries| TableChanges {
            entries,
            more: form.tables_more.unwrap_or(0),
        });
        Ok(Self {
            previous_top_hash: form.previous_top_hash,
            unchanged: form.unchanged,
            diff,
            compare_url: form.compare_url,
            tables,
        })
    }
}

/// The `changes` object as [`Changes::to_json`] writes it: the diff fields null when `error`
/// is set.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangesForm {
    previous_top_hash: String,
    unchanged: bool,
    error: Option<String>,
    added: Option<FileChanges>,
    removed: Option<FileChanges>,
    modified: Option<FileChanges>,
    bytes_delta: Option<i64>,
    user_meta: Option<MetaChanges>,
    #[serde(default)]
    tables: Option<Vec<Value>>,
    #[serde(default)]
    tables_more: Option<u64>,
    compare_url: Option<String>,
}

fn required<T>(field: Option<T>, name: &str) -> Result<T, serde_json::Error> {
    field.ok_or_else(|| {
        serde::de::Error::custom(format!(
            "changes.{name} is null but changes.error is not set"
        ))
    })
}

impl Diff {
    fn between(previous: &ManifestSummary, current: &ManifestSummary) -> Self {
        let mut diff = Self {
            bytes_delta: clamp(i128::from(current.bytes()) - i128::from(previous.bytes())),
            user_meta: MetaChanges::between(previous.user_meta(), current.user_meta()),
            ..Self::default()
        };
        // Both indexes are sorted by key: one merge pass, and paths come out in byte order.
        let mut old = previous.entries().iter().peekable();
        let mut new = current.entries().iter().peekable();
        loop {
            let order = match (old.peek(), new.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(a), Some(b)) => a.logical_key.cmp(&b.logical_key),
            };
            match order {
                Ordering::Less => {
                    if let Some(gone) = old.next() {
                        diff.removed.push(&gone.logical_key, i128::from(gone.size));
                    }
                }
                Ordering::Greater => {
                    if let Some(came) = new.next() {
                        diff.added.push(&came.logical_key, i128::from(came.size));
                    }
                }
                Ordering::Equal => {
                    if let (Some(a), Some(b)) = (old.next(), new.next()) {
                        diff.modify(a, b);
                    }
                }
            }
        }
        diff
    }

    fn modify(&mut self, before: &Entry, after: &Entry) {
        if before.differs_from(after) {
            let net = i128::from(after.size) - i128::from(before.size);
            self.modified.push(&after.logical_key, net);
        }
    }
}

/// The template's `changes`: null for a first revision (no predecessor), else
/// [`Changes::to_json`].
pub fn changes_json(
    previous: Option<Revision<'_>>,
    current: Revision<'_>,
    links: Option<&CatalogLinks>,
) -> Value {
    previous.map_or(Value::Null, |previous| {
        Changes::between(previous, current, links).to_json()
    })
}

fn clamp(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::fixtures::{index, manifest as fixture, top_hash};
    use crate::domain::manifest::{ManifestError, ManifestLimits, ManifestReader};

    fn summary(name: &str) -> ManifestSummary {
        ManifestReader::read_str(ManifestLimits::default(), fixture(name))
    }

    /// `changes` between two committed revisions.
    fn changes(from: &str, to: &str) -> Value {
        let (a, b) = (summary(from), summary(to));
        let (ha, hb) = (top_hash(from), top_hash(to));
        changes_json(
            Some(Revision {
                top_hash: &ha,
                summary: &a,
            }),
            Revision {
                top_hash: &hb,
                summary: &b,
            },
            None,
        )
    }

    #[test]
    fn every_consecutive_pair_matches_quilt3s_own_diff() {
        let index = index();
        let diffs = index["diffs"].as_array().expect("diffs");
        assert_eq!(diffs.len(), 8);
        for diff in diffs {
            let (from, to) = (
                diff["from"].as_str().unwrap_or_default(),
                diff["to"].as_str().unwrap_or_default(),
            );
            let changes = changes(from, to);
            for (ours, theirs) in [
                ("added", "added"),
                ("removed", "deleted"),
                ("modified", "modified"),
            ] {
                assert_eq!(
                    changes[ours]["paths"], diff[theirs],
                    "{from} → {to}: {ours}"
                );
                assert_eq!(
                    changes[ours]["count"].as_u64(),
                    diff[theirs].as_array().map(|a| a.len() as u64),
                    "{from} → {to}: {ours}"
                );
            }
        }
    }

    #[test]
    fn a_first_revision_has_no_changes() {
        let first = summary("first");
        let hash = top_hash("first");
        let current = Revision {
            top_hash: &hash,
            summary: &first,
        };
        assert_eq!(changes_json(None, current, None), Value::Null);
    }

    #[test]
    fn added_files_count_their_bytes() {
        let c = changes("first", "add_files");
        assert_eq!(
            c["added"],
            json!({"count": 2, "bytes": 18 + 54, "paths": ["data/raw/2024/02.csv", "images/logo.svg"]})
        );
        assert_eq!(c["bytes_delta"], 72);
        assert_eq!(c["removed"], json!({"count": 0, "bytes": 0, "paths": []}));
        assert_eq!(c["unchanged"], false);
        assert_eq!(c["previous_top_hash"], top_hash("first"));
        assert_eq!(c["error"], Value::Null);
    }

    #[test]
    fn removed_files_count_their_bytes() {
        let c = changes("add_files", "remove_files");
        assert_eq!(
            c["removed"],
            json!({"count": 2, "bytes": 26 + 54, "paths": ["docs/guide.md", "images/logo.svg"]})
        );
        assert_eq!(c["bytes_delta"], -80);
    }

    #[test]
    fn a_modified_file_counts_its_net_change() {
        let c = changes("remove_files", "modify_file");
        assert_eq!(
            c["modified"],
            json!({"count": 1, "bytes": 29 - 19, "paths": ["data/table.csv"]})
        );
        assert_eq!(c["bytes_delta"], 10);
    }

    #[test]
    fn a_metadata_only_change_lists_the_user_meta_keys() {
        let c = changes("modify_file", "metadata_only");
        assert_eq!(c["added"]["count"], 0);
        assert_eq!(c["modified"]["count"], 0);
        assert_eq!(c["bytes_delta"], 0);
        assert_eq!(c["unchanged"], false);
        assert_eq!(
            c["user_meta"],
            json!({"added": ["reviewed"], "removed": [], "changed": ["stage"], "values": [
                {"key": "reviewed", "before": null, "after": "true"},
                {"key": "stage", "before": "dev", "after": "prod"},
            ], "values_more": 0})
        );
        let c = changes("same_hash", "unicode_nested");
        assert_eq!(
            c["user_meta"],
            json!({"added": [], "removed": ["owner"], "changed": ["tags"], "values": [
                {"key": "owner", "before": "data-team", "after": null},
                {"key": "tags", "before": "[\"raw\"]", "after": "[\"raw\",\"intl\"]"},
            ], "values_more": 0})
        );
    }

    #[test]
    fn a_same_hash_re_push_is_unchanged() {
        assert_eq!(top_hash("metadata_only"), top_hash("same_hash"));
        let c = changes("metadata_only", "same_hash");
        assert_eq!(c["unchanged"], true);
        assert_eq!(c["added"]["count"], 0);
        assert_eq!(c["removed"]["count"], 0);
        assert_eq!(c["modified"]["count"], 0);
    }

    #[test]
    fn entry_metadata_alone_makes_a_file_modified_as_in_quilt3() {
        let c = changes("unicode_nested", "entry_meta");
        assert_eq!(
            c["modified"],
            json!({"count": 1, "bytes": 0, "paths": ["data/table.csv"]})
        );
    }

    #[test]
    fn unicode_and_nested_keys_are_in_byte_order() {
        let c = changes("same_hash", "unicode_nested");
        assert_eq!(
            c["added"]["paths"],
            json!([
                "a/b/c/d/e/deep.txt",
                "données/été/résumé.csv",
                "with space/file name.txt",
                "日本語/ファイル.txt"
            ])
        );
        assert_eq!(c["removed"]["paths"], json!(["notes.txt"]));
    }

    fn synthetic(files: &[(String, u64)], meta: &str) -> ManifestSummary {
        // One line, as a manifest's header is, whatever the test wrote.
        let meta: Value = serde_json::from_str(meta).expect("test metadata is JSON");
        let mut lines = vec![format!(r#"{{"user_meta": {meta}}}"#)];
        for (key, size) in files {
            lines.push(
                json!({
                    "logical_key": key,
                    "physical_keys": [format!("s3://b/{key}")],
                    "size": size,
                    "hash": {"type": "SHA256", "value": format!("{size:064x}")},
                })
                .to_string(),
            );
        }
        ManifestReader::read_str(ManifestLimits::default(), &lines.join("\n"))
    }

    fn diff(a: &ManifestSummary, b: &ManifestSummary) -> Value {
        let current = Revision {
            top_hash: "new",
            summary: b,
        };
        let previous = Revision {
            top_hash: "old",
            summary: a,
        };
        changes_json(Some(previous), current, None)
    }

    #[test]
    fn paths_are_the_first_20_in_byte_order_and_counts_are_all() {
        let old = synthetic(&[], "{}");
        // Pushed in reverse, with upper case and multi-byte keys: byte order, not push order.
        let mut files: Vec<(String, u64)> =
            (0..30).rev().map(|i| (format!("f{i:02}"), 1)).collect();
        files.push(("Zed".into(), 1));
        files.push(("é".into(), 1));
        let new = synthetic(&files, "{}");
        let c = diff(&old, &new);
        assert_eq!(c["added"]["count"], 32);
        assert_eq!(c["added"]["bytes"], 32);
        let paths: Vec<&str> = c["added"]["paths"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert_eq!(paths.len(), PATHS_LIMIT);
        assert_eq!(paths[0], "Zed");
        assert_eq!(paths[1], "f00");
        assert_eq!(paths[19], "f18");
    }

    #[test]
    fn a_modified_file_that_shrinks_has_negative_bytes() {
        let old = synthetic(&[("a".into(), 100), ("b".into(), 5)], "{}");
        let new = synthetic(&[("a".into(), 40), ("b".into(), 7)], "{}");
        let c = diff(&old, &new);
        assert_eq!(
            c["modified"],
            json!({"count": 2, "bytes": -58, "paths": ["a", "b"]})
        );
        assert_eq!(c["bytes_delta"], -58);
    }

    #[test]
    fn a_new_physical_key_alone_is_not_a_change() {
        let text = fixture("first");
        let moved = text.replace("s3://quilt-notify-fixtures/", "s3://elsewhere/");
        let a = summary("first");
        let b = ManifestReader::read_str(ManifestLimits::default(), &moved);
        let c = diff(&a, &b);
        assert_eq!(c["modified"]["count"], 0);
    }

    #[test]
    fn an_incomplete_manifest_gives_an_error_instead_of_false_removals() {
        let old = summary("first");
        let mut reader = ManifestReader::new(ManifestLimits::default());
        let mut lines = fixture("first").lines();
        for line in lines.by_ref().take(2) {
            reader.feed_line(line.as_bytes()).expect("line");
        }
        reader.fail(ManifestError::Interrupted("connection reset".into()));
        let new = reader.finish();
        let c = diff(&old, &new);
        assert_eq!(c["removed"], Value::Null);
        assert_eq!(c["user_meta"], Value::Null);
        assert_eq!(
            c["error"],
            "the current revision's manifest was not read whole: \
             the manifest could not be read: connection reset"
        );
        assert_eq!(c["unchanged"], false);
        assert_eq!(c["previous_top_hash"], "old");
    }

    #[test]
    fn huge_sizes_saturate_instead_of_overflowing() {
        let old = synthetic(&[("a".into(), u64::MAX), ("b".into(), u64::MAX)], "{}");
        let new = synthetic(&[("c".into(), u64::MAX)], "{}");
        let c = diff(&old, &new);
        assert_eq!(c["removed"]["bytes"], i64::MAX);
        assert_eq!(c["added"]["bytes"], i64::MAX);
        assert_eq!(c["bytes_delta"], 0);
        let c = diff(&new, &synthetic(&[("c".into(), 0)], "{}"));
        assert_eq!(c["modified"]["bytes"], i64::MIN);
    }

    #[test]
    fn user_meta_changes_are_sorted_top_level_keys() {
        let old = synthetic(&[], r#"{"z": 1, "b": {"x": 1}, "gone": 0, "same": [1]}"#);
        let new = synthetic(
            &[],
            r#"{"a": 1, "b": {"x": 2}, "z": 1, "same": [1], "c": null}"#,
        );
        assert_eq!(
            diff(&old, &new)["user_meta"],
            json!({"added": ["a", "c"], "removed": ["gone"], "changed": ["b"], "values": [
                {"key": "a", "before": null, "after": "1"},
                {"key": "b.x", "before": "1", "after": "2"},
                {"key": "c", "before": null, "after": "null"},
                {"key": "gone", "before": "0", "after": null},
            ], "values_more": 0})
        );
    }

    #[test]
    fn user_meta_values_are_the_changed_leaves_by_dotted_path() {
        let old = synthetic(
            &[],
            r#"{"stage": "review", "owner": "ada", "tags": ["raw"], "gone": 1, "n": null,
                "qc": {"passed": false, "by": {"name": "x", "deep": {"a": 1}}}}"#,
        );
        let new = synthetic(
            &[],
            r#"{"stage": "prod", "owner": "ada", "tags": ["raw", "intl"], "new": {"k": "v"},
                "n": 0, "qc": {"passed": true, "by": {"name": "x", "deep": {"a": 2}}}}"#,
        );
        let meta = &diff(&old, &new)["user_meta"];
        assert_eq!(
            meta["values"],
            json!([
                {"key": "gone", "before": "1", "after": null},
                {"key": "n", "before": "null", "after": "0"},
                {"key": "new", "before": null, "after": "{\"k\":\"v\"}"},
                {"key": "qc.by.deep", "before": "{\"a\":1}", "after": "{\"a\":2}"},
                {"key": "qc.passed", "before": "false", "after": "true"},
                {"key": "stage", "before": "review", "after": "prod"},
                {"key": "tags", "before": "[\"raw\"]", "after": "[\"raw\",\"intl\"]"},
            ])
        );
        assert_eq!(meta["values_more"], 0);
        // The key lists are unchanged: top-level keys.
        assert_eq!(meta["added"], json!(["new"]));
        assert_eq!(meta["changed"], json!(["n", "qc", "stage", "tags"]));
    }

    #[test]
    fn user_meta_values_are_cut_cleaned_and_bounded() {
        let long = "x".repeat(300);
        let old = synthetic(&[], r#"{"note": "a\nb", "big": 1}"#);
        let new = synthetic(
            &[],
            &json!({"note": "a\u{001b}[31mb", "big": long}).to_string(),
        );
        let values = &diff(&old, &new)["user_meta"]["values"];
        assert_eq!(values[0]["key"], "big");
        let after = values[0]["after"].as_str().unwrap_or_default();
        assert_eq!(after.chars().count(), 120);
        assert!(after.ends_with('…'));
        // Control characters would break a line of the text mail.
        assert_eq!(values[1]["before"], "a\u{FFFD}b");
        assert_eq!(values[1]["after"], "a\u{FFFD}[31mb");

        let many: Map<String, Value> = (0..150).map(|i| (format!("k{i:03}"), json!(i))).collect();
        let old = synthetic(&[], "{}");
        let new = synthetic(&[], &Value::Object(many).to_string());
        let meta = &diff(&old, &new)["user_meta"];
        assert_eq!(
            meta["values"].as_array().map(Vec::len),
            Some(META_VALUES_LIMIT)
        );
        assert_eq!(meta["values_more"], 150 - META_VALUES_LIMIT);
        assert_eq!(
            meta["values"][0],
            json!({"key": "k000", "before": null, "after": "0"})
        );
    }

    #[test]
    fn catalog_links_encode_every_part() {
        let links = CatalogLinks::new("https://catalog.example.com/", "my bucket", "team/a b");
        assert_eq!(
            links.compare("old", "new"),
            "https://catalog.example.com/b/my%20bucket/packages/team/a%20b/compare/old/new/"
        );
        assert_eq!(
            links.tree("h"),
            "https://catalog.example.com/b/my%20bucket/packages/team/a%20b/tree/h/"
        );
        assert_eq!(
            links.revisions(),
            "https://catalog.example.com/b/my%20bucket/packages/team/a%20b/revisions"
        );
        let hostile = CatalogLinks::new("c.example", "b", "\"><script>\r\n");
        assert!(hostile
            .revisions()
            .chars()
            .all(|c| c.is_ascii_graphic() && !"\"<>".contains(c)));
    }

    #[test]
    fn compare_url_goes_from_the_previous_to_the_current_revision() {
        let a = summary("first");
        let b = summary("add_files");
        let links = CatalogLinks::new("c.example", "bkt", "team/demo");
        let c = changes_json(
            Some(Revision {
                top_hash: "aaa",
                summary: &a,
            }),
            Revision {
                top_hash: "bbb",
                summary: &b,
            },
            Some(&links),
        );
        assert_eq!(
            c["compare_url"],
            "https://c.example/b/bkt/packages/team/demo/compare/aaa/bbb/"
        );
        assert_eq!(changes("first", "add_files")["compare_url"], Value::Null);
    }
}
