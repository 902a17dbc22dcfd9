//! Describing a table holds memory bounded by what was read, not by what it inflates to: a
//! small `.csv.gz` whose rows are counted may hold one line of tens of MiB, and counting it
//! must not allocate that line. Peak heap measured with a global allocator wrapper, so this
//! file is its own test binary.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use quilt_notify::domain::table::{
    Next, TableFormat, TableLimits, TableRead, FOOTER_MEMORY_FACTOR, ROW_COUNT_BYTES,
};

struct Peak;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

// SAFETY: forwards to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Peak {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        grew(new_size);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Peak = Peak;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

/// The peak heap, over what was live before, while `file` is described whole.
fn peak_while_described(format: TableFormat, file: &[u8]) -> (usize, Option<u64>) {
    let mut read = TableRead::new(format, file.len() as u64, TableLimits::default());
    let _ = read.first();
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let next = read.feed(file);
    let peak = PEAK.load(Ordering::Relaxed) - before;
    match next {
        Ok(Next::Done(table)) => (peak, table.rows),
        other => panic!("not described: {other:?}"),
    }
}

#[test]
fn counting_the_rows_of_a_gzip_csv_does_not_hold_its_longest_line() {
    // A header, then one 48 MiB line: 48 KiB compressed, under the 64 MiB inflation cap.
    let mut csv = b"station,note\n1,".to_vec();
    csv.resize(csv.len() + 48 * 1024 * 1024, b'x');
    csv.extend_from_slice(b"\n2,short\n");
    let gz = gzip(&csv);
    drop(csv);
    assert!(
        gz.len() as u64 <= ROW_COUNT_BYTES,
        "read whole: {} bytes",
        gz.len()
    );

    let (peak, rows) = peak_while_described(TableFormat::Csv { gzip: true }, &gz);
    assert_eq!(rows, Some(2));
    assert!(peak < 1024 * 1024, "peak heap {peak} bytes");
}

#[test]
fn a_wide_parquet_footer_is_read_and_decoded_within_the_memory_the_worker_reserves_for_it() {
    use std::io::Read;
    // pyarrow's 2,000-column file (tests/data/tables, gzip-compressed in the repository).
    let gz: &[u8] = include_bytes!("data/tables/wide.parquet.gz");
    let mut file = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut file)
        .expect("gunzip");
    let footer = u32::from_le_bytes(file[file.len() - 8..file.len() - 4].try_into().expect("4"));

    let (peak, rows) = peak_while_described(TableFormat::Parquet, &file);
    assert!(rows.is_some());
    // The footer's bytes (the worker's read buffer), and what decoding them took on top.
    let held = footer as u64 + peak as u64;
    assert!(
        held <= FOOTER_MEMORY_FACTOR * u64::from(footer),
        "{held} bytes for a {footer}-byte footer: the worker reserves {FOOTER_MEMORY_FACTOR}×"
    );
}
