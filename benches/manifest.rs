//! Manifest benchmarks (targets from issue 12): what one enriched event costs the worker in CPU
//! for a 10-file package (≤ 1 ms) and for a 100,000-file package (summarized and diffed in
//! ≤ 2 s, peak RSS ≤ 100 MB). The lines are generated here in quilt3 8.0's format.
//!
//! "One event" = read the current manifest line by line into a summary, diff it against the
//! previous revision's summary (which the worker's cache holds), and build `package` and
//! `changes`. Before the timings, a streamed run of the 100,000-file case prints the summary's
//! heap estimate and the process's peak RSS (Linux: /proc/self/status VmHWM, reset first).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use quilt_notify::domain::changes::{changes_json, CatalogLinks, Revision};
use quilt_notify::domain::manifest::{
    ContentHash, ManifestLimits, ManifestReader, ManifestSummary,
};

mod common;
use common::hash_b64;

const HEADER: &str = r#"{"version": "v0", "user_meta": {"stage": "prod", "owner": "data-team", "tags": ["raw", "intl"]}, "message": "Nightly load", "workflow": {"id": "release", "config": "s3://bench-bucket/.quilt/workflows/config.yml"}}"#;

/// Entry line `i` of a package of `files` files spread over 50 top-level folders; `revision`
/// changes a few sizes and hashes (1 in 100 files modified).
fn entry_line(i: usize, revision: u64, out: &mut String) {
    use std::fmt::Write;
    let folder = i % 50;
    let modified = revision > 0 && i % 100 == 7;
    let size = 1_000 + (i as u64 % 977) + if modified { 13 } else { 0 };
    let seed = i as u64 * 2 + u64::from(modified);
    out.clear();
    let _ = write!(
        out,
        r#"{{"logical_key": "folder-{folder:02}/part/file-{i:07}.parquet", "physical_keys": ["s3://bench-bucket/team/bench/folder-{folder:02}/part/file-{i:07}.parquet?versionId=3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo"], "size": {size}, "hash": {{"type": "sha2-256-chunked", "value": "{}"}}, "meta": {{}}}}"#,
        hash_b64(seed)
    );
}

/// The lines of one revision: the previous one has `files - files / 100` of its files (the
/// current one adds 1 %), and 1 % of the shared ones are modified.
fn lines(files: usize, revision: u64) -> Vec<String> {
    let count = if revision == 0 {
        files - files / 100
    } else {
        files
    };
    let mut out = vec![HEADER.to_owned()];
    for i in 0..count {
        let mut line = String::new();
        entry_line(i, revision, &mut line);
        out.push(line);
    }
    out
}

fn summarize(lines: &[String]) -> ManifestSummary {
    let mut reader = ManifestReader::new(ManifestLimits::default());
    for line in lines {
        if reader.feed_line(line.as_bytes()).is_err() {
            break;
        }
    }
    reader.finish()
}

fn event(previous: &ManifestSummary, current: &[String], links: &CatalogLinks) -> usize {
    let summary = summarize(current);
    let package = summary.package_json(Some("# Bench\n"));
    let changes = changes_json(
        Some(Revision {
            top_hash: "previous",
            summary: previous,
        }),
        Revision {
            top_hash: "current",
            summary: &summary,
        },
        Some(links),
    );
    package.as_object().map_or(0, |o| o.len()) + changes.as_object().map_or(0, |o| o.len())
}

/// Peak RSS in kB (VmHWM), after resetting it when `reset`; None off Linux.
fn peak_rss_kb(reset: bool) -> Option<u64> {
    if reset {
        let _ = std::fs::write("/proc/self/clear_refs", "5");
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The 100,000-file event with the lines streamed (never all in memory), as the S3 adapter
/// will feed them: prints time, heap estimate and peak RSS.
fn report_streamed(files: usize) {
    let start_rss = peak_rss_kb(true);
    let started = std::time::Instant::now();
    let mut line = String::new();
    let mut read = |revision: u64| {
        let mut reader = ManifestReader::new(ManifestLimits::default());
        let _ = reader.feed_line(HEADER.as_bytes());
        let count = if revision == 0 {
            files - files / 100
        } else {
            files
        };
        for i in 0..count {
            entry_line(i, revision, &mut line);
            let _ = reader.feed_line(line.as_bytes());
        }
        reader.finish()
    };
    let previous = read(0);
    let current = read(1);
    let links = CatalogLinks::new("catalog.example.com", "bench-bucket", "team/bench");
    let changes = changes_json(
        Some(Revision {
            top_hash: "previous",
            summary: &previous,
        }),
        Revision {
            top_hash: "current",
            summary: &current,
        },
        Some(&links),
    );
    let elapsed = started.elapsed();
    assert!(
        current
            .entries()
            .iter()
            .all(|e| matches!(e.hash, ContentHash::Sha256Chunked(_))),
        "the generated hashes decode as quilt3's"
    );
    eprintln!(
        "manifest/streamed/{files}: both revisions read + diffed in {elapsed:?}; \
         summary heap ≈ {:.1} MB each; peak RSS {:?} kB (at start {:?} kB); \
         added {} modified {} removed {}",
        current.heap_bytes() as f64 / 1e6,
        peak_rss_kb(false),
        start_rss,
        changes["added"]["count"],
        changes["modified"]["count"],
        changes["removed"]["count"],
    );
}

fn benches(c: &mut Criterion) {
    report_streamed(100_000);
    let links = CatalogLinks::new("catalog.example.com", "bench-bucket", "team/bench");
    let mut group = c.benchmark_group("manifest");
    for files in [10usize, 100_000] {
        let previous_lines = lines(files, 0);
        let current_lines = lines(files, 1);
        let previous = summarize(&previous_lines);
        let current = summarize(&current_lines);
        if files > 1_000 {
            group.sample_size(10);
        }
        group.throughput(Throughput::Elements(files as u64));
        group.bench_with_input(
            BenchmarkId::new("summarize", files),
            &current_lines,
            |b, lines| b.iter(|| summarize(black_box(lines))),
        );
        group.bench_with_input(BenchmarkId::new("diff", files), &current, |b, current| {
            b.iter(|| {
                changes_json(
                    Some(Revision {
                        top_hash: "previous",
                        summary: &previous,
                    }),
                    Revision {
                        top_hash: "current",
                        summary: black_box(current),
                    },
                    Some(&links),
                )
            })
        });
        group.bench_with_input(
            BenchmarkId::new("event", files),
            &current_lines,
            |b, lines| b.iter(|| event(&previous, black_box(lines), &links)),
        );
    }
    group.finish();
}

criterion_group!(manifest, benches);
criterion_main!(manifest);
