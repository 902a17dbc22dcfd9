//! Real quilt3 revisions for the crate's tests: the manifests of `scripts/quilt_packages.py
//! scenario` (`tests/data/quilt`), their top hashes and quilt3's own diffs, and a store laid out
//! as quilt3 lays a package out in its bucket.

use serde_json::Value;

use crate::adapters::memory::store::MemoryStore;
use crate::domain::revision::{manifest_key, pointers_prefix};

/// The bucket the fixtures were pushed to (their README's physical key names it).
pub const BUCKET: &str = "quilt-notify-fixtures";
/// The package the fixtures are revisions of.
pub const HANDLE: &str = "team/demo";
const INDEX: &str = include_str!("../../../tests/data/quilt/index.json");

/// The manifest of one revision of the scenario.
pub fn manifest(name: &str) -> &'static str {
    match name {
        "first" => include_str!("../../../tests/data/quilt/first.jsonl"),
        "add_files" => include_str!("../../../tests/data/quilt/add_files.jsonl"),
        "remove_files" => include_str!("../../../tests/data/quilt/remove_files.jsonl"),
        "modify_file" => include_str!("../../../tests/data/quilt/modify_file.jsonl"),
        "metadata_only" => include_str!("../../../tests/data/quilt/metadata_only.jsonl"),
        "same_hash" => include_str!("../../../tests/data/quilt/same_hash.jsonl"),
        "unicode_nested" => include_str!("../../../tests/data/quilt/unicode_nested.jsonl"),
        "entry_meta" => include_str!("../../../tests/data/quilt/entry_meta.jsonl"),
        "workflow" => include_str!("../../../tests/data/quilt/workflow.jsonl"),
        other => panic!("no fixture {other}"),
    }
}

/// `index.json`: each revision's name and top hash, and quilt3's diffs between them.
pub fn index() -> Value {
    serde_json::from_str(INDEX).expect("index.json")
}

/// The top hash quilt3 gave a revision.
pub fn top_hash(name: &str) -> String {
    index()["revisions"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == name))
        .and_then(|r| r["top_hash"].as_str())
        .expect("revision in index.json")
        .to_owned()
}

/// quilt3's own `Package.diff` for two consecutive revisions.
pub fn quilt3_diff(from: &str, to: &str) -> Value {
    index()["diffs"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["from"] == from && d["to"] == to))
        .cloned()
        .expect("diff in index.json")
}

/// Pushes revisions as quilt3 does: the README the manifests point at, each manifest, and a
/// pointer (and `latest`) stamped a minute apart.
pub fn push(store: &MemoryStore, revisions: &[&str]) {
    store.put(
        BUCKET,
        "team/demo/README.md",
        "# Demo\n\nA package pushed by scripts/quilt_packages.py.\n",
    );
    for (i, name) in revisions.iter().enumerate() {
        let hash = top_hash(name);
        store.put(BUCKET, &manifest_key(&hash), manifest(name));
        let stamp = 1_700_000_000 + 60 * i as u64;
        for pointer in [stamp.to_string(), "latest".to_owned()] {
            store.put(
                BUCKET,
                &format!("{}{pointer}", pointers_prefix(HANDLE)),
                hash.as_str(),
            );
        }
    }
}
