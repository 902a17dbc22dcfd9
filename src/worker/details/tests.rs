//! The details reader against an in-memory store holding real quilt3 manifests
//! (`tests/data/quilt`, made by `scripts/quilt_packages.py`), laid out as quilt3 lays them out.

use serde_json::{json, Value};

use std::sync::{Arc, Mutex};

use super::*;
use crate::adapters::memory::fixtures::{manifest, push, quilt3_diff, top_hash, BUCKET, HANDLE};
use crate::adapters::memory::store::MemoryStore;
use crate::domain::revision::pointers_prefix;
use crate::ports::ReadSink;

fn store(chunk: usize) -> MemoryStore {
    MemoryStore::new(chunk)
}

fn reader(store: MemoryStore) -> DetailsReader<MemoryStore> {
    DetailsReader::new(
        store,
        ManifestLimits::default(),
        CacheLimits::new(8, 64),
        Some("catalog.example.com".to_owned()),
    )
}

/// The event quilt3's push of `name` makes, stamped after every pointer.
fn event(name: &str) -> PackageEvent {
    let body = json!({
        "version": "0", "id": format!("event-{name}"), "detail-type": "package-revision",
        "source": "com.quiltdata", "account": "1", "time": "2024-01-01T00:00:00Z",
        "region": "us-east-1", "resources": [],
        "detail": {"version": "0.1", "type": "created", "bucket": BUCKET, "handle": HANDLE,
                   "topHash": top_hash(name)}
    });
    PackageEvent::parse(&body.to_string()).expect("event")
}

fn paths(changes: &Value, kind: &str) -> Vec<String> {
    changes[kind]["paths"]
        .as_array()
        .expect("paths")
        .iter()
        .map(|p| p.as_str().expect("string").to_owned())
        .collect()
}

#[tokio::test]
async fn a_first_revision_has_its_details_and_no_changes() {
    let store = store(64);
    push(&store, &["first"]);
    let details = reader(store).read(&event("first")).await.expect("details");
    assert_eq!(details.changes, None);
    assert!(!details.unchanged);
    let package = details.package_json();
    assert_eq!(package["message"], "First revision");
    assert_eq!(package["user_meta"]["stage"], "dev");
    assert!(package["files"].as_u64().expect("files") >= 2);
    assert_eq!(package["error"], Value::Null);
    let readme = package["readme"]
        .as_str()
        .expect("README.md read from its physical key");
    assert!(readme.starts_with("# Demo"), "{readme}");
}

#[tokio::test]
async fn changes_equal_what_quilt3_says_for_the_same_two_revisions() {
    for (from, to) in [
        ("first", "add_files"),
        ("add_files", "remove_files"),
        ("remove_files", "modify_file"),
    ] {
        let store = store(7); // lines cut across chunks everywhere
        push(&store, &[from, to]);
        let details = reader(store).read(&event(to)).await.expect("details");
        let changes = &details.changes_json();
        assert_eq!(changes["previous_top_hash"], top_hash(from).as_str());
        let quilt3 = quilt3_diff(from, to);
        for (ours, theirs) in [
            ("added", "added"),
            ("removed", "deleted"),
            ("modified", "modified"),
        ] {
            let mut expected: Vec<String> =
                serde_json::from_value(quilt3[theirs].clone()).expect("list");
            expected.sort();
            assert_eq!(paths(changes, ours), expected, "{from} -> {to}: {ours}");
        }
        assert!(
            changes["compare_url"]
                .as_str()
                .is_some_and(|u| u.contains("/compare/")),
            "{changes}"
        );
    }
}

#[tokio::test]
async fn a_re_push_of_the_same_content_is_unchanged() {
    let store = store(4096);
    push(&store, &["modify_file", "metadata_only", "same_hash"]);
    let details = reader(store)
        .read(&event("same_hash"))
        .await
        .expect("details");
    assert!(details.unchanged);
    assert_eq!(details.changes_json()["unchanged"], true);
}

#[tokio::test]
async fn the_previous_manifest_is_read_once_for_a_burst_of_pushes() {
    let store = store(4096);
    push(&store, &["first", "add_files"]);
    let reader = reader(store);
    let first_key = manifest_key(&top_hash("first"));
    reader.read(&event("add_files")).await.expect("details");
    reader
        .read(&event("add_files"))
        .await
        .expect("details again");
    reader
        .read(&event("first"))
        .await
        .expect("the predecessor itself");
    assert_eq!(reader.store.reads(&first_key), 1, "cached by top hash");
    let (hits, misses) = reader.cache_stats();
    assert_eq!((hits, misses), (3, 2));
}

#[tokio::test]
async fn a_missing_manifest_still_gives_details_that_say_why() {
    let store = store(4096);
    push(&store, &["first"]);
    let key = manifest_key(&top_hash("first"));
    store.fail(&key, StoreFailureKind::Missing);
    let details = reader(store)
        .read(&event("first"))
        .await
        .expect("not an error");
    let error = details.package.reason().expect("package.error");
    assert!(error.contains(&key), "{error}");
    assert_eq!(details.package_json()["files"], 0);
}

#[tokio::test]
async fn access_denied_on_the_listing_keeps_the_package_and_drops_the_changes() {
    let store = store(4096);
    push(&store, &["first", "add_files"]);
    store.fail(&pointers_prefix(HANDLE), StoreFailureKind::Denied);
    let details = reader(store)
        .read(&event("add_files"))
        .await
        .expect("not an error");
    assert_eq!(details.changes, None);
    let error = details.package.reason().expect("package.error");
    assert!(error.starts_with("previous revision unknown"), "{error}");
    assert!(details.package_json()["files"].as_u64().expect("files") > 0);
}

#[tokio::test]
async fn transient_failures_fail_the_read_so_the_message_is_retried() {
    for failing in ["manifest", "pointers", "readme"] {
        let store = store(4096);
        push(&store, &["first", "add_files"]);
        let key = match failing {
            "manifest" => manifest_key(&top_hash("add_files")),
            "pointers" => pointers_prefix(HANDLE),
            _ => "team/demo/README.md".to_owned(),
        };
        store.fail(&key, StoreFailureKind::Transient);
        let err = reader(store)
            .read(&event("add_files"))
            .await
            .expect_err(failing);
        assert_eq!(err.kind, StoreFailureKind::Transient, "{failing}");
    }
}

#[tokio::test]
async fn a_line_over_the_limit_is_not_buffered_and_is_reported() {
    let store = store(1000);
    push(&store, &["first"]);
    let hash = top_hash("first");
    let mut body = manifest("first").as_bytes().to_vec();
    body.extend_from_slice(&vec![b'x'; 5000]);
    store.put(BUCKET, &manifest_key(&hash), body.clone());
    let reader = DetailsReader::new(
        store,
        ManifestLimits {
            max_line_bytes: 2048,
            max_entries: 100,
        },
        CacheLimits::new(8, 64),
        None,
    );
    let details = reader.read(&event("first")).await.expect("details");
    let error = details.package.reason().expect("package.error");
    assert!(error.contains("over the limit of 2048 bytes"), "{error}");
    assert!(
        details.package_json()["files"].as_u64().expect("files") > 0,
        "what was read is kept"
    );
}

/// The built-in sample details (`events/package-details.json`, which `validate` renders every
/// template with and docs/templates.md quotes) are what this reader makes of two real quilt3
/// revisions. Rewrite the file with `UPDATE_SNAPSHOTS=1` after a change to the details.
#[tokio::test]
async fn the_sample_details_are_this_readers_output_for_real_revisions() {
    let store = store(4096);
    push(&store, &["same_hash", "unicode_nested"]);
    let details = reader(store)
        .read(&event("unicode_nested"))
        .await
        .expect("details");
    let actual = serde_json::to_string_pretty(&details.pattern_input()).expect("json") + "\n";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/events/package-details.json");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1") {
        std::fs::write(path, &actual).expect("write the sample");
    }
    let expected = std::fs::read_to_string(path).expect("events/package-details.json");
    assert_eq!(
        actual, expected,
        "the sample details are stale: UPDATE_SNAPSHOTS=1 cargo test --lib sample_details"
    );
    let sample = crate::app::sample_details().expect("the built-in sample parses");
    assert_eq!(sample, details);
}

/// Pushes a second apart, every event handled after the burst: each still finds its own pointer
/// (the closest to its time) and the one before it, however many pushes came after.
#[tokio::test]
async fn in_a_burst_each_revision_is_diffed_against_the_one_before_it() {
    let names = ["first", "add_files", "remove_files", "modify_file"];
    let store = store(4096);
    push(&store, &[]);
    let start = 1_704_067_200u64; // 2024-01-01T00:00:00Z
    for (i, name) in names.iter().enumerate() {
        let hash = top_hash(name);
        store.put(BUCKET, &manifest_key(&hash), manifest(name));
        let pointer = format!(".quilt/named_packages/{HANDLE}/{}", start + i as u64);
        store.put(BUCKET, &pointer, hash.as_str());
    }
    // Thirty more pushes follow within the same minute: more than the reader reads.
    let later = top_hash("unicode_nested");
    store.put(BUCKET, &manifest_key(&later), manifest("unicode_nested"));
    for i in 0..30 {
        let pointer = format!(".quilt/named_packages/{HANDLE}/{}", start + 10 + i);
        store.put(BUCKET, &pointer, later.as_str());
    }
    let reader = reader(store);
    for (i, name) in names.iter().enumerate() {
        let time = jiff::Timestamp::from_second((start + i as u64) as i64)
            .expect("time")
            .to_string();
        let body = json!({
            "version": "0", "id": format!("burst-{i}"), "detail-type": "package-revision",
            "source": "com.quiltdata", "account": "1", "time": time,
            "region": "us-east-1", "resources": [],
            "detail": {"version": "0.1", "type": "created", "bucket": BUCKET, "handle": HANDLE,
                       "topHash": top_hash(name)}
        });
        let event = PackageEvent::parse(&body.to_string()).expect("event");
        let details = reader.read(&event).await.expect("details");
        match i {
            0 => assert_eq!(details.changes, None, "the first push"),
            _ => assert_eq!(
                details.changes_json()["previous_top_hash"],
                top_hash(names[i - 1]).as_str(),
                "{name}"
            ),
        }
    }
}

/// The event of `name`'s push at `stamp` (epoch seconds).
fn event_at(name: &str, stamp: u64) -> PackageEvent {
    let time = jiff::Timestamp::from_second(stamp as i64)
        .expect("time")
        .to_string();
    let body = json!({
        "version": "0", "id": format!("event-{name}-{stamp}"), "detail-type": "package-revision",
        "source": "com.quiltdata", "account": "1", "time": time,
        "region": "us-east-1", "resources": [],
        "detail": {"version": "0.1", "type": "created", "bucket": BUCKET, "handle": HANDLE,
                   "topHash": top_hash(name)}
    });
    PackageEvent::parse(&body.to_string()).expect("event")
}

/// Revisions pushed at these stamps, as quilt3 lays them out.
fn pushed_at(store: &MemoryStore, pushes: &[(&str, u64)]) {
    push(store, &[]);
    for (name, stamp) in pushes {
        let hash = top_hash(name);
        store.put(BUCKET, &manifest_key(&hash), manifest(name));
        let pointer = format!("{}{stamp}", pointers_prefix(HANDLE));
        store.put(BUCKET, &pointer, hash.as_str());
    }
}

/// A new revision re-pushed unchanged 3 s later; its own event, stamped by EventBridge 2 s after
/// the push (closer to the re-push's pointer), is still that new revision, not a re-push.
#[tokio::test]
async fn a_re_push_right_after_a_new_revision_never_hides_it() {
    let start = 1_704_067_200u64;
    let store = store(4096);
    pushed_at(
        &store,
        &[
            ("first", start),
            ("add_files", start + 30),
            ("add_files", start + 33),
        ],
    );
    let reader = reader(store);
    for delay in [0, 1, 2, 3, 10] {
        let details = reader
            .read(&event_at("add_files", start + 30 + delay))
            .await
            .expect("details");
        assert!(!details.unchanged, "event {delay} s after the push");
        assert_eq!(
            details.changes_json()["previous_top_hash"],
            top_hash("first").as_str(),
            "event {delay} s after the push"
        );
    }
}

/// A re-push long after the revision it repeats (more than the pointer skew) is unchanged.
#[tokio::test]
async fn a_re_push_long_after_the_revision_it_repeats_is_unchanged() {
    let start = 1_704_067_200u64;
    let store = store(4096);
    pushed_at(
        &store,
        &[
            ("first", start),
            ("add_files", start + 30),
            ("add_files", start + 30 + 3_600),
        ],
    );
    let details = reader(store)
        .read(&event_at("add_files", start + 30 + 3_601))
        .await
        .expect("details");
    assert!(details.unchanged);
    assert_eq!(
        details.changes_json()["previous_top_hash"],
        top_hash("add_files").as_str()
    );
}

// ------------------------------------------------------------------ the memory budget

/// A quilt3-shaped manifest of `files` files, about 200 bytes a line (the header is the
/// `first` fixture's: stage dev).
fn big_manifest(files: usize, salt: &str) -> String {
    let mut text = manifest("first").lines().next().expect("header").to_owned();
    text.push('\n');
    for i in 0..files {
        text.push_str(&format!(
            r#"{{"logical_key": "data/{salt}/file-{i:06}.csv", "physical_keys": ["s3://{BUCKET}/data/{salt}/file-{i:06}.csv"], "size": {i}, "hash": {{"type": "SHA256", "value": "{i:064x}"}}, "meta": {{}}}}"#
        ));
        text.push('\n');
    }
    text
}

/// Puts revisions of `handle` (manifest text, pointer stamp) in `store`; returns their top hashes.
fn revisions(store: &MemoryStore, handle: &str, manifests: &[(&str, u64)]) -> Vec<String> {
    manifests
        .iter()
        .map(|(body, stamp)| {
            let hash = format!("{:064x}", fingerprint(body));
            store.put(BUCKET, &manifest_key(&hash), *body);
            store.put(
                BUCKET,
                &format!("{}{stamp}", pointers_prefix(handle)),
                hash.as_str(),
            );
            hash
        })
        .collect()
}

fn fingerprint(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// The event of `handle`'s push of `hash` at `stamp`.
fn event_of(handle: &str, hash: &str, stamp: u64) -> PackageEvent {
    let time = jiff::Timestamp::from_second(stamp as i64)
        .expect("time")
        .to_string();
    let body = json!({
        "version": "0", "id": format!("event-{handle}-{stamp}"), "detail-type": "package-revision",
        "source": "com.quiltdata", "account": "1", "time": time,
        "region": "us-east-1", "resources": [],
        "detail": {"version": "0.1", "type": "created", "bucket": BUCKET, "handle": handle,
                   "topHash": hash}
    });
    PackageEvent::parse(&body.to_string()).expect("event")
}

fn budgeted<S: PackageStore>(store: S, budget_bytes: u64) -> DetailsReader<S> {
    DetailsReader::new(
        store,
        ManifestLimits::default(),
        CacheLimits::new(8, 64),
        None,
    )
    .with_memory_budget(MemoryBudget::new(budget_bytes))
}

const STAMP: u64 = 1_704_067_200;

#[tokio::test]
async fn a_manifest_larger_than_the_whole_budget_says_so_at_once() {
    let store = MemoryStore::yielding(16 * 1024);
    let body = big_manifest(1_000, "big");
    assert!(body.len() > 150_000, "{}", body.len());
    let hashes = revisions(&store, "team/big", &[(&body, STAMP)]);
    let reader = budgeted(store, 100 * 1024);
    let details = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        reader.read(&event_of("team/big", &hashes[0], STAMP)),
    )
    .await
    .expect("no wait for a budget that can never be enough")
    .expect("details, not an error");
    let error = details.package.reason().expect("package.error");
    assert!(error.contains(&manifest_key(&hashes[0])), "{error}");
    assert!(error.contains("s3.memory_megabytes"), "{error}");
    assert_eq!(details.package_json()["files"], 0, "nothing read");
}

/// A store that logs which manifest's chunks it hands over, in order.
struct Logged {
    store: MemoryStore,
    log: Arc<Mutex<Vec<String>>>,
}

struct LoggingSink<'a> {
    inner: &'a mut dyn ReadSink,
    log: Arc<Mutex<Vec<String>>>,
    key: String,
}

impl ReadSink for LoggingSink<'_> {
    fn size(&mut self, bytes: u64) -> bool {
        self.inner.size(bytes)
    }

    fn chunk(&mut self, chunk: &[u8]) -> bool {
        self.log
            .lock()
            .expect("log")
            .push(format!("chunk {}", self.key));
        self.inner.chunk(chunk)
    }
}

impl PackageStore for Logged {
    async fn read(
        &self,
        object: &ObjectRef,
        max_bytes: Option<u64>,
        sink: &mut dyn ReadSink,
    ) -> Result<(), StoreError> {
        let mut logging = LoggingSink {
            inner: sink,
            log: Arc::clone(&self.log),
            key: object.key.clone(),
        };
        self.store.read(object, max_bytes, &mut logging).await
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

/// Two events whose manifests fit the budget one at a time: the second is read only once the
/// first event's details are made (its summary is held until then), never beside it.
#[tokio::test]
async fn events_wait_for_the_budget_instead_of_reading_beside_each_other() {
    let store = MemoryStore::yielding(8 * 1024);
    let one = big_manifest(600, "one");
    let two = big_manifest(600, "two");
    let first = revisions(&store, "team/one", &[(&one, STAMP)]);
    let second = revisions(&store, "team/two", &[(&two, STAMP)]);
    let log = Arc::new(Mutex::new(Vec::new()));
    let reader = budgeted(
        Logged {
            store,
            log: Arc::clone(&log),
        },
        (one.len() + one.len() / 2) as u64,
    );
    let done = |name: &'static str, log: Arc<Mutex<Vec<String>>>| {
        move |details: Result<Details, StoreError>| {
            log.lock().expect("log").push(format!("done {name}"));
            details.expect("details")
        }
    };
    let (a, b) = tokio::join!(
        async {
            done("one", Arc::clone(&log))(
                reader.read(&event_of("team/one", &first[0], STAMP)).await,
            )
        },
        async {
            done("two", Arc::clone(&log))(
                reader.read(&event_of("team/two", &second[0], STAMP)).await,
            )
        },
    );
    assert_eq!(a.package_json()["files"], 600);
    assert_eq!(b.package_json()["files"], 600);
    assert_eq!(
        reader.memory_budget().map(MemoryBudget::in_use),
        Some(0),
        "every reservation given back"
    );
    let log = log.lock().expect("log").clone();
    let position = |line: &str| log.iter().position(|l| l == line).expect(line);
    let chunks = |hash: &str| {
        let line = format!("chunk {}", manifest_key(hash));
        log.iter()
            .enumerate()
            .filter(|(_, l)| **l == line)
            .map(|(i, _)| i)
            .collect::<Vec<usize>>()
    };
    let (one_chunks, two_chunks) = (chunks(&first[0]), chunks(&second[0]));
    assert!(!one_chunks.is_empty() && !two_chunks.is_empty(), "{log:#?}");
    let apart = one_chunks.iter().all(|&i| i < position("done one"))
        && two_chunks.iter().all(|&i| i > position("done one"))
        || two_chunks.iter().all(|&i| i < position("done two"))
            && one_chunks.iter().all(|&i| i > position("done two"));
    assert!(apart, "read beside each other: {log:#?}");
}

/// The previous revision's manifest fits the budget alone but not beside the current one: the
/// package is whole, only `changes` are missing, and say why.
#[tokio::test]
async fn a_previous_manifest_too_large_beside_the_current_one_costs_only_the_changes() {
    let store = MemoryStore::new(16 * 1024);
    let previous = big_manifest(600, "a");
    let current = big_manifest(700, "a");
    let hashes = revisions(
        &store,
        "team/grown",
        &[(&previous, STAMP), (&current, STAMP + 60)],
    );
    let reader = budgeted(store, (current.len() + previous.len() / 2) as u64);
    let details = reader
        .read(&event_of("team/grown", &hashes[1], STAMP + 60))
        .await
        .expect("details");
    assert_eq!(
        details.package_json()["error"],
        Value::Null,
        "{}",
        details.package_json()
    );
    assert_eq!(details.package_json()["files"], 700);
    assert_eq!(
        details.changes_json()["previous_top_hash"],
        hashes[0].as_str()
    );
    let changes = details.changes_json();
    let error = changes["error"].as_str().expect("changes.error");
    assert!(
        error.contains("previous revision") && error.contains("s3.memory_megabytes"),
        "{error}"
    );
}

/// A store whose read of one key, once the reader wants its body, hands the first chunk and
/// then never another (a stalled connection).
struct Stalling {
    store: MemoryStore,
    stall: String,
}

/// Forwards the size and the first chunk, then stops.
struct FirstChunk<'a> {
    inner: &'a mut dyn ReadSink,
    wanted: bool,
    chunks: usize,
}

impl ReadSink for FirstChunk<'_> {
    fn size(&mut self, bytes: u64) -> bool {
        self.wanted = self.inner.size(bytes);
        self.wanted
    }

    fn chunk(&mut self, chunk: &[u8]) -> bool {
        self.chunks += 1;
        self.chunks == 1 && self.inner.chunk(chunk)
    }
}

impl PackageStore for Stalling {
    async fn read(
        &self,
        object: &ObjectRef,
        max_bytes: Option<u64>,
        sink: &mut dyn ReadSink,
    ) -> Result<(), StoreError> {
        if object.key != self.stall {
            return self.store.read(object, max_bytes, sink).await;
        }
        let mut first = FirstChunk {
            inner: sink,
            wanted: false,
            chunks: 0,
        };
        self.store.read(object, max_bytes, &mut first).await?;
        if first.wanted {
            std::future::pending::<()>().await;
        }
        Ok(())
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

/// A message does not wait for the budget forever (its visibility is renewed while it waits):
/// after a while its details fail transiently, so it is retried later with backoff.
#[tokio::test(start_paused = true)]
async fn a_message_that_waits_too_long_for_the_budget_is_retried_later() {
    let store = MemoryStore::new(8 * 1024);
    let one = big_manifest(600, "one");
    let two = big_manifest(600, "two");
    let first = revisions(&store, "team/one", &[(&one, STAMP)]);
    let second = revisions(&store, "team/two", &[(&two, STAMP)]);
    let reader = Arc::new(budgeted(
        Stalling {
            store,
            stall: manifest_key(&first[0]),
        },
        (one.len() + one.len() / 2) as u64,
    ));
    let stuck = {
        let reader = Arc::clone(&reader);
        let event = event_of("team/one", &first[0], STAMP);
        tokio::spawn(async move { reader.read(&event).await })
    };
    // Let the first event take the budget and stall in its read.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let started = tokio::time::Instant::now();
    let err = reader
        .read(&event_of("team/two", &second[0], STAMP))
        .await
        .expect_err("no budget in time");
    assert_eq!(err.kind, StoreFailureKind::Transient, "{err}");
    assert!(err.to_string().contains("s3.memory_megabytes"), "{err}");
    assert!(started.elapsed() >= MEMORY_WAIT, "{:?}", started.elapsed());
    stuck.abort();
}
