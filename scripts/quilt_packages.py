#!/usr/bin/env python3
"""Push real Quilt package revisions with quilt3 8.0.0 to an S3 endpoint (LocalStack), on demand.

quilt-notify reads the manifests quilt3 writes, so its tests push with the real client rather than
hand-writing manifests. Sub-commands:

  install   make .emulators/quilt-venv from scripts/quilt-requirements.txt (idempotent: a stamp
            holds the lock's hash; --force reinstalls)
  push      push one revision of a package: start from the latest revision (or from nothing with
            --base none), then --set / --set-text / --delete entries, --meta, --message, --workflow;
            prints JSON {"bucket", "name", "top_hash", "previous_top_hash", "manifest_key"}.
            It first waits until the clock is past the package's newest revision pointer (named
            by the push's epoch second), so back-to-back pushes each keep their own pointer
  sample    push the next revision of the sample package that scripts/send-sample-event announces:
            with no revision yet, two (v1: README.md, CSV files, a real Parquet file written by
            pyarrow, and metadata; v2: one file added, one removed, the CSV and the Parquet
            modified (a column added, one removed, one retyped, rows appended), metadata
            changed), so the first email already shows changes and tables; afterwards one more
            each call (a CSV added, rows appended to the Parquet). The bucket is made versioned,
            as Quilt buckets are, so both versions of a table stay readable. Prints what push prints
            With --diff the result also holds "diff": quilt3's own Package.diff of the previous
            revision and this one ({"added", "modified", "deleted"}, sorted; null for a first
            revision), the reference the integration tests compare the worker's changes with
  bulk      build a revision of N file entries without uploading any file (entries name objects
            s3://BUCKET/bulk/..., which need not exist; quilt3's Package.build writes the manifest
            and revision pointers exactly as a push does): a large manifest in seconds, for the
            integration test of big packages. Prints what push prints
  bucket    create or delete (with everything in it) a bucket: the integration tests make one
            per test; prints {"bucket", "action"}
  scenario  push the fixed list of revisions the unit tests are built on (first revision, add,
            remove, modify, metadata only, same-hash re-push, nested Unicode keys, entry metadata,
            workflow), download each manifest and write DIR/<revision>.jsonl plus DIR/index.json
            with the top hashes and quilt3's own Package.diff of each consecutive pair
  tables    push revisions of real tables (Parquet by pyarrow, CSV/TSV by Python's csv module;
            see TABLE_STEPS and scripts/table_fixtures.py): an added table, columns added,
            removed and retyped, rows appended, the same schema rewritten, a corrupt and a
            truncated Parquet file, a binary file named .csv, quoted CSV headers, a 2,000-column
            table. Prints {"bucket", "name", "revisions": [{"name", "top_hash", "tables":
            {LOGICAL_KEY: {"bucket", "key", "version", "size", "answer"}}}]}: where each table
            file of each revision is, and what pyarrow (or the csv module) says about it
            ({"error": ...} when it cannot read it either)

Any sub-command but install re-executes itself with the venv's Python when quilt3 is not
importable, so `python3 scripts/quilt_packages.py push ...` works from any Python 3.
S3 endpoint: --endpoint-url, else $AWS_ENDPOINT_URL, else http://127.0.0.1:$QN_LOCALSTACK_PORT
(default 4566); credentials default to LocalStack's test ones. The bucket is created if missing.
Progress goes to stderr; stdout carries only the JSON result.
"""

import argparse
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".emulators" / "quilt-venv"
VENV_PYTHON = VENV / "bin" / "python"
REQUIREMENTS = ROOT / "scripts" / "quilt-requirements.txt"
STAMP = VENV / ".qn-stamp"
# Everything quilt3 writes for itself (config, cache) stays inside the venv, never in $HOME
# (QN_QUILT_HOME moves it: compose's sample-event container has its own venv elsewhere).
QUILT_HOME = Path(os.environ.get("QN_QUILT_HOME") or VENV / "home")


def log(message):
    print(f"quilt_packages: {message}", file=sys.stderr, flush=True)


def lock_hash():
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def install(force=False):
    """Create the venv from the pinned lock unless its stamp says it is already there."""
    if not force and STAMP.exists() and STAMP.read_text() == lock_hash() and VENV_PYTHON.exists():
        log(f"quilt3 already installed in {VENV}")
        return
    log(f"installing quilt3 into {VENV}")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run(
        [str(VENV_PYTHON), "-m", "pip", "install", "--no-input", "--disable-pip-version-check",
         "--no-deps", "-r", str(REQUIREMENTS)],
        check=True,
        stdout=sys.stderr,
    )
    subprocess.run([str(VENV_PYTHON), "-c", "import quilt3"], check=True)
    STAMP.write_text(lock_hash())
    log("quilt3 installed")


def environment(endpoint_url):
    """Environment for quilt3 and boto3: the endpoint, test credentials, no telemetry, no $HOME."""
    env = {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        "QUILT_DISABLE_USAGE_METRICS": "1",
        "QUILT_MINIMIZE_STDOUT": "true",
        "QUILT_DISABLE_CACHE": "true",
        "XDG_DATA_HOME": str(QUILT_HOME / "data"),
        "XDG_CACHE_HOME": str(QUILT_HOME / "cache"),
        "XDG_CONFIG_HOME": str(QUILT_HOME / "config"),
    }
    # An IP endpoint cannot serve virtual-hosted buckets: force path-style addressing.
    config = QUILT_HOME / "aws-config"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("[default]\ns3 =\n    addressing_style = path\n")
    env["AWS_CONFIG_FILE"] = str(config)
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(QUILT_HOME / "no-credentials")
    return env


def ensure_quilt3():
    """Re-execute under the venv's Python when quilt3 is not importable here."""
    try:
        import quilt3  # noqa: F401
    except ImportError:
        if not VENV_PYTHON.exists():
            sys.exit(f"quilt_packages: quilt3 is not installed: run {sys.argv[0]} install")
        if Path(sys.prefix).resolve() == VENV.resolve():
            raise
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), __file__, *sys.argv[1:]])


def s3_client():
    import boto3

    return boto3.client("s3")


def ensure_bucket(bucket):
    s3 = s3_client()
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception:  # noqa: BLE001  (missing bucket: any error here means "create it")
        s3.create_bucket(Bucket=bucket)
        log(f"created bucket {bucket}")


def delete_bucket(bucket):
    """Delete every object version and delete marker, then the bucket; a missing one is fine."""
    s3 = s3_client()
    try:
        pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket)
        for page in pages:
            doomed = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                      for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
            for start in range(0, len(doomed), 1000):
                s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed[start:start + 1000],
                                                         "Quiet": True})
        s3.delete_bucket(Bucket=bucket)
        log(f"deleted bucket {bucket}")
    except s3.exceptions.NoSuchBucket:
        log(f"no bucket {bucket} to delete")


def latest_top_hash(bucket, name):
    """The top hash `latest` points at, or None for a package without revisions."""
    s3 = s3_client()
    try:
        body = s3.get_object(Bucket=bucket, Key=f".quilt/named_packages/{name}/latest")["Body"]
        return body.read().decode().strip()
    except s3.exceptions.NoSuchKey:
        return None


def push(bucket, name, *, base="latest", set_files=(), set_texts=(), deletes=(), meta=None,
         message=None, workflow=None, entry_meta=(), workdir, diff=False):
    """Push one revision; returns the result dictionary printed by the `push` sub-command."""
    import quilt3

    registry = f"s3://{bucket}"
    previous = latest_top_hash(bucket, name)
    if base == "latest" and previous is not None:
        pkg = quilt3.Package.browse(name, registry=registry, top_hash=previous)
    else:
        pkg = quilt3.Package()
    for logical_key, path in set_files:
        pkg.set(logical_key, path)
    for index, (logical_key, text) in enumerate(set_texts):
        path = Path(workdir) / f"text-{len(os.listdir(workdir))}-{index}"
        path.write_text(text, encoding="utf-8")
        pkg.set(logical_key, str(path))
    for logical_key in deletes:
        pkg.delete(logical_key)
    for logical_key, value in entry_meta:
        pkg[logical_key].set_meta(value)
    if meta is not None:
        pkg.set_meta(meta)
    kwargs = {} if workflow is None else {"workflow": workflow}
    # force: a re-push of the same content must write a new revision pointer, as users do.
    # quilt3 prints progress on stdout, which carries only this script's JSON.
    with contextlib.redirect_stdout(sys.stderr):
        pushed = pkg.push(name, registry=registry, message=message, force=True, **kwargs)
    top_hash = pushed.top_hash
    log(f"pushed {name}@{top_hash[:7]} to {registry}")
    result = {
        "bucket": bucket,
        "name": name,
        "top_hash": top_hash,
        "previous_top_hash": previous,
        "manifest_key": f".quilt/packages/{top_hash}",
    }
    if diff:
        result["diff"] = quilt3_diff(bucket, name, previous, top_hash)
    return result


def quilt3_diff(bucket, name, before_hash, after_hash):
    """quilt3's Package.diff of two revisions, sorted; None when there is no earlier one."""
    import quilt3

    if before_hash is None:
        return None
    registry = f"s3://{bucket}"
    before = quilt3.Package.browse(name, registry=registry, top_hash=before_hash)
    after = quilt3.Package.browse(name, registry=registry, top_hash=after_hash)
    added, modified, deleted = before.diff(after)
    return {"added": sorted(added), "modified": sorted(modified), "deleted": sorted(deleted)}


def bulk(bucket, name, files, message=None, meta=None):
    """Build a revision of `files` entries naming objects that are never uploaded."""
    import base64

    import quilt3
    from quilt3.util import PhysicalKey

    previous = latest_top_hash(bucket, name)
    pkg = quilt3.Package()
    for i in range(files):
        digest = base64.b64encode(hashlib.sha256(str(i).encode()).digest()).decode()
        key = f"shard-{i % 10}/part-{i // 1000:03d}/file-{i:06d}.csv"
        entry = quilt3.packages.PackageEntry(
            PhysicalKey(bucket, f"bulk/{key}", None), 100 + i % 50,
            {"type": "sha2-256-chunked", "value": digest}, None)
        pkg.set(key, entry)
    if meta is not None:
        pkg.set_meta(meta)
    with contextlib.redirect_stdout(sys.stderr):
        top_hash = pkg.build(name, registry=f"s3://{bucket}", message=message)
    log(f"built {name}@{top_hash[:7]} ({files} entries) in s3://{bucket}")
    return {
        "bucket": bucket,
        "name": name,
        "top_hash": top_hash,
        "previous_top_hash": previous,
        "manifest_key": f".quilt/packages/{top_hash}",
    }


def wait_for_new_pointer_second(bucket, name):
    """Sleep until the clock is past the newest revision pointer of the package.

    quilt3 names a revision pointer by the push's epoch second: two pushes within one second would
    write the same pointer, and the earlier revision would vanish from the history the worker
    reads the previous revision from.
    """
    listed = s3_client().list_objects_v2(Bucket=bucket, Prefix=f".quilt/named_packages/{name}/")
    seconds = [int(key) for key in (o["Key"].rsplit("/", 1)[-1] for o in listed.get("Contents", []))
               if key.isdigit()]
    if seconds:
        while time.time() < max(seconds) + 1:
            time.sleep(0.1)


SAMPLE_README = """# Weather stations (quilt-notify sample)

Hourly readings from three demo weather stations, pushed by `scripts/send-sample-event` so the
first email of a local run shows what a package is and what changed.
"""

# The sample package's first two revisions; sample() pushes them on an empty package.
SAMPLE_FIRST = dict(
    base="none",
    message="First revision: stations and January readings",
    meta={"stage": "dev", "owner": "data-team", "source": "quilt-notify sample"},
    set_texts=[
        ("README.md", SAMPLE_README),
        ("data/stations.csv", "station,lat,lon\nNORTH,60.1,24.9\nSOUTH,35.7,139.7\nWEST,51.5,-0.1\n"),
        ("data/readings/2024-01.csv",
         "station,hour,temp_c\nNORTH,0,-4.2\nSOUTH,0,6.1\nWEST,0,3.3\n"),
        ("notes/calibration.txt", "Sensors calibrated 2023-12-28.\n"),
    ],
)
SAMPLE_SECOND = dict(
    message="Add February, recompute stations, drop calibration notes",
    meta={"stage": "review", "owner": "data-team", "source": "quilt-notify sample",
          "reviewer": "ada"},
    set_texts=[
        ("data/readings/2024-02.csv",
         "station,hour,temp_c\nNORTH,0,-6.0\nSOUTH,0,7.4\nWEST,0,4.0\n"),
        ("data/stations.csv",
         "station,lat,lon,elevation_m\nNORTH,60.1,24.9,12\nSOUTH,35.7,139.7,40\nWEST,51.5,-0.1,11\n"),
    ],
    deletes=["notes/calibration.txt"],
)


def sample_parquet(workdir, version, rows):
    """A real Parquet file (pyarrow) of the readings table for the sample: (logical key, path).
    Version 2 retypes `value` (int32 to double), drops `note` and adds `station_id`, so the
    email's "What changed" shows each kind of column change and the rows appended."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import table_fixtures as tf

    path = Path(workdir) / f"readings-v{version}-{rows}.parquet"
    path.write_bytes(tf.parquet_bytes(tf.readings(version, rows)))
    return ("data/readings.parquet", str(path))


def sample(bucket, name, workdir):
    """Push the sample package's next revision(s); returns the last push's result. Its tables
    are real: data/readings.parquet (written by pyarrow) and CSV files."""
    # Versioned, as Quilt buckets are: the previous revision's files stay readable, so the
    # email can compare both versions of a table.
    s3_client().put_bucket_versioning(Bucket=bucket,
                                      VersioningConfiguration={"Status": "Enabled"})
    if latest_top_hash(bucket, name) is None:
        first = push(bucket, name, workdir=workdir,
                     set_files=[sample_parquet(workdir, 1, 1200)], **SAMPLE_FIRST)
        wait_for_new_pointer_second(bucket, name)
        result = push(bucket, name, workdir=workdir,
                      set_files=[sample_parquet(workdir, 2, 1300)], **SAMPLE_SECOND)
        result["previous_top_hash"] = first["top_hash"]
        return result
    wait_for_new_pointer_second(bucket, name)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    # Rows appended to the readings: the same schema, a row delta.
    rows = 1300 + 24 * (int(time.time()) % 1000)
    return push(bucket, name, workdir=workdir, message=f"Readings of {stamp}",
                set_files=[sample_parquet(workdir, 2, rows)],
                set_texts=[("data/readings/latest.csv",
                            f"station,time,temp_c\nNORTH,{stamp},-5.1\nSOUTH,{stamp},7.0\n")])


def manifest_bytes(bucket, top_hash):
    return s3_client().get_object(Bucket=bucket, Key=f".quilt/packages/{top_hash}")["Body"].read()


WORKFLOW_CONFIG_KEY = ".quilt/workflows/config.yml"
WORKFLOW_CONFIG = """version: "1"
is_workflow_required: false
workflows:
  release:
    name: Release
    description: Packages ready for downstream use
"""

# The revisions the unit tests read, in push order. Each step edits the previous revision.
SCENARIO = [
    ("first", dict(
        base="none",
        message="First revision",
        meta={"stage": "dev", "owner": "data-team", "tags": ["raw"]},
        set_texts=[
            ("README.md", "# Demo package\n\nTables of <b>demo</b> data & notes.\n"),
            ("data/table.csv", "id,value\n1,10\n2,20\n"),
            ("data/raw/2024/01.csv", "day,count\n1,5\n2,7\n3,9\n"),
            ("docs/guide.md", "Read the tables in data/.\n"),
            ("notes.txt", "root file\n"),
        ],
    )),
    ("add_files", dict(
        message="Add February and a logo",
        set_texts=[
            ("data/raw/2024/02.csv", "day,count\n1,6\n2,8\n"),
            ("images/logo.svg", "<svg xmlns='http://www.w3.org/2000/svg'><rect/></svg>\n"),
        ],
    )),
    ("remove_files", dict(
        message="Drop the guide and the logo",
        deletes=["docs/guide.md", "images/logo.svg"],
    )),
    ("modify_file", dict(
        message="Recompute the table",
        set_texts=[("data/table.csv", "id,value\n1,11\n2,21\n3,31\n4,41\n")],
    )),
    ("metadata_only", dict(
        message="Promote to prod",
        meta={"stage": "prod", "owner": "data-team", "tags": ["raw"], "reviewed": True},
    )),
    ("same_hash", dict(message="Promote to prod")),
    ("unicode_nested", dict(
        message="Unicode and deep keys",
        meta={"stage": "prod", "tags": ["raw", "intl"], "reviewed": True},
        set_texts=[
            ("données/été/résumé.csv", "clé,valeur\nà,1\n"),
            ("日本語/ファイル.txt", "こんにちは\n"),
            ("a/b/c/d/e/deep.txt", "deep\n"),
            ("with space/file name.txt", "spaces\n"),
        ],
        deletes=["notes.txt"],
    )),
    ("entry_meta", dict(
        message="Describe the table",
        entry_meta=[("data/table.csv", {"columns": ["id", "value"]})],
    )),
    ("workflow", dict(message="Release", workflow="release")),
]


def scenario(bucket, name, out_dir, workdir):
    """Push every SCENARIO step, save the manifests and quilt3's diffs; returns the index."""
    import quilt3

    ensure_bucket(bucket)
    # Only the last step uses a workflow; with a config present quilt3 writes
    # "workflow": {"id": null, ...} into every header, so earlier steps run without it.
    s3_client().delete_object(Bucket=bucket, Key=WORKFLOW_CONFIG_KEY)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    revisions = []
    diffs = []
    previous = None
    for revision, step in SCENARIO:
        if step.get("workflow"):
            s3_client().put_object(Bucket=bucket, Key=WORKFLOW_CONFIG_KEY,
                                   Body=WORKFLOW_CONFIG.encode())
        result = push(bucket, name, workdir=workdir, **step)
        top_hash = result["top_hash"]
        (out / f"{revision}.jsonl").write_bytes(manifest_bytes(bucket, top_hash))
        revisions.append({"name": revision, "top_hash": top_hash, "manifest": f"{revision}.jsonl"})
        if previous is not None:
            before = quilt3.Package.browse(name, registry=f"s3://{bucket}", top_hash=previous[1])
            after = quilt3.Package.browse(name, registry=f"s3://{bucket}", top_hash=top_hash)
            added, modified, deleted = before.diff(after)
            diffs.append({
                "from": previous[0],
                "to": revision,
                "added": sorted(added),
                "modified": sorted(modified),
                "deleted": sorted(deleted),
            })
        previous = (revision, top_hash)
    index = {
        "made_by": "scripts/quilt_packages.py scenario (quilt3 " + quilt3.__version__ + ")",
        "bucket": bucket,
        "package": name,
        "revisions": revisions,
        "diffs": diffs,
    }
    (out / "index.json").write_text(json.dumps(index, indent=2, ensure_ascii=False) + "\n",
                                    encoding="utf-8")
    return index


def table_steps():
    """The table scenario's revisions, (name, push arguments, {logical key: bytes}), in push
    order; each edits the previous one."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import table_fixtures as tf

    v1 = tf.parquet_bytes(tf.readings(1, 1200))
    scrambled = bytearray(v1)
    footer = int.from_bytes(v1[-8:-4], "little")
    for at in range(len(v1) - 8 - footer, len(v1) - 8):
        scrambled[at] = 0xFF
    return [
        ("tables_first", dict(base="none", message="Readings and stations",
                              meta={"stage": "review", "owner": "data-team"}), {
            "README.md": b"# Tables\n",
            "data/readings.parquet": v1,
            "data/stations.csv": tf.csv_bytes(tf.stations_rows()),
            "data/quoted.csv": tf.quoted_csv(),
        }),
        ("tables_schema", dict(message="Retype value, add station_id, drop note; more stations",
                               meta={"stage": "prod", "owner": "data-team"}), {
            "data/readings.parquet": tf.parquet_bytes(tf.readings(2, 1300)),
            "data/stations.csv": tf.csv_bytes(tf.stations_rows(extra=2)),
            "data/types.parquet": tf.parquet_bytes(tf.types_table()),
            "data/stations.tsv.gz": tf.gzipped(tf.csv_bytes(tf.stations_rows(), "\t")),
        }),
        ("tables_same_schema", dict(message="Recompute readings; a wide table; broken files"), {
            "data/readings.parquet": tf.parquet_bytes(tf.readings(3, 1300)),
            "data/wide.parquet": tf.parquet_bytes(tf.wide_table()),
            "data/wide.csv": tf.wide_csv(),
            "data/corrupt.parquet": bytes(scrambled),
            "data/truncated.parquet": v1[:len(v1) // 2],
            "data/binary.csv": v1,
        }),
    ]


TABLE_SUFFIXES = (".parquet", ".csv", ".tsv", ".csv.gz", ".tsv.gz")


def tables(bucket, name, workdir):
    """Push the table scenario; returns where each table file is and pyarrow's answers."""
    import quilt3

    sys.path.insert(0, str(ROOT / "scripts"))
    import table_fixtures as tf

    ensure_bucket(bucket)
    # Versioned, as Quilt buckets are: a revision's physical keys name their object versions,
    # so an older revision's files stay readable after a newer push replaces them.
    s3_client().put_bucket_versioning(Bucket=bucket,
                                      VersioningConfiguration={"Status": "Enabled"})
    revisions = []
    contents = {}
    for revision, step, files in table_steps():
        paths = []
        for logical_key, data in files.items():
            path = Path(workdir) / f"{revision}-{len(paths)}"
            path.write_bytes(data)
            paths.append((logical_key, str(path)))
            contents[logical_key] = data
        wait_for_new_pointer_second(bucket, name)
        result = push(bucket, name, set_files=paths, workdir=workdir, **step)
        pkg = quilt3.Package.browse(name, registry=f"s3://{bucket}", top_hash=result["top_hash"])
        described = {}
        for logical_key, data in sorted(contents.items()):
            if not logical_key.lower().endswith(TABLE_SUFFIXES):
                continue
            entry = pkg[logical_key]
            try:
                answer = tf.describe(logical_key, data)
            except Exception as e:  # noqa: BLE001  (what pyarrow says of a broken file)
                answer = {"error": f"{type(e).__name__}: {e}"}
            described[logical_key] = {
                "bucket": entry.physical_key.bucket,
                "key": entry.physical_key.path,
                "version": entry.physical_key.version_id,
                "size": entry.size,
                "answer": tf.shortened(answer),
            }
        revisions.append({"name": revision, "top_hash": result["top_hash"], "tables": described})
    return {"bucket": bucket, "name": name, "revisions": revisions}


def key_value(text):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected LOGICAL_KEY=VALUE, got {text!r}")
    return key, value


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint-url", help="S3 endpoint (default: $AWS_ENDPOINT_URL, else "
                        "http://127.0.0.1:$QN_LOCALSTACK_PORT)")
    sub = parser.add_subparsers(dest="command", required=True)
    inst = sub.add_parser("install", help="create .emulators/quilt-venv")
    inst.add_argument("--force", action="store_true")
    p = sub.add_parser("push", help="push one revision and print its top hash as JSON")
    p.add_argument("--bucket", required=True)
    p.add_argument("--name", required=True, help="package handle, e.g. team/demo")
    p.add_argument("--base", choices=["latest", "none"], default="latest",
                   help="start from the latest revision (default) or from an empty package")
    p.add_argument("--set", dest="set_files", action="append", type=key_value, default=[],
                   metavar="KEY=PATH", help="add or replace an entry from a local file")
    p.add_argument("--set-text", dest="set_texts", action="append", type=key_value, default=[],
                   metavar="KEY=TEXT", help="add or replace an entry with this text")
    p.add_argument("--delete", dest="deletes", action="append", default=[], metavar="KEY")
    p.add_argument("--meta", type=json.loads, help="package user_meta as JSON")
    p.add_argument("--message")
    p.add_argument("--workflow", help="workflow id (needs .quilt/workflows/config.yml)")
    p.add_argument("--diff", action="store_true",
                   help="add quilt3's Package.diff of the previous revision and this one")
    bk = sub.add_parser("bulk", help="build a revision of N entries without uploading files")
    bk.add_argument("--bucket", required=True)
    bk.add_argument("--name", required=True, help="package handle, e.g. team/demo")
    bk.add_argument("--files", type=int, required=True, help="number of file entries")
    bk.add_argument("--message")
    bk.add_argument("--meta", type=json.loads, help="package user_meta as JSON")
    sp = sub.add_parser("sample", help="push the sample package's next revision(s)")
    sp.add_argument("--bucket", default="example")
    sp.add_argument("--name", default="some/package")
    b = sub.add_parser("bucket", help="create or delete (emptying it first) a bucket")
    b.add_argument("action", choices=["create", "delete"])
    b.add_argument("--bucket", required=True)
    s = sub.add_parser("scenario", help="push the test scenario and save its manifests")
    s.add_argument("--bucket", default="quilt-notify-fixtures")
    s.add_argument("--name", default="team/demo")
    s.add_argument("--out", default=str(ROOT / "tests" / "data" / "quilt"))
    t = sub.add_parser("tables", help="push revisions of real tables, print pyarrow's answers")
    t.add_argument("--bucket", required=True)
    t.add_argument("--name", default="team/tables")
    args = parser.parse_args()

    if args.command == "install":
        install(args.force)
        return
    endpoint = args.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or \
        f"http://127.0.0.1:{os.environ.get('QN_LOCALSTACK_PORT', '4566')}"
    os.environ.update(environment(endpoint))
    ensure_quilt3()
    with tempfile.TemporaryDirectory(prefix="quilt-packages-") as workdir:
        if args.command == "push":
            ensure_bucket(args.bucket)
            wait_for_new_pointer_second(args.bucket, args.name)
            result = push(args.bucket, args.name, base=args.base, set_files=args.set_files,
                          set_texts=args.set_texts, deletes=args.deletes, meta=args.meta,
                          message=args.message, workflow=args.workflow, workdir=workdir,
                          diff=args.diff)
        elif args.command == "bulk":
            ensure_bucket(args.bucket)
            wait_for_new_pointer_second(args.bucket, args.name)
            result = bulk(args.bucket, args.name, args.files, message=args.message,
                          meta=args.meta)
        elif args.command == "bucket":
            if args.action == "create":
                ensure_bucket(args.bucket)
            else:
                delete_bucket(args.bucket)
            result = {"bucket": args.bucket, "action": args.action}
        elif args.command == "tables":
            result = tables(args.bucket, args.name, workdir)
        elif args.command == "sample":
            ensure_bucket(args.bucket)
            result = sample(args.bucket, args.name, workdir)
        else:
            result = scenario(args.bucket, args.name, args.out, workdir)
    json.dump(result, sys.stdout, ensure_ascii=False)
    print()


if __name__ == "__main__":
    main()
