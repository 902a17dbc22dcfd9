//! Table files through the details reader, on the in-memory store (S3's rules for ranges):
//! what `changes.tables` says, which reads are made, and what a failed read does.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::adapters::memory::store::MemoryStore;
use crate::domain::event::PackageEvent;
use crate::domain::manifest::ManifestLimits;
use crate::domain::revision::{manifest_key, pointers_prefix};
use crate::domain::table::{TableLimits, TableSettings, PARQUET_FIRST_TAIL};
use crate::ports::{ByteRange, ObjectRef, PackageStore, ReadSink, StoreError, StoreFailureKind};
use crate::worker::details::{CacheLimits, DetailsReader};

const BUCKET: &str = "tables-bucket";
const HANDLE: &str = "team/tables";
const V1: &[u8] = include_bytes!("../../../../tests/data/tables/readings_v1.parquet");
const V2: &[u8] = include_bytes!("../../../../tests/data/tables/readings_v2.parquet");
const STATIONS: &[u8] = include_bytes!("../../../../tests/data/tables/stations.tsv");
const WIDE_GZ: &[u8] = include_bytes!("../../../../tests/data/tables/wide.parquet.gz");

fn hash(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

/// A manifest of these files (logical key, stored key, body), with `meta` as user_meta.
fn manifest(files: &[(&str, &str, &[u8])], meta: &Value) -> String {
    let mut lines = vec![json!({"version": "v0", "message": "m", "user_meta": meta}).to_string()];
    for (logical, key, body) in files {
        lines.push(
            json!({
                "logical_key": logical,
                "physical_keys": [format!("s3://{BUCKET}/{key}")],
                "size": body.len(),
                "hash": {"type": "SHA256", "value": format!("{:064x}", body.len() as u64 * 7919 + key.len() as u64)},
            })
            .to_string(),
        );
    }
    lines.join("\n")
}

/// Pushes revisions (each a list of files) a minute apart, the data files stored too (a key
/// may name a version, `key?versionId=…`; the store keeps one body per key).
fn push(store: &MemoryStore, revisions: &[Vec<(&str, &str, &[u8])>]) {
    for (i, files) in revisions.iter().enumerate() {
        for (_, key, body) in files {
            let key = key.split('?').next().unwrap_or(key);
            store.put(BUCKET, key, body.to_vec());
        }
        let top = hash(i as u8 + 1);
        store.put(
            BUCKET,
            &manifest_key(&top),
            manifest(files, &json!({"n": i})),
        );
        let stamp = 1_700_000_000 + 60 * i as u64;
        store.put(
            BUCKET,
            &format!("{}{stamp}", pointers_prefix(HANDLE)),
            top.as_str(),
        );
    }
}

/// Pushes a revision of a README, then one adding `n` copies of `body` as `t/NN.parquet`.
fn push_tables(store: &MemoryStore, n: usize, body: &[u8]) {
    let keys: Vec<(String, String)> = (0..n)
        .map(|i| (format!("t/{i:02}.parquet"), format!("r/{i:02}.parquet")))
        .collect();
    let files: Vec<(&str, &str, &[u8])> = keys
        .iter()
        .map(|(l, k)| (l.as_str(), k.as_str(), body))
        .collect();
    push(store, &[vec![("README.md", "r/README.md", b"# hi")], files]);
}

fn event(revision: u8) -> PackageEvent {
    let body = json!({
        "version": "0", "id": format!("event-{revision}"), "detail-type": "package-revision",
        "source": "com.quiltdata", "account": "1", "time": "2024-01-01T00:00:00Z",
        "region": "us-east-1", "resources": [],
        "detail": {"version": "0.1", "type": "created", "bucket": BUCKET, "handle": HANDLE,
                   "topHash": hash(revision)}
    });
    PackageEvent::parse(&body.to_string()).expect("event")
}

fn reader<S: PackageStore>(store: S, tables: Option<TableSettings>) -> DetailsReader<S> {
    let reader = DetailsReader::new(store, ManifestLimits::default(), CacheLimits::NONE, None);
    match tables {
        Some(settings) => reader.with_tables(settings),
        None => reader,
    }
}

async fn changes<S: PackageStore>(reader: &DetailsReader<S>, revision: u8) -> Value {
    let details = reader.read(&event(revision)).await.expect("details");
    details.changes_json()
}

/// Revision 1: readings v1 and a README; revision 2: readings v2 (retyped, column swapped,
/// rows appended), an added TSV, the README unchanged.
fn two_revisions(store: &MemoryStore) {
    push(
        store,
        &[
            vec![
                ("README.md", "r/README.md", b"# hi"),
                ("data/readings.parquet", "r/readings-1.parquet", V1),
            ],
            vec![
                ("README.md", "r/README.md", b"# hi"),
                ("data/readings.parquet", "r/readings-2.parquet", V2),
                ("data/stations.tsv", "r/stations.tsv", STATIONS),
            ],
        ],
    );
}

#[tokio::test]
async fn added_and_modified_tables_are_described_in_path_order_as_pyarrow_says() {
    let store = MemoryStore::new(4096);
    two_revisions(&store);
    let reader = reader(store, Some(TableSettings::default()));
    let c = changes(&reader, 2).await;
    let tables = c["tables"].as_array().expect("tables");
    assert_eq!(tables.len(), 2);
    assert_eq!(c["tables_more"], 0);
    // pyarrow: v1 has 120 rows, station/hour/value(int32)/note; v2 130 rows,
    // station/hour/value(double)/station_id(int64) (tests/data/tables/answers.json).
    assert_eq!(
        tables[0],
        json!({
            "path": "data/readings.parquet", "format": "parquet", "status": "modified",
            "rows": {"before": 120, "after": 130},
            "columns": {"count": 4,
                "added": [{"name": "station_id", "type": "int64"}], "added_more": 0,
                "removed": [{"name": "note", "type": "string"}], "removed_more": 0,
                "retyped": [{"name": "value", "before": "int32", "after": "double"}],
                "retyped_more": 0},
            "error": null,
        })
    );
    assert_eq!(tables[1]["path"], "data/stations.tsv");
    assert_eq!(tables[1]["status"], "added");
    assert_eq!(tables[1]["rows"]["before"], Value::Null);
    assert_eq!(tables[1]["columns"]["added"], json!([]));
    assert_eq!(tables[1]["error"], Value::Null);
}

#[tokio::test]
async fn a_parquet_version_takes_at_most_two_reads_and_a_csv_one() {
    let store = Arc::new(MemoryStore::new(4096));
    two_revisions(&store);
    let reader = reader(Arc::clone(&store), Some(TableSettings::default()));
    changes(&reader, 2).await;
    // Small footers: the first 64 KiB tail holds them, one read each.
    assert_eq!(store.reads("r/readings-1.parquet"), 1);
    assert_eq!(store.reads("r/readings-2.parquet"), 1);
    assert_eq!(store.reads("r/stations.tsv"), 1);
}

#[tokio::test]
async fn a_version_described_for_one_revision_is_not_read_again_for_the_next() {
    let store = Arc::new(MemoryStore::new(4096));
    push(
        &store,
        &[
            vec![("data/r.parquet", "r/a.parquet?versionId=1", V1)],
            vec![("data/r.parquet", "r/b.parquet?versionId=2", V2)],
            vec![("data/r.parquet", "r/c.parquet?versionId=3", V1)],
        ],
    );
    let versioned = reader(Arc::clone(&store), Some(TableSettings::default()));
    let second = changes(&versioned, 2).await;
    let third = changes(&versioned, 3).await;
    assert_eq!(store.reads("r/a.parquet"), 1);
    assert_eq!(
        store.reads("r/b.parquet"),
        1,
        "known from the second revision's event"
    );
    assert_eq!(store.reads("r/c.parquet"), 1);
    assert_eq!(
        second["tables"][0]["rows"],
        json!({"before": 120, "after": 130})
    );
    assert_eq!(
        third["tables"][0]["rows"],
        json!({"before": 130, "after": 120})
    );

    // Without a version id the key may have been overwritten: it is read each time.
    let store = Arc::new(MemoryStore::new(4096));
    push(
        &store,
        &[
            vec![("data/r.parquet", "r/r.parquet", V1)],
            vec![("data/r.parquet", "r/s.parquet", V2)],
            vec![("data/r.parquet", "r/t.parquet", V1)],
        ],
    );
    let unversioned = reader(Arc::clone(&store), Some(TableSettings::default()));
    changes(&unversioned, 2).await;
    changes(&unversioned, 3).await;
    assert_eq!(store.reads("r/s.parquet"), 2, "unversioned: read again");
}

#[tokio::test]
async fn without_table_settings_no_data_file_is_read_and_tables_are_null() {
    let store = Arc::new(MemoryStore::new(4096));
    two_revisions(&store);
    let reader = reader(Arc::clone(&store), None);
    let c = changes(&reader, 2).await;
    assert_eq!(c["tables"], Value::Null);
    assert_eq!(c["tables_more"], Value::Null);
    assert_eq!(store.reads("r/readings-2.parquet"), 0);
    assert_eq!(store.reads("r/stations.tsv"), 0);
}

#[tokio::test]
async fn access_denied_on_a_data_file_is_that_tables_error_not_the_events() {
    let store = Arc::new(MemoryStore::new(4096));
    two_revisions(&store);
    store.fail("r/readings-1.parquet", StoreFailureKind::Denied);
    let reader = reader(Arc::clone(&store), Some(TableSettings::default()));
    let c = changes(&reader, 2).await;
    let readings = &c["tables"][0];
    let error = readings["error"].as_str().expect("an error");
    assert!(
        error.starts_with("the previous version: cannot read it"),
        "{error}"
    );
    assert_eq!(readings["rows"], json!({"before": null, "after": 130}));
    assert_eq!(readings["columns"]["count"], 4);
    assert_eq!(c["tables"][1]["error"], Value::Null);
}

#[tokio::test]
async fn throttling_on_a_data_file_fails_the_details_for_a_retry() {
    let store = Arc::new(MemoryStore::new(4096));
    two_revisions(&store);
    store.fail("r/stations.tsv", StoreFailureKind::Transient);
    let reader = reader(Arc::clone(&store), Some(TableSettings::default()));
    let err = reader.read(&event(2)).await.expect_err("transient");
    assert_eq!(err.kind, StoreFailureKind::Transient);
    assert_eq!(err.key, "r/stations.tsv");
}

#[tokio::test]
async fn a_corrupt_parquet_and_a_binary_csv_are_their_tables_errors() {
    let store = MemoryStore::new(4096);
    let mut corrupt = V2.to_vec();
    let at = corrupt.len() - 8 - 200;
    corrupt[at..at + 100].fill(0xFF);
    push(
        &store,
        &[
            vec![("README.md", "r/README.md", b"# hi")],
            vec![
                ("data/a.parquet", "r/a.parquet", &corrupt),
                ("data/b.csv", "r/b.csv", V1),
                ("data/c.parquet", "r/c.parquet", b"not parquet at all"),
            ],
        ],
    );
    let reader = reader(store, Some(TableSettings::default()));
    let c = changes(&reader, 2).await;
    let errors: Vec<&str> = c["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .map(|t| t["error"].as_str().unwrap_or("none"))
        .collect();
    assert!(
        errors[0].starts_with("corrupt Parquet footer"),
        "{errors:?}"
    );
    assert!(errors[1].starts_with("not a text table"), "{errors:?}");
    assert!(errors[2].starts_with("not a Parquet file"), "{errors:?}");
}

#[tokio::test]
async fn past_max_tables_files_are_counted_not_read() {
    let store = Arc::new(MemoryStore::new(4096));
    push_tables(&store, 5, V1);
    let settings = TableSettings {
        max_tables: 3,
        ..TableSettings::default()
    };
    let reader = reader(Arc::clone(&store), Some(settings));
    let c = changes(&reader, 2).await;
    let paths: Vec<&str> = c["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .filter_map(|t| t["path"].as_str())
        .collect();
    assert_eq!(paths, ["t/00.parquet", "t/01.parquet", "t/02.parquet"]);
    assert_eq!(c["tables_more"], 2);
    assert_eq!(store.reads("r/03.parquet"), 0);
}

/// A store that counts the reads in flight, of ranges longer than `longer_than` bytes.
struct InFlight {
    inner: MemoryStore,
    longer_than: u64,
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl InFlight {
    fn new(inner: MemoryStore, longer_than: u64) -> Arc<Self> {
        Arc::new(Self {
            inner,
            longer_than,
            now: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        })
    }
}

impl PackageStore for InFlight {
    async fn read(
        &self,
        object: &ObjectRef,
        max_bytes: Option<u64>,
        sink: &mut dyn ReadSink,
    ) -> Result<(), StoreError> {
        self.inner.read(object, max_bytes, sink).await
    }

    async fn read_range(
        &self,
        object: &ObjectRef,
        range: ByteRange,
        sink: &mut dyn ReadSink,
    ) -> Result<(), StoreError> {
        if range.max_len() <= self.longer_than {
            return self.inner.read_range(object, range, sink).await;
        }
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        let read = self.inner.read_range(object, range, sink).await;
        self.now.fetch_sub(1, Ordering::SeqCst);
        read
    }

    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        max_keys: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.inner.list(bucket, prefix, max_keys).await
    }
}

#[tokio::test]
async fn at_most_eight_table_files_are_read_at_once() {
    let inner = MemoryStore::yielding(256);
    push_tables(&inner, 30, V1);
    let store = InFlight::new(inner, 0);
    let settings = TableSettings {
        max_tables: 30,
        ..TableSettings::default()
    };
    let reader = reader(Arc::clone(&store), Some(settings));
    let c = changes(&reader, 2).await;
    assert_eq!(c["tables"].as_array().map(Vec::len), Some(30));
    let peak = store.peak.load(Ordering::SeqCst);
    assert!((2..=8).contains(&peak), "peak {peak}");
}

#[tokio::test]
async fn wide_footers_are_read_only_as_many_at_once_as_their_memory_allows() {
    // pyarrow's 2,000-column file: its 306,546-byte footer takes a second read, and reserves
    // 8 × that of the footers' memory, 8 × 1 MiB here: three fit at once, not the eight that
    // the event reads at once.
    let wide = {
        use std::io::Read;
        let mut file = Vec::new();
        flate2::read::GzDecoder::new(WIDE_GZ)
            .read_to_end(&mut file)
            .expect("gunzip");
        file
    };
    let inner = MemoryStore::yielding(64 * 1024);
    push_tables(&inner, 12, &wide);
    let store = InFlight::new(inner, PARQUET_FIRST_TAIL);
    let settings = TableSettings {
        max_tables: 12,
        limits: TableLimits {
            max_footer_bytes: 1024 * 1024,
        },
    };
    let reader = reader(Arc::clone(&store), Some(settings));
    let c = changes(&reader, 2).await;
    let tables = c["tables"].as_array().expect("tables");
    assert_eq!(tables.len(), 12);
    assert!(tables.iter().all(|t| t["columns"]["count"] == 2000), "{c}");
    let peak = store.peak.load(Ordering::SeqCst);
    assert!((2..=3).contains(&peak), "peak {peak}");
}

#[tokio::test]
async fn a_previous_version_overwritten_in_place_is_not_read_as_if_it_were_the_old_one() {
    let store = Arc::new(MemoryStore::new(4096));
    // A bucket without versioning: both revisions name the same key; it holds v2 now.
    push(
        &store,
        &[
            vec![("data/readings.parquet", "r/readings.parquet", V1)],
            vec![("data/readings.parquet", "r/readings.parquet", V2)],
        ],
    );
    let reader = reader(Arc::clone(&store), Some(TableSettings::default()));
    let c = changes(&reader, 2).await;
    let readings = &c["tables"][0];
    assert_eq!(readings["rows"], json!({"before": null, "after": 130}));
    assert_eq!(
        readings["error"],
        "the previous version: it was overwritten in place (the bucket keeps no versions)"
    );
    assert_eq!(readings["columns"]["retyped"], json!([]));
    assert_eq!(store.reads("r/readings.parquet"), 1);
}
