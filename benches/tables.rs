//! Table benchmarks (issue 22): the CPU `changes.tables` adds to one event, without I/O: each
//! changed file's two versions described from their bytes (a Parquet footer decoded, a CSV
//! header parsed) and compared into the template's entry, for 1, 20 and 50 changed Parquet
//! files (target: ≤ 2 ms CPU for 20), and one 2,000-column footer. The files are the committed
//! pyarrow fixtures (`tests/data/tables`). Before the timings, one decode of the 2,000-column
//! footer prints the process's peak RSS growth (Linux: /proc/self/status VmHWM, reset first).

use std::io::Read;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use quilt_notify::domain::table::{
    ByteRange, Next, Table, TableChange, TableError, TableFormat, TableLimits, TableRead,
};

const V1: &[u8] = include_bytes!("../tests/data/tables/readings_v1.parquet");
const V2: &[u8] = include_bytes!("../tests/data/tables/readings_v2.parquet");
const WIDE_GZ: &[u8] = include_bytes!("../tests/data/tables/wide.parquet.gz");
const STATIONS: &[u8] = include_bytes!("../tests/data/tables/stations.tsv");

fn wide() -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(WIDE_GZ)
        .read_to_end(&mut out)
        .expect("wide.parquet.gz inflates");
    out
}

/// The bytes a store hands for `range` of `file`.
fn slice(file: &[u8], range: ByteRange) -> &[u8] {
    let len = file.len() as u64;
    let (start, end) = match range {
        ByteRange::Span { start, end } => (start.min(len), end.min(len)),
        ByteRange::Suffix(n) => (len.saturating_sub(n), len),
    };
    &file[start as usize..end as usize]
}

/// One version described as the worker does it, the reads served from memory.
fn describe(format: TableFormat, file: &[u8]) -> Result<Table, TableError> {
    let mut read = TableRead::new(format, file.len() as u64, TableLimits::default());
    let mut range = read.first();
    loop {
        match read.feed(slice(file, range))? {
            Next::Done(table) => return Ok(table),
            Next::Read(next) => range = next,
        }
    }
}

/// One event's `changes.tables` for `files` modified Parquet files (v1 → v2 each).
fn event(files: usize) -> Vec<serde_json::Value> {
    (0..files)
        .map(|i| {
            TableChange {
                path: format!("data/part-{i:03}.parquet"),
                format: TableFormat::Parquet,
                before: Some(describe(TableFormat::Parquet, V1)),
                after: describe(TableFormat::Parquet, V2),
            }
            .to_json()
        })
        .collect()
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

fn peak_rss_of_a_wide_footer() {
    let file = wide();
    let (_, before) = rss_kb(true);
    let table = describe(TableFormat::Parquet, &file).expect("wide footer");
    let entry = TableChange {
        path: "data/wide.parquet".to_owned(),
        format: TableFormat::Parquet,
        before: Some(Ok(Table::default())),
        after: Ok(table),
    }
    .to_json();
    let (peak, _) = rss_kb(false);
    println!(
        "tables: 2,000-column footer ({} bytes of file) decoded and compared: peak RSS +{} kB \
         (VmHWM {peak} kB over VmRSS {before} kB before); {} columns listed",
        file.len(),
        peak.saturating_sub(before),
        entry["columns"]["added"].as_array().map_or(0, Vec::len),
    );
    black_box(entry);
}

fn benches(c: &mut Criterion) {
    peak_rss_of_a_wide_footer();
    let mut group = c.benchmark_group("tables");
    for files in [1usize, 20, 50] {
        group.throughput(Throughput::Elements(files as u64));
        group.bench_with_input(BenchmarkId::new("event", files), &files, |b, &n| {
            b.iter(|| black_box(event(n)));
        });
    }
    let file = wide();
    group.throughput(Throughput::Elements(1));
    group.bench_function("footer_2000_columns", |b| {
        b.iter(|| black_box(describe(TableFormat::Parquet, black_box(&file))));
    });
    group.bench_function("footer_4_columns", |b| {
        b.iter(|| black_box(describe(TableFormat::Parquet, black_box(V2))));
    });
    group.bench_function("tsv_header", |b| {
        b.iter(|| {
            black_box(describe(
                TableFormat::Tsv { gzip: false },
                black_box(STATIONS),
            ))
        });
    });
    group.finish();
}

criterion_group!(tables, benches);
criterion_main!(tables);
