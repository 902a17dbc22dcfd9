//! Package details benchmarks (issue 12): what `DetailsReader::read` costs per event for a
//! 10-file and a 100,000-file package, and what it adds to the whole pipeline.
//! `cargo bench --bench details`; the numbers are in docs/performance.md ("Package details").
//!
//! Revisions are laid out in a [`MemoryStore`] as quilt3 lays them out (manifest at
//! `.quilt/packages/<top hash>`, pointers `.quilt/named_packages/<handle>/<epoch>` and `latest`
//! holding the top hash, a root README.md), one push a minute. The manifest lines have the shape
//! of quilt3 8.0's (tests/data/quilt/first.jsonl). The current revision differs from the previous
//! one by about 1 %: removed, modified and added files, at least one of each.
//!
//! Three variants of one read:
//! - `cold`: no cache (`cache_size` 0), both manifests are read and parsed;
//! - `new_push`: the previous revision's summary is cached (it was the previous event's), the
//!   current manifest is read and parsed — a push's event in steady state;
//! - `warm`: both summaries cached (a redelivered event): pointers, README and the diff only.
//!
//! In bench mode (`--bench`), before the timings, two one-shot measurements go to stderr:
//! 1. the 100,000-file event read once with no cache, its manifests streamed from a store that
//!    generates them (nothing held whole): wall and CPU time, manifest bytes, and the process's
//!    peak RSS (VmHWM), measured first, before anything else in the process allocates;
//! 2. a burst of 100 pushes to one package, read in push order through one reader with
//!    `[s3] cache_size` from config/default.toml: cache hits and misses, and GetObject calls
//!    per event. The burst also runs (asserting only) under `cargo test --benches`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use quilt_notify::adapters::memory::store::MemoryStore;
use quilt_notify::domain::details::PackageRead;
use quilt_notify::domain::event::PackageEvent;
use quilt_notify::domain::manifest::{ManifestLimits, ManifestReader};
use quilt_notify::domain::render::template_data;
use quilt_notify::domain::revision::{manifest_key, ObjectRef};
use quilt_notify::ports::{DetailsSource, DetailsWanted, DynDetailsSource};
use quilt_notify::ports::{PackageStore, ReadSink, StoreError};
use quilt_notify::worker::dedupe::HandledEvents;
use quilt_notify::worker::details::{CacheLimits, DetailsReader, MemoryBudget};
use quilt_notify::worker::outcome::Outcome;
use quilt_notify::worker::rate::RateLimiter;
use quilt_notify::worker::{Instruments, Pipeline, PipelineParts};
use tokio::runtime::Runtime;

mod common;
use common::{hash_b64, renderer, routes, NoopMailer};

const BUCKET: &str = "bench-bucket";
const HANDLE: &str = "team/bench";
const CATALOG: &str = "catalog.example.com";
/// The first push's pointer stamp (2024-01-01T00:00:00Z); later pushes follow a minute apart.
const FIRST_PUSH: u64 = 1_704_067_200;
/// Bytes per chunk handed to the reader, about what an S3 response body's frames are.
const CHUNK: usize = 16 * 1024;
const README: &str = "# Bench\n\nA package made by benches/details.rs.\n";

fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// `[s3] cache_size` from config/default.toml: the reader's cache as deployed.
fn default_cache_size() -> usize {
    default_s3("cache_size")
}

/// A number of the `[s3]` section of config/default.toml.
fn default_s3(key: &str) -> usize {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
    let text = std::fs::read_to_string(path).expect("config/default.toml");
    let s3 = text.split("\n[s3]").nth(1).expect("[s3] section");
    let s3 = s3.split("\n[").next().unwrap_or(s3);
    s3.lines()
        .filter_map(|line| line.trim().strip_prefix(key))
        .find_map(|rest| rest.trim().strip_prefix('=')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("[s3] {key}"))
}

/// A top hash (64 hex digits) for revision `n` of the package of `files` files.
fn top_hash(files: usize, n: u64) -> String {
    let mut x = (files as u64) << 20 ^ n ^ 0x5DEE_CE66_D1CE_4E5B;
    let mut out = String::with_capacity(64);
    for _ in 0..4 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let _ = write!(out, "{x:016x}");
    }
    out
}

fn header(message: &str) -> String {
    format!(
        r#"{{"version": "v0", "user_meta": {{"stage": "prod", "owner": "data-team", "tags": ["raw"]}}, "message": "{message}"}}"#
    )
}

/// Entry line of file `id` (0 is the root README.md), in quilt3's format; `modified` changes
/// its size and hash. Keys sort as the ids do, 1,000 files per folder.
fn entry_line(id: usize, modified: bool, out: &mut String) {
    let key = if id == 0 {
        "README.md".to_owned()
    } else {
        format!("data/{:03}/file-{id:07}.csv", id / 1_000)
    };
    let size = if id == 0 {
        README.len() as u64
    } else {
        1_000 + (id as u64 % 977) + if modified { 13 } else { 0 }
    };
    let seed = id as u64 * 2 + u64::from(modified);
    let _ = write!(
        out,
        r#"{{"logical_key": "{key}", "physical_keys": ["s3://{BUCKET}/{HANDLE}/{key}"], "size": {size}, "hash": {{"type": "sha2-256-chunked", "value": "{}"}}, "meta": {{}}}}"#,
        hash_b64(seed)
    );
    out.push('\n');
}

/// The files (id, modified) of the previous (`current` false) or current revision of a package
/// of `files` files: the current one removes the ids ≡ 3 (mod 100), modifies those ≡ 7 and adds
/// as many new ones, 1 % each (at least one).
fn revision_files(files: usize, current: bool) -> impl Iterator<Item = (usize, bool)> {
    let added = if current { (files / 100).max(1) } else { 0 };
    (0..files)
        .filter(move |i| !(current && i % 100 == 3))
        .map(move |i| (i, current && i % 100 == 7))
        .chain((files..files + added).map(|i| (i, false)))
}

fn manifest(message: &str, entries: impl Iterator<Item = (usize, bool)>) -> String {
    let mut out = header(message);
    out.push('\n');
    for (id, modified) in entries {
        entry_line(id, modified, &mut out);
    }
    out
}

/// The event of the push stamped `stamp`.
fn event(top_hash: &str, stamp: u64) -> PackageEvent {
    event_in(HANDLE, top_hash, stamp)
}

/// The event of a push to `handle` stamped `stamp`.
fn event_in(handle: &str, top_hash: &str, stamp: u64) -> PackageEvent {
    let time = jiff::Timestamp::from_second(stamp as i64)
        .expect("stamp")
        .to_string();
    let body = serde_json::json!({
        "version": "0", "id": format!("event-{top_hash}"), "detail-type": "package-revision",
        "source": "com.quiltdata", "account": "012345678901", "time": time,
        "region": "us-east-1", "resources": [],
        "detail": {"version": "0.1", "type": "created", "bucket": BUCKET, "handle": handle,
                   "topHash": top_hash}
    });
    PackageEvent::parse(&body.to_string()).expect("event")
}

fn pointer_key(stamp: u64) -> String {
    format!(".quilt/named_packages/{HANDLE}/{stamp}")
}

/// Pushes `(top hash, manifest)` revisions in order, `spacing` seconds apart, as quilt3 does:
/// the manifest, then the pointers. The README goes first. Returns each push's stamp.
fn push(store: &MemoryStore, revisions: &[(String, String)], spacing: u64) -> Vec<u64> {
    store.put(BUCKET, &format!("{HANDLE}/README.md"), README);
    let mut stamps = Vec::new();
    for (i, (hash, body)) in revisions.iter().enumerate() {
        let stamp = FIRST_PUSH + spacing * i as u64;
        store.put(BUCKET, &manifest_key(hash), body.as_str());
        for key in [
            pointer_key(stamp),
            format!(".quilt/named_packages/{HANDLE}/latest"),
        ] {
            store.put(BUCKET, &key, hash.as_str());
        }
        stamps.push(stamp);
    }
    stamps
}

/// Two revisions of a package of `files` files in a store: the store, the previous and the
/// current revision's events, and the current manifest's size in bytes.
fn two_revisions(files: usize) -> (MemoryStore, PackageEvent, PackageEvent, usize) {
    let revisions = [false, true].map(|current| {
        let message = if current { "Current" } else { "Previous" };
        (
            top_hash(files, u64::from(current)),
            manifest(message, revision_files(files, current)),
        )
    });
    let store = MemoryStore::new(CHUNK);
    let stamps = push(&store, &revisions, 60);
    let bytes = revisions[1].1.len();
    let previous = event(&revisions[0].0, stamps[0]);
    let current = event(&revisions[1].0, stamps[1]);
    (store, previous, current, bytes)
}

fn reader<S: PackageStore>(store: S, cache_size: usize) -> DetailsReader<S> {
    DetailsReader::new(
        store,
        ManifestLimits::default(),
        CacheLimits::new(cache_size, 64),
        Some(CATALOG.to_owned()),
    )
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Checks what a read of the current revision of `files` files must say.
fn check(details: &quilt_notify::worker::details::Details, files: usize) {
    let changed = (files / 100).max(1) as u64;
    let diff = details
        .changes
        .as_ref()
        .map(|c| c.diff.as_ref())
        .expect("changes")
        .expect("a whole diff");
    for (kind, count) in [
        ("added", diff.added.count),
        ("removed", diff.removed.count),
        ("modified", diff.modified.count),
    ] {
        assert_eq!(count, changed, "{kind}");
    }
    let PackageRead::Complete(package) = &details.package else {
        panic!("incomplete: {:?}", details.package.reason());
    };
    assert_eq!(package.files, files as u64);
    assert!(package.readme.is_some(), "README read");
}

// ---------------------------------------------------------------------------------------------
// One-shot measurements (stderr).

/// Generates manifests as they are read, in chunks, so that none is ever held whole (as an S3
/// response body is streamed); everything else comes from a [`MemoryStore`]. Like S3, it says a
/// manifest's size before its body, and hands each chunk on a later poll, so that concurrent
/// reads interleave as they do over the network.
struct StreamingStore {
    small: MemoryStore,
    /// Manifest key → (files, current revision).
    manifests: HashMap<String, (usize, bool)>,
    /// Each manifest's size, by (files, current revision).
    sizes: HashMap<(usize, bool), u64>,
    bytes_served: Arc<AtomicU64>,
    /// Bytes of the manifests being streamed now, and the most at once.
    streaming: Arc<Streaming>,
}

#[derive(Default)]
struct Streaming {
    now: AtomicU64,
    peak: AtomicU64,
}

/// Counts a manifest as streaming while it lives.
struct StreamingGuard<'a>(&'a Streaming, u64);

impl<'a> StreamingGuard<'a> {
    fn new(streaming: &'a Streaming, bytes: u64) -> Self {
        let now = streaming.now.fetch_add(bytes, Ordering::Relaxed) + bytes;
        streaming.peak.fetch_max(now, Ordering::Relaxed);
        Self(streaming, bytes)
    }
}

impl Drop for StreamingGuard<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(self.1, Ordering::Relaxed);
    }
}

impl StreamingStore {
    /// A store generating these manifests (key → (files, current revision)).
    fn new(small: MemoryStore, manifests: HashMap<String, (usize, bool)>) -> Self {
        let mut sizes = HashMap::new();
        for &shape in manifests.values() {
            sizes.entry(shape).or_insert_with(|| {
                let (files, current) = shape;
                let mut line = String::new();
                let mut bytes = header(if current { "Current" } else { "Previous" }).len() + 1;
                for (id, modified) in revision_files(files, current) {
                    line.clear();
                    entry_line(id, modified, &mut line);
                    bytes += line.len();
                }
                bytes as u64
            });
        }
        Self {
            small,
            manifests,
            sizes,
            bytes_served: Arc::default(),
            streaming: Arc::default(),
        }
    }
}

impl PackageStore for StreamingStore {
    async fn read(
        &self,
        object: &ObjectRef,
        max_bytes: Option<u64>,
        sink: &mut dyn ReadSink,
    ) -> Result<(), StoreError> {
        let Some(&(files, current)) = self.manifests.get(&object.key) else {
            return self.small.read(object, max_bytes, sink).await;
        };
        let size = self.sizes.get(&(files, current)).copied().unwrap_or(0);
        if !sink.size(size) {
            return Ok(());
        }
        let _streaming = StreamingGuard::new(&self.streaming, size);
        let mut buffer = header(if current { "Current" } else { "Previous" });
        buffer.push('\n');
        let mut served = 0;
        for (id, modified) in revision_files(files, current) {
            entry_line(id, modified, &mut buffer);
            if buffer.len() >= CHUNK {
                served += buffer.len();
                if !sink.chunk(buffer.as_bytes()) {
                    buffer.clear();
                    break;
                }
                buffer.clear();
                tokio::task::yield_now().await;
            }
        }
        if !buffer.is_empty() {
            served += buffer.len();
            sink.chunk(buffer.as_bytes());
        }
        self.bytes_served
            .fetch_add(served as u64, Ordering::Relaxed);
        Ok(())
    }

    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        max_keys: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.small.list(bucket, prefix, max_keys).await
    }
}

/// (VmHWM, VmRSS) in kB; VmHWM is reset to the current RSS first when `reset`.
fn rss_kb(reset: bool) -> (u64, u64) {
    if reset {
        let _ = std::fs::write("/proc/self/clear_refs", "5");
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// This process's user + system CPU time.
fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// One read of the `files`-file event with no cache, manifests streamed: wall and CPU time,
/// manifest bytes, peak RSS. Run it first: VmHWM is the whole process's.
fn report_large(files: usize) {
    let (start_hwm, start_rss) = rss_kb(false);
    let small = MemoryStore::new(CHUNK);
    let revisions: Vec<(String, String)> = [false, true]
        .iter()
        .map(|&current| (top_hash(files, u64::from(current)), String::new()))
        .collect();
    let stamps = push(&small, &revisions, 60);
    let manifests = revisions
        .iter()
        .zip([false, true])
        .map(|((hash, _), current)| (manifest_key(hash), (files, current)))
        .collect();
    let store = StreamingStore::new(small, manifests);
    let bytes_served = Arc::clone(&store.bytes_served);
    let event = event(&revisions[1].0, stamps[1]);
    let runtime = runtime();

    // What generating the lines alone costs, to take off the read's CPU time.
    let (generate_cpu, manifest_bytes) = {
        let cpu = cpu_time();
        let mut bytes = [0u64; 2];
        for (n, current) in [false, true].into_iter().enumerate() {
            let key = manifest_key(&top_hash(files, u64::from(current)));
            let object = ObjectRef {
                bucket: BUCKET.to_owned(),
                key,
                version: None,
            };
            let mut sink = |chunk: &[u8]| {
                bytes[n] += chunk.len() as u64;
                true
            };
            runtime
                .block_on(store.read(&object, None, &mut sink))
                .expect("generated");
        }
        (cpu_time() - cpu, bytes)
    };
    bytes_served.store(0, Ordering::Relaxed);

    let (before_hwm, before_rss) = rss_kb(true);
    let reader = reader(store, 0);
    let cpu = cpu_time();
    let started = Instant::now();
    let details = runtime.block_on(reader.read(&event)).expect("details");
    let wall = started.elapsed();
    let cpu = cpu_time() - cpu;
    let (after_hwm, after_rss) = rss_kb(false);
    check(&details, files);
    drop(details);
    drop(reader);
    // What one cached summary of this manifest keeps (the cache holds summaries, not bytes).
    let summary_heap = {
        let body = manifest("Current", revision_files(files, true));
        let mut lines = ManifestReader::new(ManifestLimits::default());
        for line in body.lines() {
            lines.feed_line(line.as_bytes()).expect("line");
        }
        lines.finish().heap_bytes()
    };
    eprintln!(
        "details/one_shot/{files}_files_cold: read() {wall:.2?} wall, {cpu:.2?} CPU \
         ({:.2?} of it generating the lines; reader ≈ {:.2?}); manifests {} B previous, {} B \
         current ({} B served); VmHWM {after_hwm} kB (VmHWM {before_hwm} / VmRSS {before_rss} kB \
         before the read, {start_hwm} / {start_rss} kB at process start; VmRSS after \
         {after_rss} kB): the read added {} kB; one summary of it ≈ {:.1} MB of heap",
        generate_cpu,
        cpu.saturating_sub(generate_cpu),
        manifest_bytes[0],
        manifest_bytes[1],
        bytes_served.load(Ordering::Relaxed),
        after_hwm.saturating_sub(before_rss),
        summary_heap as f64 / 1e6,
    );
}

/// 100 pushes to one package, `spacing` seconds apart, each adding one file to the previous
/// (10 files first), read in push order by one reader caching `cache_size` summaries.
/// Returns (hits, misses, GetObject calls, events whose changes were found), and prints them
/// when `print`.
fn burst(cache_size: usize, spacing: u64, print: bool) -> (u64, u64, usize, usize) {
    const PUSHES: usize = 100;
    let revisions: Vec<(String, String)> = (0..PUSHES)
        .map(|n| {
            (
                top_hash(7, n as u64),
                manifest(&format!("Push {n}"), (0..10 + n).map(|i| (i, false))),
            )
        })
        .collect();
    let store = Arc::new(MemoryStore::new(CHUNK));
    let stamps = push(&store, &revisions, spacing);
    let mut keys: Vec<String> = revisions.iter().map(|(h, _)| manifest_key(h)).collect();
    let manifest_keys = keys.len();
    keys.extend(stamps.iter().map(|&s| pointer_key(s)));
    keys.push(format!(".quilt/named_packages/{HANDLE}/latest"));
    keys.push(format!("{HANDLE}/README.md"));
    let events: Vec<PackageEvent> = revisions
        .iter()
        .zip(&stamps)
        .map(|((hash, _), &stamp)| event(hash, stamp))
        .collect();
    let reader = reader(Arc::clone(&store), cache_size);
    let runtime = runtime();
    let mut with_changes = 0;
    for (n, event) in events.iter().enumerate() {
        let details = runtime.block_on(reader.read(event)).expect("details");
        if let Some(changes) = &details.changes {
            let added = changes.diff.as_ref().map(|d| d.added.count);
            assert_eq!(added, Ok(1), "push {n}");
            with_changes += 1;
        }
    }
    let reads = |keys: &[String]| -> usize { keys.iter().map(|k| store.reads(k)).sum() };
    let manifest_reads = reads(&keys[..manifest_keys]);
    let pointer_reads = reads(&keys[manifest_keys..manifest_keys + PUSHES + 1]);
    let gets = reads(&keys);
    let (hits, misses) = reader.cache_stats();
    if print {
        let per = |n: usize| n as f64 / PUSHES as f64;
        eprintln!(
            "details/one_shot/burst_{PUSHES}_pushes_{spacing}s_apart_cache_{cache_size}: \
             hits {hits} misses {misses} (hit rate {:.1} %); GetObject {gets} ({:.2} per event: \
             manifests {:.2}, pointers {:.2}, README {:.2}); 1 ListObjectsV2 per event; \
             {with_changes} of {PUSHES} events found their previous revision",
            100.0 * hits as f64 / (hits + misses).max(1) as f64,
            per(gets),
            per(manifest_reads),
            per(pointer_reads),
            per(gets - manifest_reads - pointer_reads),
        );
    }
    (hits, misses, gets, with_changes)
}

/// What [`concurrent_burst`] measured.
struct BurstFigures {
    /// VmHWM after the burst, and VmRSS just before it, in kB.
    peak_kb: u64,
    before_kb: u64,
    wall: Duration,
    /// Most manifest bytes being streamed at once.
    peak_streaming: u64,
    manifest_bytes: u64,
}

/// `events` events at once, each about its own package of `files` files, whose previous and
/// current manifests (neither cached) are streamed through one reader with the deployed cache
/// limits and a memory budget of `budget` bytes (None: no budget). Every event's details are
/// checked. Run after the other one-shots: VmHWM is reset just before it.
fn concurrent_burst(files: usize, events: usize, budget: Option<u64>) -> BurstFigures {
    let small = MemoryStore::new(CHUNK);
    small.put(BUCKET, &format!("{HANDLE}/README.md"), README);
    let mut manifests = HashMap::new();
    let mut burst = Vec::new();
    for p in 0..events as u64 {
        let handle = format!("team/burst-{p:03}");
        let hashes = [0, 1].map(|n| top_hash(files, 1_000 + 2 * p + n));
        for (n, hash) in hashes.iter().enumerate() {
            let stamp = FIRST_PUSH + 60 * n as u64;
            manifests.insert(manifest_key(hash), (files, n == 1));
            let pointer = format!(".quilt/named_packages/{handle}/{stamp}");
            small.put(BUCKET, &pointer, hash.as_str());
        }
        burst.push(event_in(&handle, &hashes[1], FIRST_PUSH + 60));
    }
    let store = StreamingStore::new(small, manifests);
    let manifest_bytes = store.sizes.values().sum();
    let streaming = Arc::clone(&store.streaming);
    let cache = default_cache_size();
    let mut reader = DetailsReader::new(
        store,
        ManifestLimits::default(),
        CacheLimits::new(cache, default_s3("cache_megabytes")),
        Some(CATALOG.to_owned()),
    );
    if let Some(bytes) = budget {
        reader = reader.with_memory_budget(MemoryBudget::new(bytes));
    }
    let reader = Arc::new(reader);
    let runtime = runtime();
    // SAFETY: malloc_trim only returns free memory to the system.
    unsafe {
        libc::malloc_trim(0);
    }
    let (_, before_kb) = rss_kb(true);
    let started = Instant::now();
    runtime.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for event in burst {
            let reader = Arc::clone(&reader);
            set.spawn(async move { reader.read(&event).await });
        }
        while let Some(joined) = set.join_next().await {
            check(&joined.expect("joined").expect("details"), files);
        }
    });
    let wall = started.elapsed();
    let (peak_kb, _) = rss_kb(false);
    if let Some(budget) = reader.memory_budget() {
        assert_eq!(budget.in_use(), 0, "every reservation given back");
    }
    BurstFigures {
        peak_kb,
        before_kb,
        wall,
        peak_streaming: streaming.peak.load(Ordering::Relaxed),
        manifest_bytes,
    }
}

/// The burst with the deployed budget, then without one; printed.
fn report_concurrent_burst(files: usize, events: usize) {
    let megabytes = default_s3("memory_megabytes") as u64;
    for budget in [Some(megabytes << 20), None] {
        let f = concurrent_burst(files, events, budget);
        let name = budget.map_or("no_budget".to_owned(), |_| format!("budget_{megabytes}MiB"));
        let mb = |b: u64| b as f64 / 1e6;
        eprintln!(
            "details/one_shot/concurrent_{events}_events_{files}_files_{name}: {:.2?} wall; \
             VmHWM {} kB ({:.1} MiB; VmRSS {} kB before, +{} kB); manifests being read at once \
             at most {:.1} MB of {:.1} MB in all (two per event, {:.1} MB each); \
             cache_size {}, cache_megabytes {}",
            f.wall,
            f.peak_kb,
            f.peak_kb as f64 / 1024.0,
            f.before_kb,
            f.peak_kb.saturating_sub(f.before_kb),
            mb(f.peak_streaming),
            mb(f.manifest_bytes * events as u64),
            mb(f.manifest_bytes / 2),
            default_cache_size(),
            default_s3("cache_megabytes"),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Criterion.

fn read_benches(c: &mut Criterion) {
    let runtime = runtime();
    let cache_size = default_cache_size();
    let sizes: &[usize] = if bench_mode() { &[10, 100_000] } else { &[10] };
    let mut group = c.benchmark_group("details");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    for &files in sizes {
        let (store, previous, current, _) = two_revisions(files);
        let store = Arc::new(store);
        // Setup per iteration for the large package's new_push: its previous manifest is
        // parsed before each timed read.
        let batch = if files > 1_000 {
            group.sample_size(10);
            group.measurement_time(Duration::from_secs(10));
            BatchSize::PerIteration
        } else {
            BatchSize::SmallInput
        };
        let cold = reader(store.clone(), 0);
        check(
            &runtime.block_on(cold.read(&current)).expect("details"),
            files,
        );
        group.bench_function(format!("read_{files}_files/cold"), |b| {
            b.iter(|| runtime.block_on(cold.read(black_box(&current))))
        });
        group.bench_function(format!("read_{files}_files/new_push"), |b| {
            b.iter_batched(
                || {
                    let fresh = reader(store.clone(), cache_size);
                    runtime.block_on(fresh.read(&previous)).expect("details");
                    fresh
                },
                |fresh| runtime.block_on(fresh.read(black_box(&current))),
                batch,
            )
        });
        let warm = reader(store.clone(), cache_size);
        runtime.block_on(warm.read(&current)).expect("details");
        group.bench_function(format!("read_{files}_files/warm"), |b| {
            b.iter(|| runtime.block_on(warm.read(black_box(&current))))
        });
    }
    group.finish();
}

/// Readers prepared ahead, one per event, in order (criterion's batched setup fills it).
#[derive(Default)]
struct ReaderQueue(std::sync::Mutex<std::collections::VecDeque<DetailsReader<Arc<MemoryStore>>>>);

impl DetailsSource for ReaderQueue {
    async fn details(
        &self,
        event: &PackageEvent,
        _wanted: DetailsWanted,
    ) -> Result<quilt_notify::worker::details::Details, StoreError> {
        let reader = self
            .0
            .lock()
            .expect("queue")
            .pop_front()
            .expect("a prepared reader");
        reader.read(event).await
    }
}

fn pipeline(details: Option<Arc<dyn DynDetailsSource>>) -> Pipeline<NoopMailer> {
    Pipeline::new(PipelineParts {
        routes: routes(BUCKET),
        renderer: renderer(),
        catalog_host: Some(CATALOG.to_owned()),
        default_from: "quilt@example.com".to_owned(),
        contact_list: None,
        mailer: Arc::new(NoopMailer),
        details,
        // A window of zero: every message is new, as in steady state with distinct events.
        handled: HandledEvents::new(Duration::ZERO, 1),
        claims: None,
        limiter: RateLimiter::new(0.0),
        instruments: Instruments::default(),
    })
}

/// The whole pipeline (parse, dedupe, match, details, render, no-op send) for the 10-file
/// package's current revision, without details and with each kind of read.
fn pipeline_benches(c: &mut Criterion) {
    let runtime = runtime();
    let cache_size = default_cache_size();
    let (store, previous, current, _) = two_revisions(10);
    let store = Arc::new(store);
    let message = serde_json::to_string(&serde_json::json!({
        "version": "0", "id": "bench-event", "detail-type": "package-revision",
        "source": "com.quiltdata", "account": "012345678901",
        "time": current.envelope()["time"], "region": "us-east-1", "resources": [],
        "detail": {"version": "0.1", "type": "created", "bucket": BUCKET, "handle": HANDLE,
                   "topHash": current.top_hash()}
    }))
    .expect("message");
    let sent = |pipeline: &Pipeline<NoopMailer>| {
        let (outcome, _) = runtime.block_on(pipeline.process(&message));
        assert_eq!(outcome, Outcome::Sent, "every iteration does the full work");
    };
    let mut group = c.benchmark_group("pipeline_details");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    // Where the pipeline's extra time goes: the template data and render alone.
    let renderer = renderer();
    let details = runtime
        .block_on(reader(store.clone(), 0).read(&current))
        .expect("details");
    for (name, details) in [("no_details", None), ("10_files", Some(&details))] {
        group.bench_function(format!("template_data+render/{name}"), |b| {
            b.iter(|| {
                let data = template_data(
                    black_box(&current),
                    Some(CATALOG),
                    "package-created",
                    details,
                );
                renderer.render("package-created", data)
            })
        });
    }
    let without = pipeline(None);
    sent(&without);
    group.bench_function("no_details", |b| {
        b.iter(|| runtime.block_on(without.process(black_box(&message))))
    });
    let cold = pipeline(Some(Arc::new(reader(store.clone(), 0))));
    sent(&cold);
    group.bench_function("10_files/cold", |b| {
        b.iter(|| runtime.block_on(cold.process(black_box(&message))))
    });
    // One pipeline; each event gets a fresh reader that has read the previous revision.
    let queue = Arc::new(ReaderQueue::default());
    let new_push = pipeline(Some(Arc::clone(&queue) as Arc<dyn DynDetailsSource>));
    group.bench_function("10_files/new_push", |b| {
        b.iter_batched(
            || {
                let fresh = reader(store.clone(), cache_size);
                runtime.block_on(fresh.read(&previous)).expect("details");
                queue.0.lock().expect("queue").push_back(fresh);
            },
            |()| runtime.block_on(new_push.process(black_box(&message))),
            BatchSize::SmallInput,
        )
    });
    let warm = pipeline(Some(Arc::new(reader(store.clone(), cache_size))));
    sent(&warm);
    group.bench_function("10_files/warm", |b| {
        b.iter(|| runtime.block_on(warm.process(black_box(&message))))
    });
    group.finish();
}

/// The one-shot measurements, first (peak RSS is the process's), then the timings.
fn one_shots(_: &mut Criterion) {
    let cache_size = default_cache_size();
    if bench_mode() {
        report_large(100_000);
        for (cache, spacing) in [(cache_size, 60), (0, 60), (cache_size, 1)] {
            burst(cache, spacing, true);
        }
        report_concurrent_burst(100_000, 40);
    }
    // Under `cargo test --benches` too: the cache reads each manifest once in a burst.
    let (hits, misses, _, with_changes) = burst(cache_size, 60, false);
    assert_eq!((hits, misses, with_changes), (99, 100, 99));
    // And the budget bounds what 40 events read at once (2,000 files: 0.5 MB manifests).
    let budget = 2 << 20;
    let within = concurrent_burst(2_000, 40, Some(budget));
    let unbounded = concurrent_burst(2_000, 40, None);
    assert!(
        within.peak_streaming <= budget && unbounded.peak_streaming > 4 * budget,
        "{} / {} bytes at once",
        within.peak_streaming,
        unbounded.peak_streaming
    );
}

criterion_group!(benches, one_shots, read_benches, pipeline_benches);
criterion_main!(benches);
