#!/usr/bin/env python3
"""What `changes.tables` costs a running worker per event (issue 22), against LocalStack.

Run through scripts/bench-tables, which starts the emulators first. Steps:

  1. push (quilt3, under .emulators/quilt-venv: this file's `push` sub-command calls
     scripts/quilt_packages.py's push once per revision, one process per package, the
     packages at once): for each N of --files,
     the package bench/tables-nN in a versioned bucket of the run's own, a first revision of N
     Parquet files data/pNN.parquet, then --revisions K revisions each of which modifies all N
     (pyarrow's tests/data/tables/readings_v1.parquet and readings_v2.parquet in turn: a column
     added, one removed, one retyped, 120 <-> 130 rows). Every file version is checked to be a
     new S3 version.
  2. for each N, binary and repeat, two worker runs on a fresh queue each, tables on
     (s3.tables = true, s3.max_tables = 50) and off (QUILT_NOTIFY__S3__TABLES=false), in turn:
     the worker (`run`, config/templates' package-created, which shows changes.tables, details
     on, every other setting its default) gets the K package-revision events (EventBridge
     envelopes: detail.bucket, handle, topHash) of that package in push order:
       stream  one at a time, each sent once the previous one's outcome line is out: a stream
               of revisions, where the worker has described the previous version of each file
               when the previous revision's event was handled (the case the table cache is for)
       burst   all K on the queue before the worker starts, drained with the default
               concurrency (40): revisions whose events are handled at once
  3. per run: the worker's CPU (user + sys) from its "worker started" line to the last outcome
     line, per event, summed over its threads from /proc/PID/task/TID/schedstat (the
     scheduler's runtime in ns: a stream event's few milliseconds are below /proc/PID/stat's
     10 ms ticks, which results.json keeps beside); in stream mode also after each event, so
     the steady state (events 2..K, warm caches and connections) is apart from the first; wall per
     event (the outcome line's elapsed_ms: receive to delete of that one message); S3 requests
     per event from LocalStack's request log (.emulators/logs/localstack-PORT.log, one
     "AWS s3.OPERATION => STATUS" line per request), attributed in stream mode to the event
     sent last before them.
  4. checks: every event's email is in the SES emulator's store exactly once (the subject holds
     the revision's short hash); tables on, its text lists all N tables with the rows of both
     versions (120 -> 130 or back) and the columns added, removed and retyped; tables off, it
     has no Tables section; every file version of
     every revision is a new S3 version. Any miss fails the run.

Results: results.json and results.md in --out; worker logs and configs in --out/logs. At the end
the run's queues and bucket are deleted and the SES emulator's store emptied (it is the bench's
own: scripts/bench-tables gives it QN_BENCH_SES_PORT).
"""

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))

from qnbench import ROOT, BenchError, log  # noqa: E402 - the scripts folder, put on the path above
from qnbench.procfs import Machine, binary_info, listener_pgid, machine_info  # noqa: E402
from qnbench.worker import Worker  # noqa: E402

QUILT_PYTHON = ROOT / ".emulators/quilt-venv/bin/python"
FIXTURES = ROOT / "tests/data/tables"
# (file, rows) of the two versions the revisions alternate between: revision 0 and every even
# one hold V1, every odd one V2.
V1 = ("readings_v1.parquet", 120)
V2 = ("readings_v2.parquet", 130)
# What the text template says of each file's columns, from V1 to V2 and back.
COLUMNS = {
    (V1, V2): ["+ station_id (int64)", "- note (string)", "~ value: int32 → double"],
    (V2, V1): ["+ note (string)", "- station_id (int64)", "~ value: double → int32"],
}
MAX_TABLES = 50
S3_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)\s.*\bAWS s3\.(\w+) => (\d+)")


def task_cpu_ns(pid):
    """{thread id: CPU nanoseconds} of a process's live threads (/proc/PID/task/TID/schedstat, first
    field: the scheduler's own runtime, exact, where /proc/PID/stat counts 10 ms ticks)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                out[tid] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return out


class ExactCpu:
    """A process's CPU seconds from its threads' schedstat. A thread that exits takes its figure
    with it: its last reading is kept, and `exited` counts such threads (what they ran after that
    reading is missed; /proc/PID/stat's ticks, which count it, are kept beside)."""

    def __init__(self, pid):
        self.pid = pid
        self.last = {}
        self.gone = set()

    @property
    def threads(self):
        return len(self.last)

    @property
    def exited(self):
        return len(self.gone)

    def read(self):
        now = task_cpu_ns(self.pid)
        self.gone |= set(self.last) - set(now)
        self.last.update(now)
        return sum(self.last.values()) / 1e9


def version_of(revision):
    """The fixture revision `revision` holds in every file: (file name, rows)."""
    return V2 if revision % 2 else V1


def package_name(n):
    return f"bench/tables-n{n}"


def logical_key(i):
    return f"data/p{i:02d}.parquet"


# -- pure parts (unit-tested in scripts/tests/test_bench_tables.py)


def parse_s3_requests(lines):
    """[(unix time, operation, status)] of LocalStack's request log lines for S3. LocalStack
    writes its local time without a zone."""
    out = []
    for line in lines:
        match = S3_LINE.match(line)
        if match:
            stamp, operation, status = match.groups()
            out.append((datetime.fromisoformat(stamp).timestamp(), operation, int(status)))
    return out


def count_by_operation(requests):
    counts = {}
    for _, operation, _ in requests:
        counts[operation] = counts.get(operation, 0) + 1
    return dict(sorted(counts.items()))


def attribute_requests(requests, sent_at):
    """Per event (in send order), how many GetObject requests came after it was sent and before
    the next one was: in a stream, each event's own reads. Requests before the first send
    count for none."""
    per_event = [0] * len(sent_at)
    for t, operation, _ in requests:
        if operation != "GetObject":
            continue
        index = None
        for i, start in enumerate(sent_at):
            if t >= start:
                index = i
        if index is not None:
            per_event[index] += 1
    return per_event


def check_email(mail, n, revision, tables):
    """What is wrong with one run's email for the revision `revision` of the N-file package
    (None when nothing is): tables on, the text lists every file with both versions' rows;
    off, it has no Tables section."""
    text = (mail.get("body") or {}).get("text") or ""
    subject = mail.get("subject") or ""
    if f"~{n} files" not in subject:
        return f"subject {subject!r} does not say ~{n} files"
    has_section = "\n  Tables" in text
    if not tables:
        return "tables are off but the text has a Tables section" if has_section else None
    if not has_section:
        return "tables are on but the text has no Tables section"
    before, after = version_of(revision - 1), version_of(revision)
    for i in range(n):
        entry = "".join(f"{line}\n" for line in [
            f"    {logical_key(i)} (parquet, modified)",
            f"      Rows:    {before[1]} → {after[1]}",
            "      Columns: 4",
            *(f"      {change}" for change in COLUMNS[before, after]),
        ])
        if entry not in text:
            return f"the Tables section lacks {entry!r}"
    return None


def summarize_run(run):
    """Per-event figures of one run from its raw readings."""
    k = run["events"]
    out = {
        "cpu_us_per_event": round(run["cpu_s"] / k * 1e6),
        "cpu_ticks_us_per_event": round(run["cpu_ticks_s"] / k * 1e6),
        "gets_per_event": round(run["s3_requests"].get("GetObject", 0) / k, 2),
        "s3_requests_per_event": round(sum(run["s3_requests"].values()) / k, 2),
        "wall_ms_per_event": round(statistics.mean(run["elapsed_ms"]), 2),
        "wall_ms_median": round(statistics.median(run["elapsed_ms"]), 2),
    }
    marks = run.get("cpu_after_event")
    if marks and k > 1:
        out["steady_cpu_us_per_event"] = round((marks[-1] - marks[0]) / (k - 1) * 1e6)
        out["steady_wall_ms_per_event"] = round(statistics.mean(run["elapsed_ms"][1:]), 2)
        gets = run.get("gets_by_event")
        if gets:
            out["first_event_gets"] = gets[0]
            out["steady_gets_per_event"] = round(sum(gets[1:]) / (k - 1), 2)
    return out


def median_of(runs, key):
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def compare(on_runs, off_runs):
    """Tables on and off over the repeats: the medians of each, and what tables add: the median
    of the differences of the pairs (the runs of a pair are back to back, on the same load)."""
    row = {"repeats": len(on_runs)}
    keys = ["cpu_us_per_event", "cpu_ticks_us_per_event", "steady_cpu_us_per_event", "gets_per_event",
            "steady_gets_per_event", "first_event_gets", "s3_requests_per_event", "wall_ms_per_event",
            "steady_wall_ms_per_event", "wall_ms_median"]
    for key in keys:
        pairs = [(on[key], off[key]) for on, off in zip(on_runs, off_runs, strict=True)
                 if on.get(key) is not None and off.get(key) is not None]
        if not pairs:
            continue
        added = [round(on - off, 2) for on, off in pairs]
        row[key] = {"on": statistics.median(on for on, _ in pairs), "off": statistics.median(off for _, off in pairs),
                    "added": round(statistics.median(added), 2), "on_runs": [on for on, _ in pairs],
                    "off_runs": [off for _, off in pairs], "added_runs": added}
    return row


def fmt(value, digits=0):
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def markdown(results):
    """The results table: one row per binary, mode and N."""
    lines = [
        "| binary | mode | N | CPU/event on | off | **added** (each pair) | GETs/event on | off | added | "
        "CPU per added GET | wall/event on | off | added |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in results["table"]:
        steady = row["mode"] == "stream"
        cpu = row.get("steady_cpu_us_per_event" if steady else "cpu_us_per_event")
        gets = row.get("steady_gets_per_event" if steady else "gets_per_event")
        wall = row.get("steady_wall_ms_per_event" if steady else "wall_ms_per_event")
        cells = [row["binary"], row["mode"], str(row["files"])]
        if cpu:
            pairs = " / ".join(f"{a:+,.0f}" for a in cpu["added_runs"])
            cells += [fmt(cpu["on"]) + " µs", fmt(cpu["off"]) + " µs", f"**{cpu['added']:+,.0f} µs** ({pairs})"]
        else:
            cells += ["–"] * 3
        cells += [fmt(gets["on"], 1), fmt(gets["off"], 1), f"{gets['added']:+,.1f}"] if gets else ["–"] * 3
        per_get = cpu["added"] / gets["added"] if cpu and gets and gets["added"] >= 1 else None
        cells.append(f"{fmt(per_get)} µs" if per_get is not None else "–")
        cells += ([fmt(wall["on"], 1) + " ms", fmt(wall["off"], 1) + " ms", f"{wall['added']:+,.1f} ms"] if wall
                  else ["–"] * 3)
        lines.append("| " + " | ".join(cells) + " |")
    notes = [
        "",
        "stream: events 2..K (the first event of each run, cold caches and connections, apart); "
        "burst: all K events, the first included. on, off: medians over the repeats; added: the "
        "median of the pairs' differences (each pair's in parentheses). CPU: the worker's, summed "
        "over its threads from /proc/PID/task/TID/schedstat (user + sys, exact; results.json also "
        "has /proc/PID/stat's 10 ms ticks). GETs: S3 GetObject requests in LocalStack's log. CPU "
        "per added GET: CPU added ÷ GETs added. wall: the outcome line's elapsed_ms (receive to "
        "delete; in burst mode, of the message's batch).",
    ]
    return "\n".join(lines + notes) + "\n"


# -- push (runs under .emulators/quilt-venv's Python: quilt3)


def push_main(argv):
    """Pushes one package's revisions; prints [{"top_hash", "versions", "time"}] in push order."""
    parser = argparse.ArgumentParser(prog="bench_tables.py push")
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--files", type=int, required=True)
    parser.add_argument("--revisions", type=int, required=True)
    args = parser.parse_args(argv)
    import tempfile

    import quilt_packages as qp

    os.environ.update(qp.environment(args.endpoint))
    import quilt3

    n = args.files
    name = package_name(n)
    s3 = qp.s3_client()
    s3.put_bucket_versioning(Bucket=args.bucket, VersioningConfiguration={"Status": "Enabled"})
    out = []
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-tables-") as workdir:
        for revision in range(args.revisions + 1):
            source = str(FIXTURES / version_of(revision)[0])
            qp.wait_for_new_pointer_second(args.bucket, name)
            result = qp.push(args.bucket, name, base="none" if revision == 0 else "latest",
                             set_files=[(logical_key(i), source) for i in range(n)],
                             message=f"revision {revision}", workdir=workdir)
            pkg = quilt3.Package.browse(name, registry=f"s3://{args.bucket}", top_hash=result["top_hash"])
            versions = [pkg[logical_key(i)].physical_key.version_id for i in range(n)]
            # The revision's pointer, named by its push's epoch second: the event's time, as
            # EventBridge's is (the worker looks for the pointer closest to it).
            listed = s3.list_objects_v2(Bucket=args.bucket, Prefix=f".quilt/named_packages/{name}/")
            pushed_at = max(int(k) for k in (o["Key"].rsplit("/", 1)[-1] for o in listed["Contents"]) if k.isdigit())
            out.append({"top_hash": result["top_hash"], "versions": versions, "time": pushed_at})
            qp.log(f"{name}: revision {revision} of {args.revisions} pushed ({time.time() - started:.0f} s)")
    json.dump(out, sys.stdout)
    print()


# -- the bench (runs under .emulators/venv's Python: boto3)


def make_event(bucket, n, revision):
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "package-revision",
        "source": "com.quiltdata",
        "account": "012345678901",
        "time": datetime.fromtimestamp(revision["time"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [],
        "detail": {"version": "0.1", "type": "created", "bucket": bucket, "handle": package_name(n),
                   "topHash": revision["top_hash"]},
    }


class TablesBench:
    def __init__(self, args):
        from qnbench.clients import client

        self.args = args
        self.run_id = datetime.now(UTC).strftime("%Y%m%d%H%M%S") + "-" + uuid.uuid4().hex[:4]
        self.bucket = f"qn-bench-tables-{self.run_id}"
        self.out = Path(args.out)
        self.logs = self.out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.sqs = client("sqs", args.endpoint)
        self.queues = []
        ls_port = int(args.endpoint.rsplit(":", 1)[1].rstrip("/"))
        ses_port = int(args.ses_endpoint.rsplit(":", 1)[1].rstrip("/"))
        self.localstack_log = Path(args.localstack_log)
        self.machine = Machine({"localstack": listener_pgid(ls_port), "ses_emulator": listener_pgid(ses_port)})
        self.binaries = []
        for spec in args.binary or [f"this={ROOT / 'target/release/quilt-notify'}"]:
            label, sep, path = spec.partition("=")
            if not sep:
                label, path = Path(spec).parent.name or "binary", spec
            self.binaries.append((label, Path(path).resolve()))

    # -- resources

    def push(self):
        log(f"pushing {self.args.revisions + 1} revisions of packages with {self.args.files} Parquet files "
            f"to s3://{self.bucket} (quilt3; progress in {self.logs}/push-nN.log)")
        started = time.time()
        bucket = subprocess.run([str(QUILT_PYTHON), str(SCRIPTS / "quilt_packages.py"), "--endpoint-url",
                                 self.args.endpoint, "bucket", "create", "--bucket", self.bucket],
                                capture_output=True, text=True, check=False)
        if bucket.returncode != 0:
            raise BenchError(f"could not create the bucket {self.bucket}: {bucket.stderr.strip()[-600:]}")
        # One process per package, at once: a push is mostly waiting for LocalStack.
        procs = {}
        for n in self.args.files.split(","):
            push_log = self.logs / f"push-n{n}.log"
            with open(push_log, "w") as err:
                procs[int(n)] = (push_log, subprocess.Popen(
                    [str(QUILT_PYTHON), __file__, "push", "--endpoint", self.args.endpoint, "--bucket", self.bucket,
                     "--files", n, "--revisions", str(self.args.revisions)],
                    stdout=subprocess.PIPE, stderr=err, text=True))
        pushed = {}
        failed = []
        for n, (push_log, proc) in procs.items():
            stdout, _ = proc.communicate()
            if proc.returncode != 0:
                tail = "\n".join(push_log.read_text().splitlines()[-20:])
                failed.append(f"{package_name(n)} (exit {proc.returncode}; {push_log}):\n{tail}")
            else:
                pushed[n] = json.loads(stdout)
        if failed:
            raise BenchError("pushing the revisions failed: " + "\n".join(failed))
        for n, revisions in pushed.items():
            for i in range(int(n)):
                versions = [r["versions"][i] for r in revisions]
                if None in versions or len(set(versions)) != len(versions):
                    raise BenchError(f"{logical_key(i)} of {package_name(n)}: its revisions do not each hold a "
                                     f"new S3 version ({versions[:4]}...): the bucket is not versioned?")
        log(f"pushed in {time.time() - started:.0f} s")
        return pushed, round(time.time() - started, 1)

    def delete_bucket(self):
        """The run's bucket, every version of every object in it (LocalStack keeps them in memory)."""
        out = subprocess.run([str(QUILT_PYTHON), str(SCRIPTS / "quilt_packages.py"), "--endpoint-url",
                              self.args.endpoint, "bucket", "delete", "--bucket", self.bucket],
                             capture_output=True, text=True, check=False)
        if out.returncode != 0:
            log(f"warning: could not delete the bucket {self.bucket}: {out.stderr.strip()[-300:]}")

    def make_queue(self, label):
        url = self.sqs.create_queue(QueueName=f"qn-bench-tables-{self.run_id}-{label}")["QueueUrl"]
        self.queues.append(url)
        return url

    def delete_queues(self):
        for url in self.queues:
            try:
                self.sqs.delete_queue(QueueUrl=url)
            except Exception as exc:  # noqa: BLE001 - a leftover queue is only a warning
                log(f"warning: could not delete queue {url}: {exc}")

    def write_config(self, label, queue_url, recipient):
        pattern = {"source": ["com.quiltdata"], "detail-type": ["package-revision"],
                   "detail": {"bucket": [self.bucket]}}
        text = f"""# Written by scripts/bench_tables.py for run {self.run_id}, {label}.
# Everything else comes from config/default.toml (the worker defaults under test).
[aws]
region = "us-east-1"

[queue]
url = {json.dumps(queue_url)}
endpoint_url = {json.dumps(self.args.endpoint)}

[s3]
endpoint_url = {json.dumps(self.args.endpoint)}
details = true
max_tables = {MAX_TABLES}

[ses]
endpoint_url = {json.dumps(self.args.ses_endpoint)}
from = "Quilt notifications <quilt-notify@example.com>"

[catalog]
host = "catalog.example.com"

[templates]
dir = {json.dumps(str(ROOT / "config/templates"))}

# package-created shows changes.tables: with s3.tables on, the worker reads them.
[[routes]]
name = "tables"
template = "package-created"
to = [{json.dumps(recipient)}]
pattern = {json.dumps(json.dumps(pattern))}
"""
        path = self.logs / f"{label}.toml"
        path.write_text(text)
        return path

    def worker_env(self, tables):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("QUILT_NOTIFY", "AWS_", "RUST_LOG"))}
        env.update({
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "QUILT_NOTIFY__LOG__FORMAT": "json",
            # The SES emulator's account says 14/s; the bench measures the worker, not that quota.
            "QUILT_NOTIFY__SES__MAX_SEND_RATE": "100000",
        })
        if not tables:
            env["QUILT_NOTIFY__S3__TABLES"] = "false"
        return env

    # -- one run

    def localstack_log_size(self):
        try:
            return self.localstack_log.stat().st_size
        except OSError:
            return None

    def s3_requests_since(self, offset):
        if offset is None:
            return None
        with open(self.localstack_log, "rb") as f:
            f.seek(offset)
            return parse_s3_requests(f.read().decode("utf-8", "replace").splitlines())

    def run(self, binary, label, n, revisions, tables, mode):
        k = len(revisions) - 1
        name = f"{label}-{mode}-n{n}-{'on' if tables else 'off'}-{len(self.queues) + 1}"
        recipient = f"tables-{self.run_id}-{len(self.queues) + 1}@example.com"
        url = self.make_queue(name)
        config = self.write_config(name, url, recipient)
        events = [make_event(self.bucket, n, r) for r in revisions[1:]]
        ids = [e["id"] for e in events]
        since = int(time.time()) - 1
        if mode == "burst":
            for start in range(0, k, 10):
                entries = [{"Id": str(i), "MessageBody": json.dumps(e)} for i, e in enumerate(events[start:start + 10])]
                if self.sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed"):
                    raise BenchError("SendMessageBatch failed")
        offset = self.localstack_log_size()
        before = self.machine.snapshot()
        worker = Worker(binary, config, self.worker_env(tables), self.logs / f"{name}.log")
        sent_at = []
        marks = []
        try:
            worker.wait_for(lambda: worker.started_ts is not None, 60, "the worker to start")
            exact = ExactCpu(worker.pid)
            exact_started = exact.read()
            ticks_started = worker.cpu()
            wall_started = time.time()

            def outcome_of(event_id):
                return next((o for _, i, o in worker.outcomes if i == event_id), None)

            if mode == "stream":
                for event in events:
                    sent_at.append(time.time())
                    self.sqs.send_message(QueueUrl=url, MessageBody=json.dumps(event))
                    worker.wait_for(lambda e=event: outcome_of(e["id"]) is not None, self.args.timeout,
                                    f"event {event['id']}")
                    marks.append(exact.read() - exact_started)
            else:
                worker.wait_for(lambda: all(outcome_of(i) is not None for i in ids), self.args.timeout,
                                f"{k} events")
            cpu = exact.read() - exact_started
            ticks = worker.cpu() - ticks_started
            drain_s = time.time() - wall_started
            after = self.machine.snapshot()
        finally:
            stopped = worker.stop(signal.SIGKILL, grace=5)
        with worker.lock:
            outcomes = {i: o for _, i, o in worker.outcomes}
        wrong = {i: outcomes.get(i) for i in ids if outcomes.get(i) != "sent"}
        if wrong:
            raise BenchError(f"{name}: {len(wrong)} events not sent: {list(wrong.values())[:3]}; "
                             f"errors {worker.errors[:3]}; log {worker.log_file.name}")
        elapsed = {}
        for line in Path(worker.log_file.name).read_text().splitlines():
            if line.startswith("{") and '"outcome"' in line:
                obj = json.loads(line)
                elapsed.setdefault(obj.get("event_id"), obj.get("elapsed_ms"))
        time.sleep(0.5)  # LocalStack's last log lines
        requests = self.s3_requests_since(offset)
        self.check_mail(name, recipient, since, n, [r["top_hash"] for r in revisions], tables)
        result = {
            "name": name, "binary": label, "mode": mode, "files": n, "tables": tables, "events": k,
            "cpu_s": round(cpu, 6), "cpu_ticks_s": round(ticks, 2), "drain_s": round(drain_s, 3),
            "threads": exact.threads, "threads_exited": exact.exited,
            "elapsed_ms": [elapsed[i] for i in ids],
            "s3_requests": count_by_operation(requests) if requests is not None else {},
            "machine": Machine.delta(before, after, cpu, k),
            "worker_exit": stopped,
        }
        if mode == "stream":
            result["cpu_after_event"] = [round(m, 6) for m in marks]
            if requests is not None:
                result["gets_by_event"] = attribute_requests(requests, sent_at)
        result["summary"] = summarize_run(result)
        s = result["summary"]
        log(f"{name}: {s.get('steady_cpu_us_per_event', s['cpu_us_per_event'])} µs CPU/event, "
            f"{s.get('steady_gets_per_event', s['gets_per_event'])} GETs/event, "
            f"{s.get('steady_wall_ms_per_event', s['wall_ms_per_event'])} ms/event; machine "
            f"{result['machine']['machine_busy_cores']} cores busy")
        return result

    def check_mail(self, name, recipient, since, n, top_hashes, tables):
        url = f"{self.args.ses_endpoint.rstrip('/')}/store?since={since}"
        with urllib.request.urlopen(url, timeout=120) as response:
            mails = [m for m in json.load(response)["emails"]
                     if recipient in (m.get("destination") or {}).get("to", [])]
        problems = []
        for revision, top_hash in enumerate(top_hashes[1:], start=1):
            mine = [m for m in mails if f"@ {top_hash[:7]} " in (m.get("subject") or "")]
            if len(mine) != 1:
                problems.append(f"revision {revision} ({top_hash[:7]}): {len(mine)} emails")
                continue
            problem = check_email(mine[0], n, revision, tables)
            if problem:
                problems.append(f"revision {revision}: {problem}")
        if len(mails) != len(top_hashes) - 1:
            problems.append(f"{len(mails)} emails to {recipient} for {len(top_hashes) - 1} events")
        if problems:
            raise BenchError(f"{name}: the SES store does not hold the expected emails: {problems[:5]}")

    def clear_store(self):
        """Empties the bench's SES emulator once its emails are checked: with a few thousand
        emails listing tables (MBs), start-emulators' readiness check (GET /store, whole) times
        out. The emulator is the bench's own (QN_BENCH_SES_PORT), under the bench lock."""
        request = urllib.request.Request(f"{self.args.ses_endpoint.rstrip('/')}/clear-store", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=120):
                pass
        except OSError as exc:
            log(f"warning: could not clear the SES emulator's store: {exc}")

    # -- all runs

    def main(self):
        started = time.time()
        machine = machine_info()
        counts = [int(x) for x in self.args.files.split(",")]
        modes = self.args.mode.split(",")
        runs = []
        try:
            hashes, push_s = self.push()
            for rep in range(self.args.repeat):
                for n in counts:
                    for mode in modes:
                        for label, binary in self.binaries:
                            order = (True, False) if rep % 2 == 0 else (False, True)
                            for tables in order:
                                runs.append(self.run(binary, label, n, hashes[n], tables, mode))
        finally:
            self.delete_queues()
            self.clear_store()
            self.delete_bucket()
        table = []
        for n in counts:
            for mode in modes:
                for label, _ in self.binaries:
                    mine = [r for r in runs if (r["binary"], r["mode"], r["files"]) == (label, mode, n)]
                    on = [r["summary"] for r in mine if r["tables"]]
                    off = [r["summary"] for r in mine if not r["tables"]]
                    table.append({"binary": label, "mode": mode, "files": n, **compare(on, off)})
        busy = [r["machine"]["machine_busy_cores"] for r in runs]
        others = [r["machine"]["other_processes_cores"] for r in runs]
        results = {
            "run_id": self.run_id,
            "started": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
            "duration_s": round(time.time() - started, 1),
            "push_s": push_s,
            "command": " ".join(sys.argv),
            "revisions": self.args.revisions,
            "files": counts,
            "modes": modes,
            "repeat": self.args.repeat,
            "binaries": {label: binary_info(path) for label, path in self.binaries},
            "machine": {**machine, "load_average_at_end": list(os.getloadavg()),
                        "busy_cores_during_runs": {"min": min(busy), "median": statistics.median(busy),
                                                   "max": max(busy)},
                        "other_processes_cores_during_runs": {"min": min(others),
                                                              "median": statistics.median(others),
                                                              "max": max(others)}},
            "table": table,
            "runs": runs,
        }
        (self.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
        md = markdown(results)
        (self.out / "results.md").write_text(md)
        print(md)
        log(f"machine: {machine['nproc']} cores, load average {machine['load_average_at_start']} at start, "
            f"{results['machine']['load_average_at_end']} at end; busy cores during the runs "
            f"{results['machine']['busy_cores_during_runs']}, of which others' "
            f"{results['machine']['other_processes_cores_during_runs']}")
        log(f"results in {self.out}/results.json and results.md ({results['duration_s']:.0f} s in all)")


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="bench_tables.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", action="append", metavar="[LABEL=]PATH",
                        help="a quilt-notify binary to measure (repeatable: each is run on the same "
                             "packages, in turn; default this=target/release/quilt-notify)")
    parser.add_argument("--files", default="1,20,50", help="Parquet files per package, comma-separated "
                        f"(at most {MAX_TABLES}; default %(default)s)")
    parser.add_argument("--revisions", type=int, default=40,
                        help="revisions after the first, each modifying every file: events per run "
                             "(default %(default)s)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="tables-on/off pairs per binary, mode and N; the order alternates "
                             "(default %(default)s)")
    parser.add_argument("--mode", default="stream", help="stream, burst or stream,burst (default %(default)s)")
    parser.add_argument("--out", default=str(ROOT / "target/bench-tables"))
    parser.add_argument("--endpoint", default="http://127.0.0.1:4566", help="LocalStack (S3 and SQS)")
    parser.add_argument("--ses-endpoint", default="http://127.0.0.1:8205", help="SES v2 emulator")
    parser.add_argument("--localstack-log", default=str(ROOT / ".emulators/logs/localstack-4566.log"),
                        help="LocalStack's log, where its request lines are counted")
    parser.add_argument("--timeout", type=float, default=120, help="seconds an event (burst: a run) may take")
    args = parser.parse_args(argv)
    counts = args.files.split(",")
    if not all(c.isdigit() and 1 <= int(c) <= MAX_TABLES for c in counts):
        parser.error(f"--files: numbers from 1 to {MAX_TABLES}, not {args.files!r}")
    if args.revisions < 2 or args.repeat < 1:
        parser.error("--revisions must be at least 2 and --repeat at least 1")
    if not set(args.mode.split(",")) <= {"stream", "burst"}:
        parser.error(f"--mode: stream, burst or both, not {args.mode!r}")
    return args


def main():
    if sys.argv[1:2] == ["push"]:
        push_main(sys.argv[2:])
        return
    args = parse_args(sys.argv[1:])
    try:
        TablesBench(args).main()
    except BenchError as exc:
        log(f"error: {exc}")
        sys.exit(1)


if __name__ == "__main__":
    main()
