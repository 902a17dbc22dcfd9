//! The table readers against real files (pyarrow's and Python's csv module's output, made by
//! `scripts/table_fixtures.py`, with their answers in `tests/data/tables/answers.json`), and
//! against every kind of bad input.

use std::io::Read;

use serde_json::{json, Value};

use super::*;

const READINGS_V1: &[u8] = include_bytes!("../../../tests/data/tables/readings_v1.parquet");
const READINGS_V2: &[u8] = include_bytes!("../../../tests/data/tables/readings_v2.parquet");
const READINGS_V3: &[u8] = include_bytes!("../../../tests/data/tables/readings_v3.parquet");
const TYPES: &[u8] = include_bytes!("../../../tests/data/tables/types.parquet");
const WIDE_GZ: &[u8] = include_bytes!("../../../tests/data/tables/wide.parquet.gz");
const QUOTED: &[u8] = include_bytes!("../../../tests/data/tables/quoted.csv");
const STATIONS_TSV: &[u8] = include_bytes!("../../../tests/data/tables/stations.tsv");
const STATIONS_GZ: &[u8] = include_bytes!("../../../tests/data/tables/stations.csv.gz");
const WIDE_CSV_GZ: &[u8] = include_bytes!("../../../tests/data/tables/wide.csv.gz");
const ANSWERS: &str = include_str!("../../../tests/data/tables/answers.json");

fn inflate(gz: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut out)
        .expect("fixture inflates");
    out
}

/// The bytes a store hands back for `range` of `file` (S3's rules: what exists of a span, all
/// of a file shorter than a suffix).
fn slice(file: &[u8], range: ByteRange) -> &[u8] {
    let len = file.len() as u64;
    let (start, end) = match range {
        ByteRange::Span { start, end } => (start.min(len), end.min(len)),
        ByteRange::Suffix(n) => (len.saturating_sub(n), len),
    };
    &file[start as usize..end.max(start) as usize]
}

/// Reads `file` as the worker will, returning what it gave and the ranges it asked for.
fn read_with(
    format: TableFormat,
    file: &[u8],
    size: u64,
    limits: TableLimits,
) -> (Result<Table, TableError>, Vec<ByteRange>) {
    let mut read = TableRead::new(format, size, limits);
    let mut range = read.first();
    let mut ranges = vec![range];
    loop {
        match read.feed(slice(file, range)) {
            Ok(Next::Done(table)) => return (Ok(table), ranges),
            Ok(Next::Read(next)) => {
                assert!(ranges.len() < 2, "a third read asked for: {ranges:?}");
                range = next;
                ranges.push(next);
            }
            Err(e) => return (Err(e), ranges),
        }
    }
}

fn read(format: TableFormat, file: &[u8]) -> Result<Table, TableError> {
    read_with(format, file, file.len() as u64, TableLimits::default()).0
}

const PARQUET: TableFormat = TableFormat::Parquet;
const CSV: TableFormat = TableFormat::Csv { gzip: false };

fn names(table: &Table) -> Vec<&str> {
    table.columns.iter().map(|c| c.name.as_str()).collect()
}

fn types(table: &Table) -> Vec<&str> {
    table
        .columns
        .iter()
        .map(|c| c.data_type.as_deref().unwrap_or("-"))
        .collect()
}

/// A list in answers.json: whole, or `{"first": [...], "last": x, "count": n}` when long.
fn check_list(ours: &[String], theirs: &Value, what: &str) {
    match theirs {
        Value::Array(items) => {
            let items: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
            assert_eq!(ours, items.as_slice(), "{what}");
        }
        Value::Object(short) => {
            assert_eq!(Some(ours.len() as u64), short["count"].as_u64(), "{what}");
            let first: Vec<&str> = short["first"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            assert_eq!(&ours[..first.len()], first.as_slice(), "{what}");
            assert_eq!(
                ours.last().map(String::as_str),
                short["last"].as_str(),
                "{what}"
            );
        }
        other => panic!("{what}: unexpected answer {other}"),
    }
}

/// Our name for a flat column's type, from what pyarrow says of its Parquet leaf.
fn expected_type(leaf: &Value) -> String {
    let logical = &leaf["logical_type"];
    let unit = |u: &Value| match u.as_str() {
        Some("milliseconds") => "ms",
        Some("microseconds") => "us",
        Some("nanoseconds") => "ns",
        other => panic!("unit {other:?}"),
    };
    let timed = |kind: &str| {
        let utc = logical["isAdjustedToUTC"].as_bool() == Some(true);
        let u = unit(&logical["timeUnit"]);
        if utc {
            format!("{kind}({u}, utc)")
        } else {
            format!("{kind}({u})")
        }
    };
    match logical["Type"].as_str().unwrap_or_default() {
        "None" => match leaf["physical_type"].as_str().unwrap_or_default() {
            "FIXED_LEN_BYTE_ARRAY" => format!("fixed_len_byte_array({})", leaf["length"]),
            physical => physical.to_ascii_lowercase(),
        },
        "String" => "string".into(),
        "Date" => "date".into(),
        "Null" => "null".into(),
        "Float16" => "float16".into(),
        "Int" => format!(
            "{}int{}",
            if logical["isSigned"].as_bool() == Some(true) {
                ""
            } else {
                "u"
            },
            logical["bitWidth"]
        ),
        "Decimal" => format!("decimal({},{})", logical["precision"], logical["scale"]),
        "Timestamp" => timed("timestamp"),
        "Time" => timed("time"),
        other => panic!("no mapping for pyarrow's {other}"),
    }
}

#[test]
fn every_fixture_reads_as_pyarrow_and_pythons_csv_module_say() {
    let answers: Value = serde_json::from_str(ANSWERS).expect("answers.json");
    let files: [(&str, TableFormat, Vec<u8>); 9] = [
        ("readings_v1.parquet", PARQUET, READINGS_V1.to_vec()),
        ("readings_v2.parquet", PARQUET, READINGS_V2.to_vec()),
        ("readings_v3.parquet", PARQUET, READINGS_V3.to_vec()),
        ("types.parquet", PARQUET, TYPES.to_vec()),
        ("wide.parquet.gz", PARQUET, inflate(WIDE_GZ)),
        ("quoted.csv", CSV, QUOTED.to_vec()),
        (
            "stations.tsv",
            TableFormat::Tsv { gzip: false },
            STATIONS_TSV.to_vec(),
        ),
        (
            "stations.csv.gz",
            TableFormat::Csv { gzip: true },
            STATIONS_GZ.to_vec(),
        ),
        (
            "wide.csv.gz",
            TableFormat::Csv { gzip: true },
            WIDE_CSV_GZ.to_vec(),
        ),
    ];
    assert_eq!(
        answers["files"].as_object().map(|f| f.len()),
        Some(files.len()),
        "every fixture is checked"
    );
    for (name, format, bytes) in files {
        let answer = &answers["files"][name];
        let table = read(format, &bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let ours: Vec<String> = table.columns.iter().map(|c| c.name.clone()).collect();
        if format == PARQUET {
            assert_eq!(table.rows, answer["num_rows"].as_u64(), "{name}: rows");
            check_list(&ours, &answer["names"], &format!("{name}: names"));
            // Flat columns: the leaf's logical (else physical) type, as pyarrow reports it.
            let leaves = answer["leaves"]
                .as_array()
                .or_else(|| answer["leaves"]["first"].as_array())
                .expect("leaves");
            for leaf in leaves {
                let path = leaf["path"].as_str().unwrap_or_default();
                if let Some(column) = table.columns.iter().find(|c| c.name == path) {
                    assert_eq!(
                        column.data_type.as_deref(),
                        Some(expected_type(leaf).as_str()),
                        "{name}: {path}"
                    );
                }
            }
            // Nested columns: the same kind as pyarrow's Arrow type.
            let arrow = answer["arrow_types"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for (column, arrow) in table.columns.iter().zip(&arrow) {
                let arrow = arrow.as_str().unwrap_or_default();
                for kind in ["list<", "struct<", "map<"] {
                    if arrow.starts_with(kind) {
                        let ours = column.data_type.as_deref().unwrap_or_default();
                        assert!(ours.starts_with(kind), "{name}: {ours} vs {arrow}");
                    }
                }
            }
        } else {
            // Control characters are replaced in names; the csv module keeps them.
            let header: Vec<String> = match &answer["header"] {
                Value::Array(a) => a
                    .iter()
                    .map(|v| clean_name(v.as_str().unwrap_or_default()))
                    .collect(),
                other => {
                    check_list(&ours, other, &format!("{name}: header"));
                    ours.clone()
                }
            };
            assert_eq!(ours, header, "{name}: header");
            assert_eq!(table.rows, answer["rows"].as_u64(), "{name}: rows");
            assert!(table.columns.iter().all(|c| c.data_type.is_none()));
        }
    }
}

#[test]
fn parquet_types_are_the_logical_type_else_the_physical_one_lower_case() {
    let table = read(PARQUET, TYPES).expect("types.parquet");
    let got: Vec<(&str, &str)> = names(&table).into_iter().zip(types(&table)).collect();
    assert_eq!(
        got,
        [
            ("i8", "int8"),
            ("u16", "uint16"),
            ("i32", "int32"),
            ("u64", "uint64"),
            ("i64", "int64"),
            ("f16", "float16"),
            ("f32", "float"),
            ("f64", "double"),
            ("flag", "boolean"),
            ("text", "string"),
            ("large_text", "string"),
            ("category", "string"),
            ("blob", "byte_array"),
            ("fixed", "fixed_len_byte_array(16)"),
            ("day", "date"),
            ("ts_ms", "timestamp(ms)"),
            ("ts_us_utc", "timestamp(us, utc)"),
            ("ts_ns_tz", "timestamp(ns, utc)"),
            ("t_ms", "time(ms)"),
            ("t_us", "time(us)"),
            ("price", "decimal(10,2)"),
            ("big_price", "decimal(30,4)"),
            ("nothing", "null"),
            ("tags", "list<string>"),
            ("point", "struct<x: double, y: double>"),
            ("attrs", "map<string, int64>"),
            ("events", "list<struct<at: int64, what: string>>"),
            ("matrix", "list<list<int32>>"),
        ]
    );
    assert_eq!(table.rows, Some(3));
}

#[test]
fn a_small_footer_takes_one_read_and_a_large_one_two() {
    let (table, ranges) = read_with(
        PARQUET,
        READINGS_V1,
        READINGS_V1.len() as u64,
        TableLimits::default(),
    );
    assert_eq!(table.map(|t| t.rows), Ok(Some(120)));
    assert_eq!(ranges, [ByteRange::Suffix(PARQUET_FIRST_TAIL)]);

    let wide = inflate(WIDE_GZ);
    let (table, ranges) = read_with(PARQUET, &wide, wide.len() as u64, TableLimits::default());
    let table = table.expect("wide.parquet");
    assert_eq!(table.columns.len(), 2000);
    assert!(table
        .columns
        .iter()
        .all(|c| c.data_type.as_deref() == Some("int8")));
    let answers: Value = serde_json::from_str(ANSWERS).expect("answers.json");
    let footer = answers["files"]["wide.parquet.gz"]["footer_bytes"]
        .as_u64()
        .expect("footer_bytes");
    assert!(footer > PARQUET_FIRST_TAIL);
    assert_eq!(
        ranges,
        [
            ByteRange::Suffix(PARQUET_FIRST_TAIL),
            ByteRange::Suffix(footer + 8)
        ]
    );
}

#[test]
fn a_footer_over_the_limit_is_an_error_without_a_second_read() {
    let wide = inflate(WIDE_GZ);
    let limits = TableLimits {
        max_footer_bytes: 100 * 1024,
    };
    let (table, ranges) = read_with(PARQUET, &wide, wide.len() as u64, limits);
    let Err(TableError::FooterTooLarge { bytes, limit }) = table else {
        panic!("{table:?}")
    };
    assert!(bytes > limit);
    assert_eq!(limit, 100 * 1024);
    assert_eq!(ranges.len(), 1);
    assert_eq!(
        TableError::FooterTooLarge { bytes, limit }.to_string(),
        format!("the Parquet footer is {bytes} bytes, over the limit of 102400 bytes")
    );
}

#[test]
fn a_file_cut_short_at_any_length_is_an_error_never_a_panic() {
    let file = READINGS_V1;
    for len in 0..file.len() {
        let cut = &file[..len];
        let (table, ranges) = read_with(PARQUET, cut, len as u64, TableLimits::default());
        assert!(table.is_err(), "{len} bytes: {table:?}");
        assert!(ranges.len() <= 2);
    }
    assert!(read(PARQUET, file).is_ok());
}

#[test]
fn every_tail_of_a_footer_either_asks_for_the_rest_or_fails() {
    // The last n bytes of a longer file: the reader asks for the whole footer (when the tail
    // holds its length), or says why it cannot.
    let file = READINGS_V2;
    let footer = 944 + 8;
    for n in 0..=file.len() {
        let tail = &file[file.len() - n..];
        match super::parquet::from_tail(tail, false, TableLimits::default()) {
            Ok(super::parquet::Tail::Table(table)) => {
                assert!(n >= footer);
                assert_eq!(table.rows, Some(130));
            }
            Ok(super::parquet::Tail::Need(m)) => {
                assert_eq!(m, footer as u64);
                assert!(n < footer);
            }
            Err(e) => assert!(n < 8, "{n} bytes: {e}"),
        }
    }
}

#[test]
fn flipped_bytes_in_a_footer_never_panic() {
    let file = READINGS_V1;
    let footer = 885 + 8;
    let start = file.len() - footer;
    for at in start..file.len() - 8 {
        for flip in [0x01_u8, 0x80, 0xFF] {
            let mut bad = file.to_vec();
            bad[at] ^= flip;
            // Ok or Err: both are fine, as long as it returns.
            let _ = read(PARQUET, &bad);
        }
    }
}

#[test]
fn random_bytes_are_an_error_for_every_format() {
    let mut rng = fastrand::Rng::with_seed(22);
    for round in 0..300 {
        let len = rng.usize(0..4096);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        // Half of them end like a Parquet file, with a plausible length.
        if round % 2 == 0 && len >= 8 {
            let footer = rng.u32(0..len as u32);
            bytes[len - 8..len - 4].copy_from_slice(&footer.to_le_bytes());
            bytes[len - 4..].copy_from_slice(b"PAR1");
        }
        let _ = read(PARQUET, &bytes);
        let _ = read(TableFormat::Csv { gzip: true }, &bytes);
        let _ = read(TableFormat::Tsv { gzip: false }, &bytes);
    }
}

#[test]
fn not_parquet_and_encrypted_footers_say_so() {
    assert_eq!(
        read(PARQUET, b"id,value\n1,2\n"),
        Err(TableError::NotParquet("no PAR1 at its end".into()))
    );
    assert_eq!(
        read(PARQUET, b"PAR1"),
        Err(TableError::NotParquet(
            "4 bytes, shorter than a Parquet footer".into()
        ))
    );
    let mut encrypted = READINGS_V1.to_vec();
    let n = encrypted.len();
    encrypted[n - 4..].copy_from_slice(b"PARE");
    assert_eq!(read(PARQUET, &encrypted), Err(TableError::Encrypted));
    // A footer length larger than the whole file.
    let mut lying = READINGS_V1.to_vec();
    lying[n - 8..n - 4].copy_from_slice(&(n as u32).to_le_bytes());
    assert!(matches!(
        read(PARQUET, &lying),
        Err(TableError::CorruptFooter(_))
    ));
}

#[test]
fn a_binary_file_named_csv_is_not_a_text_table() {
    assert_eq!(
        read(CSV, READINGS_V1),
        Err(TableError::NotText("its first line holds NUL bytes".into()))
    );
    assert_eq!(
        read(CSV, b"\xff\xfe\x41,\x42\n"),
        Err(TableError::NotText("its header is not UTF-8".into()))
    );
    // Gzip bytes without the .gz name.
    assert!(matches!(
        read(CSV, STATIONS_GZ),
        Err(TableError::NotText(_))
    ));
    // A .gz name without gzip bytes.
    assert!(matches!(
        read(TableFormat::Csv { gzip: true }, QUOTED),
        Err(TableError::Gzip(_))
    ));
}

fn csv_of(header: &str, rows: usize) -> Vec<u8> {
    let mut text = format!("{header}\n");
    for i in 0..rows {
        text.push_str(&format!("{i},x\n"));
    }
    text.into_bytes()
}

#[test]
fn a_header_line_over_64_kib_is_an_error() {
    let long = "x".repeat(HEADER_BYTES as usize + 10);
    // Small enough to be read whole, and larger than the header read.
    let file = csv_of(&format!("a,{long}"), 2);
    assert_eq!(read(CSV, &file), Err(TableError::HeaderTooLong));
    let big = csv_of(&format!("a,{long}"), 200_000);
    assert!(big.len() as u64 > ROW_COUNT_BYTES);
    assert_eq!(read(CSV, &big), Err(TableError::HeaderTooLong));
    assert_eq!(
        TableError::HeaderTooLong.to_string(),
        "the header line is longer than 64 KiB"
    );
    // Just under the limit: fine.
    let fits = "y".repeat(HEADER_BYTES as usize - 10);
    let ok = read(CSV, &csv_of(&format!("a,{fits}"), 200_000)).expect("fits");
    assert_eq!(ok.columns.len(), 2);
}

#[test]
fn rows_are_counted_only_when_the_file_is_at_most_1_mib() {
    let small = csv_of("id,value", 1000);
    let (table, ranges) = read_with(CSV, &small, small.len() as u64, TableLimits::default());
    assert_eq!(table.map(|t| t.rows), Ok(Some(1000)));
    assert_eq!(ranges, [ByteRange::prefix(small.len() as u64)]);

    let big = csv_of("id,value", 200_000);
    let (table, ranges) = read_with(CSV, &big, big.len() as u64, TableLimits::default());
    let table = table.expect("big");
    assert_eq!(table.rows, None);
    assert_eq!(names(&table), ["id", "value"]);
    assert_eq!(ranges, [ByteRange::prefix(HEADER_BYTES)]);

    // A quoted line break is inside a record, not between two.
    let quoted = b"a,b\n1,\"x\ny\"\n2,z\n";
    assert_eq!(read(CSV, quoted).map(|t| t.rows), Ok(Some(2)));
    // Empty files and header-only files.
    assert_eq!(
        read(CSV, b""),
        Ok(Table {
            columns: vec![],
            rows: Some(0)
        })
    );
    assert_eq!(read(CSV, b"a,b").map(|t| t.rows), Ok(Some(0)));
}

#[test]
fn quoted_names_a_bom_and_crlf_are_read_as_a_csv_reader_reads_them() {
    let file = b"\xEF\xBB\xBF\"id\",\"full name\",\"a, b\",\"say \"\"hi\"\"\"\r\n1,2,3,4\r\n";
    let table = read(CSV, file).expect("csv");
    assert_eq!(names(&table), ["id", "full name", "a, b", "say \"hi\""]);
    assert_eq!(table.rows, Some(1));
}

#[test]
fn names_keep_markup_and_lose_control_characters() {
    let table = read(CSV, b"\"<b>x</b>\",\"a\tb\x1b[31m\",\"new\nline\"\n").expect("csv");
    assert_eq!(
        names(&table),
        ["<b>x</b>", "a\u{FFFD}b\u{FFFD}[31m", "new\u{FFFD}line"]
    );
}

#[test]
fn a_gzip_csv_larger_than_1_mib_gives_its_header_from_the_first_bytes() {
    let mut file = b"station,temp\n".to_vec();
    let mut rng = fastrand::Rng::with_seed(7);
    // Random digits compress poorly: over 1 MiB compressed.
    while file.len() < 3 << 20 {
        file.extend(format!("{},{}\n", rng.u32(..), rng.u32(..)).bytes());
    }
    let mut gz = Vec::new();
    {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(&mut gz, flate2::Compression::fast());
        encoder.write_all(&file).expect("gzip");
        encoder.finish().expect("gzip");
    }
    assert!(gz.len() as u64 > ROW_COUNT_BYTES);
    let (table, ranges) = read_with(
        TableFormat::Csv { gzip: true },
        &gz,
        gz.len() as u64,
        TableLimits::default(),
    );
    let table = table.expect("gz");
    assert_eq!(names(&table), ["station", "temp"]);
    assert_eq!(table.rows, None);
    assert_eq!(ranges, [ByteRange::prefix(HEADER_BYTES)]);
}

#[test]
fn table_formats_come_from_the_extension_in_any_case() {
    let cases = [
        ("data/a.parquet", Some(PARQUET)),
        ("A.PARQUET", Some(PARQUET)),
        ("x/b.csv", Some(CSV)),
        ("b.CSV.GZ", Some(TableFormat::Csv { gzip: true })),
        ("c.tsv", Some(TableFormat::Tsv { gzip: false })),
        ("c.tsv.gz", Some(TableFormat::Tsv { gzip: true })),
        ("d.parquet.gz", None),
        ("e.gz", None),
        (".csv", None),
        ("dir.csv/readme.md", None),
        ("f.csvx", None),
        ("g.txt", None),
    ];
    for (key, format) in cases {
        assert_eq!(TableFormat::of(key), format, "{key}");
    }
    assert_eq!(TableFormat::Tsv { gzip: true }.name(), "tsv");
}

fn change(before: Option<Result<Table, TableError>>, after: Result<Table, TableError>) -> Value {
    TableChange {
        path: "data/readings.parquet".into(),
        format: PARQUET,
        before,
        after,
    }
    .to_json()
}

#[test]
fn a_modified_parquet_lists_columns_added_removed_retyped_and_its_rows() {
    let v1 = read(PARQUET, READINGS_V1);
    let v2 = read(PARQUET, READINGS_V2);
    assert_eq!(
        change(Some(v1), v2),
        json!({
            "path": "data/readings.parquet", "format": "parquet", "status": "modified",
            "rows": {"before": 120, "after": 130},
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
}

#[test]
fn the_same_schema_and_rows_list_nothing() {
    let c = change(Some(read(PARQUET, READINGS_V2)), read(PARQUET, READINGS_V3));
    assert_eq!(c["rows"], json!({"before": 130, "after": 130}));
    assert_eq!(c["columns"]["added"], json!([]));
    assert_eq!(c["columns"]["removed"], json!([]));
    assert_eq!(c["columns"]["retyped"], json!([]));
    assert_eq!(c["columns"]["count"], 4);
}

#[test]
fn an_added_table_counts_its_columns_and_lists_none() {
    let c = change(None, read(PARQUET, READINGS_V1));
    assert_eq!(c["status"], "added");
    assert_eq!(c["rows"], json!({"before": null, "after": 120}));
    assert_eq!(c["columns"]["count"], 4);
    assert_eq!(c["columns"]["added"], json!([]));
}

#[test]
fn thousands_of_columns_list_the_first_200_and_count_the_rest() {
    let wide = read(TableFormat::Csv { gzip: true }, WIDE_CSV_GZ).expect("wide.csv.gz");
    assert_eq!(wide.columns.len(), 2000);
    let narrow = read(CSV, b"c0000,c0001,gone\n").expect("narrow");
    let c = TableChange {
        path: "wide.csv.gz".into(),
        format: TableFormat::Csv { gzip: true },
        before: Some(Ok(narrow)),
        after: Ok(wide),
    }
    .to_json();
    assert_eq!(c["format"], "csv");
    assert_eq!(c["columns"]["count"], 2000);
    assert_eq!(c["columns"]["added"].as_array().map(Vec::len), Some(200));
    assert_eq!(
        c["columns"]["added"][0],
        json!({"name": "c0002", "type": null})
    );
    assert_eq!(c["columns"]["added_more"], 1998 - 200);
    assert_eq!(
        c["columns"]["removed"],
        json!([{"name": "gone", "type": null}])
    );
    assert_eq!(c["rows"], json!({"before": 0, "after": 1}));
}

#[test]
fn long_names_and_types_are_cut_for_the_template() {
    let long = "n".repeat(500);
    let before = Table {
        columns: vec![],
        rows: Some(1),
    };
    let after = Table {
        columns: vec![Column {
            name: long.clone(),
            data_type: Some(format!("struct<{long}: int64>")),
        }],
        rows: Some(1),
    };
    let c = change(Some(Ok(before)), Ok(after));
    let added = &c["columns"]["added"][0];
    let name = added["name"].as_str().unwrap_or_default();
    assert_eq!(name.chars().count(), NAME_CHARS);
    assert!(name.ends_with('…'));
    assert_eq!(
        added["type"].as_str().map(|t| t.chars().count()),
        Some(NAME_CHARS)
    );
}

#[test]
fn an_unreadable_version_is_the_tables_error_and_lists_nothing() {
    let c = change(Some(read(PARQUET, READINGS_V1)), read(PARQUET, b"junk"));
    assert_eq!(
        c["error"],
        "not a Parquet file: 4 bytes, shorter than a Parquet footer"
    );
    assert_eq!(c["rows"], json!({"before": 120, "after": null}));
    assert_eq!(c["columns"]["count"], Value::Null);
    assert_eq!(c["columns"]["removed"], json!([]));

    let c = change(
        Some(Err(TableError::Unreadable("Access Denied".into()))),
        read(PARQUET, READINGS_V2),
    );
    assert_eq!(c["error"], "the previous version: Access Denied");
    assert_eq!(c["rows"], json!({"before": null, "after": 130}));
    assert_eq!(c["columns"]["count"], 4);
    assert_eq!(c["columns"]["added"], json!([]));

    let c = change(
        Some(Err(TableError::Encrypted)),
        Err(TableError::Unreadable("Access Denied".into())),
    );
    assert_eq!(
        c["error"],
        "Access Denied; the previous version: the Parquet footer is encrypted"
    );
}

#[test]
fn repeated_csv_names_are_compared_by_occurrence() {
    let before = read(CSV, b"a,a,b\n").expect("before");
    let after = read(CSV, b"a,b,a,a\n").expect("after");
    let c = TableChange {
        path: "t.csv".into(),
        format: CSV,
        before: Some(Ok(before)),
        after: Ok(after),
    }
    .to_json();
    assert_eq!(c["columns"]["added"], json!([{"name": "a", "type": null}]));
    assert_eq!(c["columns"]["removed"], json!([]));
}

#[test]
fn row_counts_agree_with_the_csv_crate_across_chunk_boundaries() {
    // Quoted fields with delimiters, quotes and line breaks, CRLF, empty lines and no final
    // line break: files of 100–900 KiB, so records straddle the counter's 64 KiB chunks.
    let pieces: [&[u8]; 8] = [
        b"plain",
        b"\"quoted, with comma\"",
        b"\"line\nbreak\"",
        b"\"escaped \"\" quote\"",
        b"",
        b"\xC3\xA9t\xC3\xA9",
        b"\"crlf\r\ninside\"",
        b"1234567890",
    ];
    let mut rng = fastrand::Rng::with_seed(22);
    for _ in 0..12 {
        let target = rng.usize(100 * 1024..900 * 1024);
        let mut file = b"a,b,c\n".to_vec();
        while file.len() < target {
            for field in 0..rng.usize(1..5) {
                if field > 0 {
                    file.push(b',');
                }
                file.extend_from_slice(pieces[rng.usize(..pieces.len())]);
            }
            file.extend_from_slice([&b"\n"[..], b"\r\n", b"\n\n"][rng.usize(..3)]);
        }
        if rng.bool() {
            file.extend_from_slice(b"last,without,newline");
        }
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(&file[..]);
        let expected = reader.byte_records().count() as u64 - 1;
        assert_eq!(read(CSV, &file).map(|t| t.rows), Ok(Some(expected)));
    }
}
