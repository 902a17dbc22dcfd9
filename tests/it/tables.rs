//! Table files on S3 (issue 22): the package store's ranged reads on LocalStack's S3 (the same
//! checks over the memory store, whose rules must be S3's); the table readers over real Parquet
//! and CSV files pushed with quilt3, compared with what pyarrow and Python's csv module say
//! about the same files, in at most two GETs per Parquet file and one per CSV; and
//! `quilt-notify render --data`'s `changes.tables` and `changes.user_meta.values` for those
//! revisions, compared with pyarrow's and quilt3's view.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};

use quilt_notify::adapters::aws::s3::S3Store;
use quilt_notify::adapters::memory::MemoryStore;
use quilt_notify::domain::table::{
    Next, Table, TableChange, TableError, TableFormat, TableLimits, TableRead,
};
use quilt_notify::ports::{
    ByteRange, ObjectRef, PackageStore, ReadSink, StoreError, StoreFailureKind,
};

use crate::support::quilt::QuiltBucket;
use crate::support::{sdk_config, Endpoints};

fn s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(&sdk_config(endpoint))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

fn object(bucket: &str, key: &str) -> ObjectRef {
    ObjectRef {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        version: None,
    }
}

/// What a ranged read handed over: the announced size and the bytes.
#[derive(Debug, Default, PartialEq, Eq)]
struct Got {
    size: Option<u64>,
    bytes: Vec<u8>,
}

impl ReadSink for Got {
    fn size(&mut self, bytes: u64) -> bool {
        self.size = Some(bytes);
        true
    }

    fn chunk(&mut self, chunk: &[u8]) -> bool {
        self.bytes.extend_from_slice(chunk);
        true
    }
}

async fn read_range(
    store: &impl PackageStore,
    object: &ObjectRef,
    range: ByteRange,
) -> Result<Got, StoreError> {
    let mut got = Got::default();
    store.read_range(object, range, &mut got).await?;
    Ok(got)
}

/// One set of checks for any store holding `hundred` (bytes 0..100) and `empty` in `bucket`.
async fn check_ranges(store: &impl PackageStore, bucket: &str, label: &str) {
    let body: Vec<u8> = (0..100).collect();
    let span = |start, end| ByteRange::Span { start, end };
    let cases: [(ByteRange, std::ops::Range<usize>); 11] = [
        (span(10, 20), 10..20),
        (span(0, 1), 0..1),
        (span(90, 200), 90..100),
        (span(99, 100), 99..100),
        // Wholly past the end: S3 answers 416 InvalidRange; the store hands nothing.
        (span(100, 110), 0..0),
        (span(500, 600), 0..0),
        (span(5, 5), 0..0),
        (ByteRange::Suffix(8), 92..100),
        (ByteRange::Suffix(100), 0..100),
        // Longer than the object: all of it.
        (ByteRange::Suffix(1000), 0..100),
        (ByteRange::Suffix(0), 0..0),
    ];
    for (range, expected) in cases {
        let got = read_range(store, &object(bucket, "hundred"), range)
            .await
            .unwrap_or_else(|e| panic!("{label}: {range:?}: {e}"));
        assert_eq!(got.bytes, &body[expected.clone()], "{label}: {range:?}");
        assert_eq!(got.size, Some(expected.len() as u64), "{label}: {range:?}");
    }
    // An empty object: no bytes, whatever the range (LocalStack answers a suffix with 200 and
    // an empty body, a span with 416).
    for range in [span(0, 8), ByteRange::Suffix(8), ByteRange::Suffix(65536)] {
        let got = read_range(store, &object(bucket, "empty"), range)
            .await
            .unwrap_or_else(|e| panic!("{label}: empty {range:?}: {e}"));
        assert_eq!(
            got,
            Got {
                size: Some(0),
                bytes: vec![]
            },
            "{label}: empty {range:?}"
        );
    }
    let missing = read_range(store, &object(bucket, "missing"), ByteRange::Suffix(8))
        .await
        .expect_err("missing");
    assert_eq!(
        missing.kind,
        StoreFailureKind::Missing,
        "{label}: {missing}"
    );
}

#[tokio::test]
#[ignore = "needs the emulators: run scripts/test"]
async fn ranged_reads_follow_s3s_rules_on_localstack_and_in_memory() {
    let endpoints = Endpoints::from_env();
    let aws = endpoints.aws.clone();
    let bucket = tokio::task::spawn_blocking(move || QuiltBucket::create(&aws))
        .await
        .expect("bucket");
    let client = s3_client(&endpoints.aws);
    for (key, body) in [
        ("hundred", (0..100).collect::<Vec<u8>>()),
        ("empty", vec![]),
    ] {
        client
            .put_object()
            .bucket(&bucket.name)
            .key(key)
            .body(body.into())
            .send()
            .await
            .expect("put");
    }
    // What LocalStack itself answers, under the adapter: 416 for a span past the end.
    let raw = client
        .get_object()
        .bucket(&bucket.name)
        .key("hundred")
        .range("bytes=100-109")
        .send()
        .await
        .expect_err("past the end");
    assert_eq!(
        aws_sdk_s3::error::ProvideErrorMetadata::code(&raw),
        Some("InvalidRange")
    );

    check_ranges(&S3Store::new(client.clone()), &bucket.name, "S3").await;

    let memory = MemoryStore::new(7);
    memory.put(&bucket.name, "hundred", (0..100).collect::<Vec<u8>>());
    memory.put(&bucket.name, "empty", Vec::new());
    check_ranges(&memory, &bucket.name, "memory").await;
}

/// A store that counts its GETs.
struct Counting<S> {
    store: S,
    gets: AtomicUsize,
}

impl<S: PackageStore> PackageStore for Counting<S> {
    async fn read(
        &self,
        object: &ObjectRef,
        max_bytes: Option<u64>,
        sink: &mut dyn ReadSink,
    ) -> Result<(), StoreError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.store.read(object, max_bytes, sink).await
    }

    async fn read_range(
        &self,
        object: &ObjectRef,
        range: ByteRange,
        sink: &mut dyn ReadSink,
    ) -> Result<(), StoreError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.store.read_range(object, range, sink).await
    }

    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        max_keys: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.store.list(bucket, prefix, max_keys).await
    }
}

/// Describes one table file as phase 2's worker will: the ranges [`TableRead`] names, read
/// from the store, fed back. Returns the table (or why not) and the GETs it took.
async fn describe(
    store: &Counting<S3Store>,
    logical_key: &str,
    file: &Value,
) -> (Result<Table, TableError>, usize) {
    let format = TableFormat::of(logical_key).expect("a table");
    let object = ObjectRef {
        bucket: file["bucket"].as_str().expect("bucket").to_owned(),
        key: file["key"].as_str().expect("key").to_owned(),
        version: file["version"].as_str().map(str::to_owned),
    };
    let size = file["size"].as_u64().expect("size");
    let before = store.gets.load(Ordering::SeqCst);
    let mut read = TableRead::new(format, size, TableLimits::default());
    let mut range = read.first();
    let table = loop {
        let got = read_range(store, &object, range)
            .await
            .unwrap_or_else(|e| panic!("{logical_key}: {e}"));
        match read.feed(&got.bytes) {
            Ok(Next::Done(table)) => break Ok(table),
            Ok(Next::Read(next)) => range = next,
            Err(e) => break Err(e),
        }
    };
    (table, store.gets.load(Ordering::SeqCst) - before)
}

/// A list in pyarrow's answer: whole, or `{"first": [...], "last": x, "count": n}` when long.
fn answer_list(answer: &Value) -> (Vec<String>, usize) {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    match answer {
        Value::Array(a) => (strings(answer), a.len()),
        Value::Object(short) => (
            strings(&short["first"]),
            short["count"].as_u64().unwrap_or_default() as usize,
        ),
        other => panic!("unexpected list {other}"),
    }
}

#[tokio::test]
#[ignore = "needs the emulators: run scripts/test"]
async fn tables_pushed_with_quilt3_read_as_pyarrow_says_in_at_most_two_gets() {
    let endpoints = Endpoints::from_env();
    let aws = endpoints.aws.clone();
    let (bucket, scenario) = tokio::task::spawn_blocking(move || {
        let bucket = QuiltBucket::create(&aws);
        let scenario = bucket.tables("team/tables");
        (bucket, scenario)
    })
    .await
    .expect("scenario");
    let store = Counting {
        store: S3Store::new(s3_client(&endpoints.aws)),
        gets: AtomicUsize::new(0),
    };
    let revisions = scenario["revisions"].as_array().expect("revisions");
    assert_eq!(revisions.len(), 3);
    // Every version of every table file, read from S3 and compared with pyarrow.
    let mut tables: Vec<BTreeMap<String, Result<Table, TableError>>> = Vec::new();
    for revision in revisions {
        let mut described = BTreeMap::new();
        for (key, file) in revision["tables"].as_object().expect("tables") {
            let (table, gets) = describe(&store, key, file).await;
            let answer = &file["answer"];
            let parquet = key.ends_with(".parquet");
            match (&table, answer.get("error")) {
                (Ok(t), None) => {
                    let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
                    let (theirs, count) = if parquet {
                        answer_list(&answer["names"])
                    } else {
                        answer_list(&answer["header"])
                    };
                    assert_eq!(names.len(), count, "{key}");
                    let theirs: Vec<String> = theirs
                        .iter()
                        .map(|n| quilt_notify::domain::table::clean_name(n))
                        .collect();
                    assert_eq!(names[..theirs.len()], theirs, "{key}");
                    let rows = if parquet {
                        &answer["num_rows"]
                    } else {
                        &answer["rows"]
                    };
                    assert_eq!(t.rows, rows.as_u64(), "{key}: rows");
                }
                (Err(_), Some(_)) => {}
                (ours, theirs) => panic!("{key}: we say {ours:?}, pyarrow says {theirs:?}"),
            }
            if parquet {
                let footer = answer["footer_bytes"].as_u64().unwrap_or(0);
                let expected = if footer + 8 > 64 * 1024 { 2 } else { 1 };
                assert_eq!(gets, expected, "{key}: footer of {footer} bytes");
            } else {
                assert_eq!(gets, 1, "{key}");
            }
            described.insert(key.clone(), table);
        }
        tables.push(described);
    }

    // The broken files: errors, as data.
    let last = &tables[2];
    assert!(matches!(
        last["data/corrupt.parquet"],
        Err(TableError::CorruptFooter(_))
    ));
    assert!(matches!(
        last["data/truncated.parquet"],
        Err(TableError::NotParquet(_))
    ));
    assert!(matches!(
        last["data/binary.csv"],
        Err(TableError::NotText(_))
    ));
    assert_eq!(
        last["data/wide.parquet"].as_ref().map(|t| t.columns.len()),
        Ok(2000)
    );

    // What changed between revisions, as the template will get it.
    let change = |path: &str, from: usize, to: usize| {
        TableChange {
            path: path.to_owned(),
            format: TableFormat::of(path).expect("table"),
            before: tables[from].get(path).cloned(),
            after: tables[to][path].clone(),
        }
        .to_json()
    };
    assert_eq!(
        change("data/readings.parquet", 0, 1),
        json!({
            "path": "data/readings.parquet", "format": "parquet", "status": "modified",
            "rows": {"before": 1200, "after": 1300},
            "columns": {
                "count": 4,
                "added": [{"name": "station_id", "type": "int64"}], "added_more": 0,
                "removed": [{"name": "note", "type": "string"}], "removed_more": 0,
                "retyped": [{"name": "value", "before": "int32", "after": "double"}],
                "retyped_more": 0,
            },
            "error": null,
        })
    );
    let same = change("data/readings.parquet", 1, 2);
    assert_eq!(same["rows"], json!({"before": 1300, "after": 1300}));
    assert_eq!(same["columns"]["retyped"], json!([]));
    assert_eq!(same["columns"]["added"], json!([]));
    let stations = change("data/stations.csv", 0, 1);
    assert_eq!(stations["rows"], json!({"before": 3, "after": 5}));
    assert_eq!(stations["columns"]["added"], json!([]));
    let added = change("data/types.parquet", 0, 1);
    assert_eq!(added["status"], "added");
    assert_eq!(added["columns"]["count"], 28);
    let quoted = &tables[0]["data/quoted.csv"];
    assert_eq!(
        quoted.as_ref().map(|t| t.columns[2].name.clone()),
        Ok("note, with comma".to_owned())
    );
    drop(bucket);
}

/// `quilt-notify render --data` for revision `index` of the table scenario: the template data
/// of the one route, as the worker would read it from LocalStack's S3.
async fn render_data(endpoint: &str, bucket: &str, package: &str, top_hash: &str) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[queue]
url = "http://127.0.0.1:9/000000000000/unused"
[ses]
from = "quilt@example.com"
[s3]
endpoint_url = "{endpoint}"
[templates]
dir = "{}"
[[routes]]
name = "tables"
template = "package-created"
to = ["team@example.com"]
pattern = {{ source = ["com.quiltdata"] }}
"#,
            crate::support::repo_root()
                .join("config/templates")
                .display()
        ),
    )
    .expect("write config");
    let event = dir.path().join("event.json");
    let now = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
        .expect("time")
        .to_string();
    let body = json!({
        "version": "0", "id": crate::support::unique("tables-event"),
        "detail-type": "package-revision", "source": "com.quiltdata", "account": "000000000000",
        "time": now, "region": "us-east-1", "resources": [],
        "detail": {"version": "0.1", "type": "created", "bucket": bucket, "handle": package,
                   "topHash": top_hash}
    });
    std::fs::write(&event, body.to_string()).expect("write event");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_quilt-notify"))
        .args(["render", "--data", "-c"])
        .arg(&config)
        .arg("-e")
        .arg(&event)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .env_remove("QUILT_NOTIFY_CONFIG")
        .output()
        .await
        .expect("run quilt-notify render");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "render failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("render --data: {e}:\n{stdout}"))
}

/// The rows and column count pyarrow (or the csv module) gives for a file, None when it
/// could not read it either.
fn pyarrow_says(file: &Value) -> Option<(Option<u64>, usize)> {
    let answer = &file["answer"];
    if answer.get("error").is_some() {
        return None;
    }
    if answer.get("num_rows").is_some() {
        Some((answer["num_rows"].as_u64(), answer_list(&answer["names"]).1))
    } else {
        Some((answer["rows"].as_u64(), answer_list(&answer["header"]).1))
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn render_data_shows_changes_tables_and_metadata_values_as_pyarrow_and_quilt3_say() {
    let endpoints = Endpoints::from_env();
    let aws = endpoints.aws.clone();
    let package = "team/rendered";
    let (bucket, scenario) = tokio::task::spawn_blocking(move || {
        let bucket = QuiltBucket::create(&aws);
        let scenario = bucket.tables(package);
        (bucket, scenario)
    })
    .await
    .expect("scenario");
    let revisions = scenario["revisions"].as_array().expect("revisions");

    for index in 1..revisions.len() {
        let (previous, current) = (&revisions[index - 1], &revisions[index]);
        let data = render_data(
            &endpoints.aws,
            &bucket.name,
            package,
            current["top_hash"].as_str().expect("top hash"),
        )
        .await;
        let changes = &data["changes"];
        assert_eq!(changes["error"], Value::Null, "{changes}");
        let tables = changes["tables"].as_array().expect("changes.tables");
        assert_eq!(changes["tables_more"], 0);
        // Every table file quilt3 says was added or modified, in path order.
        let mut expected: Vec<String> = changes["added"]["paths"]
            .as_array()
            .into_iter()
            .chain(changes["modified"]["paths"].as_array())
            .flatten()
            .filter_map(Value::as_str)
            .filter(|p| TableFormat::of(p).is_some())
            .map(str::to_owned)
            .collect();
        expected.sort();
        let paths: Vec<&str> = tables.iter().filter_map(|t| t["path"].as_str()).collect();
        assert_eq!(paths, expected, "revision {index}");
        for table in tables {
            let path = table["path"].as_str().expect("path");
            let now = &current["tables"][path];
            match pyarrow_says(now) {
                Some((rows, columns)) => {
                    assert_eq!(table["rows"]["after"].as_u64(), rows, "{path}");
                    assert_eq!(table["columns"]["count"], columns, "{path}");
                }
                None => {
                    assert!(table["error"].is_string(), "{path}: {table}");
                    assert_eq!(table["columns"]["count"], Value::Null, "{path}");
                }
            }
            if let Some(before) = previous["tables"].get(path) {
                assert_eq!(table["status"], "modified", "{path}");
                if let Some((rows, _)) = pyarrow_says(before) {
                    assert_eq!(table["rows"]["before"].as_u64(), rows, "{path}");
                }
            } else {
                assert_eq!(table["status"], "added", "{path}");
                assert_eq!(table["columns"]["added"], json!([]), "{path}");
            }
        }
        if index == 1 {
            let readings = &tables[paths
                .iter()
                .position(|p| *p == "data/readings.parquet")
                .expect("readings")];
            assert_eq!(
                readings["columns"]["retyped"],
                json!([{"name": "value", "before": "int32", "after": "double"}])
            );
            assert_eq!(
                readings["columns"]["removed"],
                json!([{"name": "note", "type": "string"}])
            );
            // quilt3 pushed user_meta stage: review, then prod.
            assert_eq!(
                changes["user_meta"]["values"],
                json!([{"key": "stage", "before": "review", "after": "prod"}])
            );
        } else {
            let wide = tables
                .iter()
                .find(|t| t["path"] == "data/wide.parquet")
                .expect("wide");
            assert_eq!(wide["columns"]["count"], 2000);
            let same = tables
                .iter()
                .find(|t| t["path"] == "data/readings.parquet")
                .expect("readings");
            assert_eq!(same["columns"]["retyped"], json!([]));
            assert_eq!(same["rows"], json!({"before": 1300, "after": 1300}));
        }
    }
    drop(bucket);
}
