#!/usr/bin/env python3
"""Make the table files quilt-notify's table tests read, with pyarrow and the standard library.

quilt-notify describes Parquet files from their footers and CSV/TSV files from their header
lines (src/domain/table/). Its tests read real files, written here by pyarrow 26 (pinned in
scripts/quilt-requirements.txt) and Python's csv module, and compare quilt-notify's answers
with what pyarrow and the csv module say about the same files: `answers.json`, written beside
the files, holds those answers.

  fixtures  write the committed fixtures to DIR (default tests/data/tables): small files only
            (a 2,000-column file is committed gzip-compressed); deterministic, so running it again
            with the same pyarrow gives the same bytes
  describe  print pyarrow's / the csv module's answers for the files named, as JSON (the
            integration tests compare what quilt-notify reads from S3 with them)

The functions here also make the files of the table scenario that
`scripts/quilt_packages.py tables` pushes to LocalStack. Runs under the quilt3 venv's Python
(re-executing itself there when pyarrow is missing, as quilt_packages.py does).
"""

import argparse
import csv
import gzip
import io
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / ".emulators" / "quilt-venv" / "bin" / "python"
OUT = ROOT / "tests" / "data" / "tables"


def ensure_pyarrow():
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        if not VENV_PYTHON.exists() or Path(sys.executable).resolve() == VENV_PYTHON.resolve():
            sys.exit("table_fixtures: pyarrow is not installed: run "
                     "scripts/quilt_packages.py install")
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), __file__, *sys.argv[1:]])


def parquet_bytes(table, **options):
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(table, sink, **options)
    return sink.getvalue()


def gzipped(data):
    """Gzip with no timestamp or name in the header: the same bytes on every run."""
    sink = io.BytesIO()
    with gzip.GzipFile(fileobj=sink, mode="wb", mtime=0, filename="") as out:
        out.write(data)
    return sink.getvalue()


def csv_bytes(rows, delimiter=","):
    sink = io.StringIO(newline="")
    writer = csv.writer(sink, delimiter=delimiter, lineterminator="\n")
    writer.writerows(rows)
    return sink.getvalue().encode("utf-8")


STATIONS = ["NORTH", "SOUTH", "WEST", "EAST"]


def readings(version, rows):
    """The readings table in three versions: v2 drops `note`, retypes `value` from int32 to
    double and adds `station_id` (and has more rows); v3 has v2's schema and row count, other
    values."""
    import pyarrow as pa

    station = pa.array([STATIONS[i % 4] for i in range(rows)], pa.string())
    hour = pa.array([i % 24 for i in range(rows)], pa.int32())
    if version == 1:
        return pa.table({
            "station": station,
            "hour": hour,
            "value": pa.array([(i * 7) % 50 - 10 for i in range(rows)], pa.int32()),
            "note": pa.array(["ok" if i % 5 else None for i in range(rows)], pa.string()),
        })
    shift = 0.5 if version == 2 else 1.25
    return pa.table({
        "station": station,
        "hour": hour,
        "value": pa.array([(i * 7) % 50 - 10 + shift for i in range(rows)], pa.float64()),
        "station_id": pa.array([i % 4 + 1000 for i in range(rows)], pa.int64()),
    })


def types_table():
    """One column of each kind pyarrow writes: logical types, physical ones, nested ones."""
    import datetime
    import decimal

    import pyarrow as pa

    n = 3
    return pa.table({
        "i8": pa.array([1, 2, 3], pa.int8()),
        "u16": pa.array([1, 2, 3], pa.uint16()),
        "i32": pa.array([1, 2, 3], pa.int32()),
        "u64": pa.array([1, 2, 3], pa.uint64()),
        "i64": pa.array([1, 2, 3], pa.int64()),
        "f16": pa.array([1.0, 2.0, 3.0], pa.float32()).cast(pa.float16()),
        "f32": pa.array([1.5, 2.5, 3.5], pa.float32()),
        "f64": pa.array([1.5, 2.5, 3.5], pa.float64()),
        "flag": pa.array([True, False, None], pa.bool_()),
        "text": pa.array(["a", "b", None], pa.string()),
        "large_text": pa.array(["a", "b", "c"], pa.large_string()),
        "category": pa.array(["x", "y", "x"]).dictionary_encode(),
        "blob": pa.array([b"\x00", b"\x01", b"\x02"], pa.binary()),
        "fixed": pa.array([b"0123456789abcdef"] * n, pa.binary(16)),
        "day": pa.array([datetime.date(2024, 1, d) for d in (1, 2, 3)], pa.date32()),
        "ts_ms": pa.array([1, 2, 3], pa.timestamp("ms")),
        "ts_us_utc": pa.array([1, 2, 3], pa.timestamp("us", tz="UTC")),
        "ts_ns_tz": pa.array([1, 2, 3], pa.timestamp("ns", tz="Europe/Paris")),
        "t_ms": pa.array([1, 2, 3], pa.time32("ms")),
        "t_us": pa.array([1, 2, 3], pa.time64("us")),
        "price": pa.array([decimal.Decimal("1.25")] * n, pa.decimal128(10, 2)),
        "big_price": pa.array([decimal.Decimal("1.25")] * n, pa.decimal128(30, 4)),
        "nothing": pa.array([None] * n, pa.null()),
        "tags": pa.array([["a"], ["b", "c"], []], pa.list_(pa.string())),
        "point": pa.array([{"x": 1.0, "y": 2.0}] * n,
                          pa.struct([("x", pa.float64()), ("y", pa.float64())])),
        "attrs": pa.array([[("k", 1)], [], [("a", 2), ("b", 3)]],
                          pa.map_(pa.string(), pa.int64())),
        "events": pa.array([[{"at": 1, "what": "x"}], [], []],
                           pa.list_(pa.struct([("at", pa.int64()), ("what", pa.string())]))),
        "matrix": pa.array([[[1, 2]], [], [[3]]], pa.list_(pa.list_(pa.int32()))),
    })


def wide_table(columns=2000, rows=1):
    import pyarrow as pa

    return pa.table({f"c{i:04d}": pa.array([i % 100] * rows, pa.int8()) for i in range(columns)})


QUOTED_HEADER = [
    "id",
    "full name",
    "note, with comma",
    'say "hi"',
    "two\nlines",
    "<b>bold</b> & <script>",
    "été",
    "",
]


def quoted_csv():
    """A header of names a CSV writer must quote, and two rows."""
    return csv_bytes([QUOTED_HEADER, [1, "Ada", "x", "y", "z", "w", "v", ""],
                      [2, "Bo", "x", "y", "z", "w", "v", ""]])


def stations_rows(extra=0):
    rows = [["station", "lat", "lon"], ["NORTH", "60.1", "24.9"], ["SOUTH", "35.7", "139.7"],
            ["WEST", "51.5", "-0.1"]]
    rows += [[f"S{i}", "0.0", "0.0"] for i in range(extra)]
    return rows


def wide_csv(columns=2000):
    return csv_bytes([[f"c{i:04d}" for i in range(columns)], [i % 10 for i in range(columns)]])


def fixtures():
    """name -> bytes of every committed fixture."""
    files = {
        "readings_v1.parquet": parquet_bytes(readings(1, 120)),
        "readings_v2.parquet": parquet_bytes(readings(2, 130)),
        "readings_v3.parquet": parquet_bytes(readings(3, 130)),
        "types.parquet": parquet_bytes(types_table()),
        # Written without statistics so the committed copy stays small; the footer is still
        # far over the 64 KiB first read.
        "wide.parquet.gz": gzipped(parquet_bytes(wide_table(), write_statistics=False)),
        "quoted.csv": quoted_csv(),
        "stations.tsv": csv_bytes(stations_rows(), delimiter="\t"),
        "stations.csv.gz": gzipped(csv_bytes(stations_rows(extra=2))),
        "wide.csv.gz": gzipped(wide_csv()),
    }
    return files


def describe_parquet(data):
    import pyarrow.parquet as pq

    f = pq.ParquetFile(io.BytesIO(data))
    meta = f.metadata
    arrow = f.schema_arrow
    return {
        "format": "parquet",
        "num_rows": meta.num_rows,
        "num_row_groups": meta.num_row_groups,
        "footer_bytes": meta.serialized_size,
        "file_bytes": len(data),
        "names": arrow.names,
        "arrow_types": [str(field.type) for field in arrow],
        "leaves": [{
            "path": column.path,
            "physical_type": column.physical_type,
            "logical_type": json.loads(column.logical_type.to_json()),
            "converted_type": column.converted_type,
            "length": column.length,
        } for column in f.schema],
    }


def describe_text(data, delimiter):
    text = data.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    return {
        "format": "tsv" if delimiter == "\t" else "csv",
        "header": rows[0] if rows else [],
        "rows": max(len(rows) - 1, 0),
        "file_bytes": len(data),
    }


def describe(name, data):
    """pyarrow's (or the csv module's) answer for one file, by its name."""
    if name.endswith(".gz"):
        data = gzip.decompress(data)
        name = name[:-3]
    if name.endswith(".parquet"):
        return describe_parquet(data)
    if name.endswith(".tsv"):
        return describe_text(data, "\t")
    if name.endswith(".csv"):
        return describe_text(data, ",")
    raise ValueError(f"not a table: {name}")


def shortened(answer, keep=20):
    """The answer with each list of more than 50 items cut to its first `keep` items, its
    last one and its length, `{"first": [...], "last": ..., "count": n}`: a 2,000-column file's
    answer stays small."""
    if isinstance(answer, dict):
        return {key: shortened(value, keep) for key, value in answer.items()}
    if isinstance(answer, list) and len(answer) > 50:
        return {"first": answer[:keep], "last": answer[-1], "count": len(answer)}
    return answer


def write_fixtures(out):
    import pyarrow

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    answers = {"made_by": f"scripts/table_fixtures.py fixtures (pyarrow {pyarrow.__version__})",
               "files": {}}
    total = 0
    for name, data in sorted(fixtures().items()):
        (out / name).write_bytes(data)
        total += len(data)
        answers["files"][name] = shortened(describe(name, data))
        print(f"table_fixtures: {name}: {len(data)} bytes", file=sys.stderr)
    (out / "answers.json").write_text(json.dumps(answers, indent=1, ensure_ascii=False) + "\n",
                                      encoding="utf-8")
    print(f"table_fixtures: {total} bytes of fixtures in {out}", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fixtures", help="write the committed fixtures and answers.json")
    f.add_argument("--out", default=str(OUT))
    d = sub.add_parser("describe", help="print pyarrow's answers for files, as JSON")
    d.add_argument("files", nargs="+")
    args = parser.parse_args()
    ensure_pyarrow()
    if args.command == "fixtures":
        write_fixtures(args.out)
    else:
        json.dump({p: describe(p, Path(p).read_bytes()) for p in args.files}, sys.stdout,
                  ensure_ascii=False)
        print()


if __name__ == "__main__":
    main()
