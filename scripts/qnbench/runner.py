"""Bench: runs the phases (qnbench/phases.py) against the emulators and gathers their results."""

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

from . import DEFAULTS, ROOT, BenchError, log
from .capacity import per_message
from .clients import KeepAliveRelay, RawJson, client, depth
from .peer import Peer, node_version, settle_times, versions
from .phases import PHASES
from .procfs import Machine, binary_info, listener_pgid, machine_info, proc_cpu
from .stats import (
    digest_cost,
    email_chars,
    latency_summary,
    median,
    median_run,
    peer_ratio,
    per_tenth,
    percentile,
    recorded_check,
    repeat_summary,
    state_cost,
    targets,
)
from .worker import SETTLED, TRANSMIT_TARGET, Sampler, Worker

sys.path.insert(0, str(ROOT / "scripts"))
import setup_resources

# SendMessageBatch calls at once while pre-loading.
PRELOAD_THREADS = 4
# The digest phase's route.
DIGEST_ROUTE = "package-digest"


def make_event(run_id, index, bucket):
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "package-revision",
        "source": "com.quiltdata",
        "account": "012345678901",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "version": "0.1",
            "type": "created",
            "bucket": bucket,
            "handle": f"bench/{run_id}/{index:06d}",
            "topHash": secrets.token_hex(32),
        },
    }





def drain_figures(n, window, cpu, splits, mem_drained, machine):
    """A drain's CPU figures, the same keys for the worker's runs and the peer's: `cpu` seconds for
    `n` messages in `window` seconds; `splits` the (user, sys) seconds at its start and end, for the
    kernel's share (sockets, epoll) and the process's own."""
    (user0, sys0), (user1, sys1) = splits
    return {
        "worker_cpu_s": round(cpu, 3),
        "worker_cpu_s_per_1000": round(cpu / n * 1000, 4),
        "worker_cpu_us_per_message": round(cpu / n * 1e6, 1),
        "worker_cpu_user_us_per_message": round((user1 - user0) / n * 1e6, 1),
        "worker_cpu_sys_us_per_message": round((sys1 - sys0) / n * 1e6, 1),
        "worker_cpu_cores": round(cpu / window, 3),
        "rss_kb_at_drain": mem_drained.get("VmRSS"),
        "machine": machine,
    }

class Bench:
    def __init__(self, args):
        self.args = args
        self.run_id = args.run_id or (datetime.now(UTC).strftime("%Y%m%d%H%M%S") + "-" + secrets.token_hex(2))
        self.sqs = client("sqs", args.endpoint, pool=PRELOAD_THREADS + 2)
        self.out = Path(args.out)
        self.logs = Path(args.logs)
        self.out.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.queues = []
        self.tables = []
        self.bucket = f"qn-bench-{self.run_id}"
        self.recipient = f"bench-{self.run_id}@example.com"
        ses_port = urlparse(args.ses_endpoint).port
        ls_port = urlparse(args.endpoint).port
        emulators = {"localstack": listener_pgid(ls_port), "ses_emulator": listener_pgid(ses_port)}
        if any(PHASES[p].moto for p in args.phases.split(",")):
            # moto's CPU counts as an emulator's (not as other processes') in every phase of the run.
            emulators["moto"] = listener_pgid(urlparse(args.moto_endpoint).port or 80)
        self.machine = Machine(emulators)
        self.env = self._worker_env()
        self.relay = None
        self.state_endpoint = args.moto_endpoint
        if any(PHASES[p].moto for p in args.phases.split(",")) and args.moto_relay:
            self.relay = KeepAliveRelay(args.moto_endpoint)
            self.state_endpoint = self.relay.endpoint

    # -- resources

    def make_queue(self, phase):
        """A queue, DLQ and rule of the phase's own, made by setup_resources.py as for the tests."""
        name = f"qn-bench-{self.run_id}-{phase}"
        args = setup_resources.parse_args(["--endpoint", self.args.endpoint, "--queue", name, "--bucket", self.bucket])
        self.queues.append(args)
        return setup_resources.create(args, *setup_resources.clients(args, "sqs", "events", "s3"))["queue_url"]

    def delete_queues(self):
        for args in self.queues:
            try:
                setup_resources.delete(args, *setup_resources.clients(args, "sqs", "events"))
            except Exception as exc:  # noqa: BLE001 - a leftover queue is only a warning
                log(f"warning: could not delete queue {args.queue}: {exc}")
        self.queues = []

    def make_table(self, phase, config):
        """A fresh state table on moto, made by the binary under test (`state create`), which reads
        state.table and state.endpoint_url from `config`."""
        name = f"qn-bench-{self.run_id}-{phase}"
        self.tables.append(name)
        out = subprocess.run([str(self.args.binary), "state", "create", "--config", str(config)],
                             capture_output=True, text=True, env=self.env, check=False, timeout=120)
        if out.returncode != 0:
            raise BenchError(f"quilt-notify state create (table {name}): exit {out.returncode}: "
                             f"{(out.stderr or out.stdout).strip()[-600:]}")
        return name

    def delete_tables(self):
        """DeleteTable on moto for every table this run made."""
        if not self.tables:
            return
        dynamodb = client("dynamodb", self.args.moto_endpoint)
        for name in self.tables:
            try:
                dynamodb.delete_table(TableName=name)
            except dynamodb.exceptions.ResourceNotFoundException:
                pass
            except Exception as exc:  # noqa: BLE001 - a leftover table is only a warning
                log(f"warning: could not delete state table {name}: {exc}")
        self.tables = []

    def _worker_env(self):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("QUILT_NOTIFY", "AWS_", "RUST_LOG"))}
        env.update({
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "QUILT_NOTIFY__LOG__FORMAT": "json",
            # The SES emulator's account says 14/s; the bench measures the worker, not that quota.
            "QUILT_NOTIFY__SES__MAX_SEND_RATE": str(self.args.max_send_rate),
        })
        for setting in self.args.set:
            key, _, value = setting.partition("=")
            env["QUILT_NOTIFY__" + "__".join(part.upper() for part in key.split("."))] = value
        return env

    def write_config(self, phase, queue_url, bucket, table=None, digest_at=None):
        """The worker's config for a phase; with `digest_at` (HH:MM, UTC) its route is a daily
        digest route closing then, instead of an email per event."""
        pattern = {
            "source": ["com.quiltdata"],
            "detail-type": ["package-revision"],
            "detail": {"type": ["created"], "bucket": [bucket], "handle": [{"prefix": "bench/"}]},
        }
        text = f"""# Written by scripts/bench.py for the {phase} phase of run {self.run_id}.
# Everything else comes from config/default.toml (the worker defaults under test).
[aws]
region = "us-east-1"

[queue]
url = {json.dumps(queue_url)}
endpoint_url = {json.dumps(self.args.endpoint)}

[s3]
# The enriched path (manifest reads) is measured by benches/details.rs; this load test keeps
# measuring the queue-to-SES path it always has, comparable with docs/performance.md.
endpoint_url = {json.dumps(self.args.endpoint)}
details = false

[ses]
endpoint_url = {json.dumps(self.args.ses_endpoint)}
from = "Quilt notifications <quilt-notify@example.com>"

[catalog]
host = "catalog.example.com"
{self._state_section(table)}
[templates]
dir = {json.dumps(str(ROOT / "config/templates"))}

[[routes]]
{self._route(digest_at)}
to = [{json.dumps(self.recipient)}]
pattern = {json.dumps(json.dumps(pattern))}
"""
        path = self.logs / f"{phase}.toml"
        path.write_text(text)
        return path

    @staticmethod
    def _route(digest_at):
        if not digest_at:
            return 'name = "package-created"\ntemplate = "package-created"'
        return (f'name = "{DIGEST_ROUTE}"\n'
                f"# digest: each event recorded in the table for a daily digest (template \"digest\") that\n"
                f"# closes at {digest_at} UTC, hours after the run; no email during the run.\n"
                f'digest = {{ at = "{digest_at}", timezone = "UTC" }}')

    def _state_section(self, table):
        if not table:
            return ""
        return f"""
[state]
# send_state: the shared state table, fresh for this run, in moto's DynamoDB (through the
# bench's keep-alive relay unless --no-moto-relay).
table = {json.dumps(table)}
endpoint_url = {json.dumps(self.state_endpoint)}
"""

    def preload(self, url, events):
        """SendMessageBatch in tens, a few calls at once. Returns {event id: time the call returned}."""
        enqueued = {}
        lock = threading.Lock()

        def send(chunk):
            entries = [{"Id": str(i), "MessageBody": json.dumps(e, separators=(",", ":"))}
                       for i, e in enumerate(chunk)]
            failed = self.sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed")
            if failed:
                raise BenchError(f"SendMessageBatch failed entries: {failed[:3]}")
            now = time.time()
            with lock:
                for e in chunk:
                    enqueued[e["id"]] = now

        started = time.time()
        with ThreadPoolExecutor(PRELOAD_THREADS) as pool:
            list(pool.map(send, [events[i: i + 10] for i in range(0, len(events), 10)]))
        log(f"pre-loaded {len(events)} events in {time.time() - started:.1f} s")
        return enqueued

    # -- startup

    def startup(self, label):
        runs = []
        url = self.make_queue(label)
        config = self.write_config(label, url, self.bucket)
        env = dict(self.env, RUST_LOG=f"info,aws_config=warn,aws_smithy_runtime=warn,{TRANSMIT_TARGET}=debug")
        for k in range(self.args.startup_runs):
            worker = Worker(self.args.binary, config, env, self.logs / f"startup-{k + 1}.log")
            try:
                worker.wait_for(lambda w=worker: w.first_transmit_ts is not None, 30, "the first ReceiveMessage")
                time.sleep(max(0.0, worker.spawned + self.args.idle_seconds - time.time()))
                mem = worker.mem()
                cpu = worker.cpu()
            finally:
                # Idle on an empty queue: nothing to hand back, and SIGTERM would wait out a 20 s
                # long poll.
                worker.stop(signal.SIGKILL, grace=5)
            runs.append({
                "first_receive_ms": round((worker.first_transmit_ts - worker.spawned) * 1000, 1),
                "worker_started_ms": (round((worker.started_ts - worker.spawned) * 1000, 1)
                                      if worker.started_ts else None),
                "idle_rss_kb": mem.get("VmRSS"),
                "idle_hwm_kb": mem.get("VmHWM"),
                "idle_after_s": self.args.idle_seconds,
                "cpu_s_until_idle_sample": round(cpu, 3),
            })
            log(f"startup {k + 1}: first ReceiveMessage {runs[-1]['first_receive_ms']} ms after spawn, "
                f"idle RSS {mem.get('VmRSS')} kB")
        ordered = sorted(r["first_receive_ms"] for r in runs)
        return {
            "runs": runs,
            "first_receive_ms_median": ordered[len(ordered) // 2],
            "first_receive_ms_max": ordered[-1],
            "idle_rss_kb_max": max(r["idle_rss_kb"] for r in runs),
        }

    # -- a worker run (send, send_state or filtered)

    def worker_phase(self, phase, send, trickle=False, state=False, env=None, digest=False):
        """One run of the worker on N pre-loaded events: `send` (the route matches them), `state`
        (a fresh state table), `digest` (the route records them for a digest instead of sending)."""
        n = self.args.events
        url = self.make_queue(phase)
        table = f"qn-bench-{self.run_id}-{phase}" if state or digest else None
        # Half a day ahead: the window cannot close during the run (at most --timeout long).
        digest_at = (datetime.now(UTC) + timedelta(hours=12)).strftime("%H:%M") if digest else None
        config = self.write_config(phase, url, self.bucket if send else f"{self.bucket}-matches-nothing", table,
                                   digest_at)
        if table:
            self.make_table(phase, config)
        events = [make_event(self.run_id, i, self.bucket) for i in range(n)]
        ids_by_index = [e["id"] for e in events]
        preload_started = time.time()
        enqueued = self.preload(url, events)
        before = self.machine.snapshot()
        worker = Worker(self.args.binary, config, env or self.env, self.logs / f"{phase}.log")
        relayed = self.relay.totals() if table and self.relay else None
        sampler = Sampler(worker.pid)
        sampler.start()
        result = {"phase": phase, "events": n}
        if table:
            result["state_table"] = {"table": table, "endpoint_url": self.args.moto_endpoint}
        if digest:
            result["digest"] = {"route": DIGEST_ROUTE, "at_utc": digest_at}
        try:
            worker.wait_for(lambda: worker.started_ts is not None, 30, "the worker to start")
            cpu_started = worker.cpu()
            split_started = proc_cpu(worker.pid)
            deadline = time.time() + self.args.timeout
            ids = set(enqueued)
            last_report = time.time()
            while True:
                with worker.lock:
                    done = sum(1 for i in worker.settled if i in ids)
                if done >= n and sum(depth(self.sqs, url)) == 0:
                    break
                if not worker.alive():
                    raise BenchError(f"the worker exited ({worker.exit_status}); log: {worker.log_file.name}")
                with worker.lock:
                    failed = sum(v for k, v in worker.counts.items() if k not in SETTLED)
                    first = worker.errors[:1]
                if failed > max(10, n // 20):
                    # Retried messages cost CPU twice: the run measures something else (an emulator
                    # that cannot keep up, e.g. timeouts from a slow moto). Stop instead of waiting
                    # out --timeout.
                    raise BenchError(f"{phase}: {failed} messages failed (outcomes {worker.counts}), e.g. "
                                     f"{first[0] if first else '?'}; log: {worker.log_file.name}")
                if time.time() > deadline:
                    raise BenchError(
                        f"{phase}: queue not drained within {self.args.timeout} s ({done}/{n} settled, "
                        f"outcomes {worker.counts}); log: {worker.log_file.name}")
                if time.time() - last_report > 10:
                    log(f"{phase}: {done}/{n} settled")
                    last_report = time.time()
                time.sleep(0.25)
            cpu_drained = worker.cpu()
            split_drained = proc_cpu(worker.pid)
            mem_drained = worker.mem()
            if relayed is not None:
                # From the worker's start to the drain: claims, marks sent, renewals (if any); in
                # digest, the records and the digest checks (a Query each digest_check_seconds).
                result["dynamodb"] = per_message(relayed, self.relay.totals(), n)
                result["dynamodb_calls_per_message"] = result["dynamodb"]["calls_per_message"]
            after = self.machine.snapshot()
            with worker.lock:
                settled = {i: worker.settled[i] for i in ids}
                counts = dict(worker.counts)
                errors = list(worker.errors)
            last = max(settled.values())
            window = last - worker.started_ts
            drain_cpu = cpu_drained - cpu_started
            result.update({
                "preload_s": round(before["t"] - preload_started, 3),
                "drain_s": round(window, 3),
                "messages_per_s": round(n / window, 1),
                "outcomes": counts,
                "worker_warnings_errors": errors,
            })
            result.update(drain_figures(n, window, drain_cpu, (split_started, split_drained), mem_drained,
                                        Machine.delta(before, after, drain_cpu, n)))
            lat_log = [settled[i] - enqueued[i] for i in ids]
            result["latency_enqueue_to_outcome_line"] = latency_summary(lat_log)
            result["settled_per_100ms"] = per_tenth(list(settled.values()), worker.started_ts)
            self._trickle_enqueued = {}
            if send and trickle and self.args.trickle > 0:
                result["trickle"] = self.trickle(worker, url)
        finally:
            sampler.halt.set()
            sampler.join(timeout=2)
            try:
                hwm = worker.mem().get("VmHWM") if worker.alive() else None
            except OSError:
                hwm = None
            usage = worker.stop()
        result["worker_process_total"] = usage
        # VmHWM, not ru_maxrss: a child's ru_maxrss also counts the forked Python before exec.
        result["peak_rss_kb"] = max([hwm or 0] + [s[3] or 0 for s in sampler.samples])
        t0 = worker.started_ts or worker.spawned
        result["samples"] = [
            {"t": round(t - t0, 2), "cpu_s": round(c, 3), "rss_kb": r} for t, c, r, _ in sampler.samples
        ]
        if digest:
            self.check_recorded(result, table, set(enqueued))
        elif send:
            self.check_mail(result, enqueued, ids_by_index, preload_started)
        return result

    def check_recorded(self, result, table, ids):
        """Every event recorded in the table: its item in the window's partition and its
        once-marker `recorded`, all in one window (one digest); read with a Scan straight from moto
        (not through the relay, so it is not counted as the worker's)."""
        dynamodb = client("dynamodb", self.args.moto_endpoint)
        items = []
        for page in dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
            items += page["Items"]
        check = recorded_check(items, ids, DIGEST_ROUTE)
        result["recorded"] = check
        if not check["ok"]:
            raise BenchError(f"{result['phase']}: {check['problem']} (table {table})")
        log(f"{result['phase']}: all {check['items']} events recorded in the table, one window, markers recorded")

    # -- the Node.js peer (peer)

    def _peer_env(self, url):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("QUILT_NOTIFY", "AWS_", "NODE_"))}
        env.update({
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "QUEUE_URL": url,
            "SQS_ENDPOINT": self.args.endpoint,
            "SES_ENDPOINT": self.args.ses_endpoint,
            "TEMPLATE_DIR": str(ROOT / "config/templates/package-created"),
            # As write_config's worker config: the same sender, catalog links and route name.
            "FROM": "Quilt notifications <quilt-notify@example.com>",
            "TO": self.recipient,
            "CATALOG_HOST": "catalog.example.com",
            "ROUTE": "package-created",
            # The worker's defaults: its pollers and batch (config/default.toml, or --pollers,
            # --max-messages).
            "POLLERS": str(self.args.pollers),
            "BATCH": str(self.args.max_messages),
            "WAIT_SECONDS": str(DEFAULTS["queue"]["wait_time_seconds"]),
        })
        return env

    def peer_phase(self, phase):
        """The same N events as send, drained by the Node.js peer; its process's CPU measured from
        its "ready" line to the drain as the worker's is from "worker started"; every email checked
        in the SES store as the worker's are."""
        n = self.args.events
        url = self.make_queue(phase)
        events = [make_event(self.run_id, i, self.bucket) for i in range(n)]
        ids_by_index = [e["id"] for e in events]
        preload_started = time.time()
        enqueued = self.preload(url, events)
        before = self.machine.snapshot()
        peer = Peer(self.args.node, self.args.peer_dir, self._peer_env(url), self.logs / f"{phase}.log")
        sampler = Sampler(peer.pid)
        sampler.start()
        result = {"phase": phase, "events": n, "process": "node consumer.mjs (scripts/bench-peer)"}
        try:
            peer.wait_ready(60)
            split_started = peer.cpu_split()
            deadline = time.time() + self.args.timeout
            last_report = time.time()
            while True:
                done = peer.deleted()
                if done >= n and sum(depth(self.sqs, url)) == 0:
                    break
                if not peer.alive():
                    raise BenchError(f"the Node.js peer exited ({peer.exit_status}); log: {peer.log_file.name}")
                with peer.lock:
                    failed, first = peer.error_count, peer.errors[:1]
                if failed > max(10, n // 20):
                    raise BenchError(f"{phase}: {failed} errors from the Node.js peer, e.g. "
                                     f"{first[0] if first else '?'}; log: {peer.log_file.name}")
                if time.time() > deadline:
                    raise BenchError(f"{phase}: queue not drained within {self.args.timeout} s ({done}/{n} "
                                     f"deleted); log: {peer.log_file.name}")
                if time.time() - last_report > 10:
                    log(f"{phase}: {done}/{n} deleted")
                    last_report = time.time()
                time.sleep(0.1)
            split_drained = peer.cpu_split()
            mem_drained = peer.mem()
            after = self.machine.snapshot()
            with peer.lock:
                progress = list(peer.progress)
                errors = list(peer.errors)
                ready = peer.ready_ts
            settled = settle_times(progress)
            window = settled[-1] - ready
            cpu = sum(split_drained) - sum(split_started)
            result.update({
                "preload_s": round(before["t"] - preload_started, 3),
                "drain_s": round(window, 3),
                "messages_per_s": round(n / window, 1),
                "deleted": progress[-1][0],
                "peer_errors": errors,
                "settled_per_100ms": per_tenth(settled, ready),
            })
            # The keys the worker's runs use, for the same rows, medians and chart: here they are
            # the Node.js process's.
            result.update(drain_figures(n, window, cpu, (split_started, split_drained), mem_drained,
                                        Machine.delta(before, after, cpu, n)))
        finally:
            sampler.halt.set()
            sampler.join(timeout=2)
            try:
                hwm = peer.mem().get("VmHWM") if peer.alive() else None
            except OSError:
                hwm = None
            result["exit_status"] = peer.stop()
        result["peak_rss_kb"] = max([hwm or 0] + [s[3] or 0 for s in sampler.samples])
        t0 = peer.ready_ts or peer.spawned
        result["samples"] = [
            {"t": round(t - t0, 2), "cpu_s": round(c, 3), "rss_kb": r} for t, c, r, _ in sampler.samples
        ]
        # The peer renders with the same templates; the plain send loop keeps the worker's email.
        sample = getattr(self, "sample_email", None)
        self._trickle_enqueued = {}
        self.check_mail(result, enqueued, ids_by_index, preload_started)
        if sample is not None:
            self.sample_email = sample
        return result

    def trickle(self, worker, url):
        """Events one at a time at a steady rate into the running, idle worker."""
        k = self.args.trickle
        rate = self.args.trickle_rate
        events = [make_event(self.run_id, 900000 + i, self.bucket) for i in range(k)]
        enqueued = {}
        start = time.time()
        for i, event in enumerate(events):
            time.sleep(max(0.0, start + i / rate - time.time()))
            self.sqs.send_message(QueueUrl=url, MessageBody=json.dumps(event, separators=(",", ":")))
            enqueued[event["id"]] = time.time()
        ids = set(enqueued)
        worker.wait_for(lambda: ids.issubset(worker.settled), 60, "the trickle events")
        with worker.lock:
            lat = [worker.settled[i] - enqueued[i] for i in ids]
        self._trickle_enqueued = enqueued  # for check_mail, in send order (index 900000 + i)
        log(f"trickle: {k} events at {rate}/s, p50 {percentile(lat, 50) * 1000:.0f} ms to the outcome line")
        return {"events": k, "rate_per_s": rate, "latency_enqueue_to_outcome_line": latency_summary(lat)}

    def check_mail(self, result, enqueued, ids_by_index, since):
        """Every event's email in the SES store, once; latency to its `at` (whole seconds)."""
        trickle = getattr(self, "_trickle_enqueued", {})
        wanted = {**enqueued, **trickle}
        # Subjects carry the handle bench/RUN/INDEX; the index maps back to the event id.
        store = self.fetch_store(int(since) - 1)
        mine = [m for m in store if self.recipient in (m.get("destination") or {}).get("to", [])]
        if mine:
            # What the plain send loop sends: the worker's own rendering of a package event.
            self.sample_email = {k: mine[0].get(k) for k in ("from", "subject")} | mine[0].get("body", {})
        subject_re = re.compile(rf"bench/{re.escape(self.run_id)}/(\d{{6}})")
        seen = {}
        for mail in mine:
            match = subject_re.search(mail.get("subject", ""))
            if match:
                seen.setdefault(int(match.group(1)), []).append(mail["at"])
        n = self.args.events
        found_burst = [seen[i] for i in range(n) if i in seen]
        found_trickle = [seen[900000 + i] for i in range(len(trickle)) if 900000 + i in seen]
        duplicates = sum(len(v) - 1 for v in seen.values())
        result["emails"] = {
            "expected": len(wanted),
            "found": len(found_burst) + len(found_trickle),
            "duplicates": duplicates,
            # Subject + HTML + text: the Node.js peer's emails must be the worker's (same work).
            "chars_median": median([email_chars(m) for m in mine]) if mine else None,
        }
        if len(found_burst) < n or len(found_trickle) < len(trickle):
            raise BenchError(f"only {len(found_burst)}/{n} burst and {len(found_trickle)}/{len(trickle)} trickle "
                             "emails "
                             f"in the SES store for {self.recipient}")
        # `at` is whole seconds (floored): the email arrived in [at, at + 1). The summary uses the
        # upper end, at + 1 - enqueue, so it never flatters; the lower end is kept alongside.
        burst = [(min(seen[i]), enqueued[ids_by_index[i]]) for i in range(n)]
        result["latency_enqueue_to_ses_at"] = latency_summary([at + 1 - t for at, t in burst])
        result["latency_enqueue_to_ses_at_lower_bound"] = latency_summary([max(0.0, at - t) for at, t in burst])
        if trickle:
            trickle_ids = list(trickle)
            steady = [(min(seen[900000 + i]), trickle[trickle_ids[i]]) for i in range(len(trickle))]
            result["trickle"]["latency_enqueue_to_ses_at"] = latency_summary([at + 1 - t for at, t in steady])
            result["trickle"]["latency_enqueue_to_ses_at_lower_bound"] = latency_summary(
                [max(0.0, at - t) for at, t in steady])

    def fetch_store(self, since):
        url = f"{self.args.ses_endpoint.rstrip('/')}/store?since={since}"
        with urllib.request.urlopen(url, timeout=120) as response:
            return json.load(response)["emails"]

    # -- plain loop

    def loop_phase(self, phase, send=False):
        """The plain loop: receive a batch, (send one email per message,) delete the batch."""
        n = self.args.events
        url = self.make_queue(phase)
        events = [make_event(self.run_id, i, self.bucket) for i in range(n)]
        enqueued = self.preload(url, events)
        lock = threading.Lock()
        state = {"done": 0, "error": None}
        deleted = {}  # event id -> time its delete returned
        thread_cpu = {}  # thread -> its CPU seconds after its last call
        raw = RawJson(self.args.endpoint)
        ses = RawJson(self.args.ses_endpoint) if send else None
        sample = getattr(self, "sample_email", None) or {
            "from": "Quilt notifications <quilt-notify@example.com>", "subject": "New package revision",
            "html": "<p>" + "x" * 5000 + "</p>", "text": "x" * 1000}
        # At most worker.concurrency sends at once, as in the worker.
        senders = ThreadPoolExecutor(self.args.concurrency) if send else None

        def send_one(message):
            event = json.loads(message["Body"])
            ses.send_email({
                "FromEmailAddress": sample["from"],
                "Destination": {"ToAddresses": [f"bench-loop-{self.run_id}@example.com"]},
                "Content": {"Simple": {
                    "Subject": {"Data": f"{sample['subject']} {event['detail']['handle']}", "Charset": "UTF-8"},
                    "Body": {"Html": {"Data": sample["html"], "Charset": "UTF-8"},
                             "Text": {"Data": sample["text"], "Charset": "UTF-8"}}}},
                "EmailTags": [{"Name": "route", "Value": "package-created"},
                              {"Name": "event_id", "Value": event["id"]}],
            })
            with lock:
                thread_cpu[threading.get_ident()] = time.thread_time()

        def run():
            me = threading.get_ident()
            try:
                while True:
                    with lock:
                        if state["done"] >= n or state["error"]:
                            break
                    received = raw.sqs("ReceiveMessage", {
                        "QueueUrl": url, "MaxNumberOfMessages": self.args.max_messages,
                        "WaitTimeSeconds": 20, "VisibilityTimeout": 60,
                        "MessageSystemAttributeNames": ["ApproximateReceiveCount"],
                    }).get("Messages", [])
                    if not received:
                        continue
                    if senders:
                        list(senders.map(send_one, received))
                    answer = raw.sqs("DeleteMessageBatch", {"QueueUrl": url, "Entries": [
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(received)]})
                    now = time.time()
                    ok = {int(e["Id"]) for e in answer.get("Successful", [])}
                    with lock:
                        for i, m in enumerate(received):
                            if i in ok:
                                event_id = json.loads(m["Body"])["id"]
                                if event_id not in deleted:
                                    deleted[event_id] = now
                        state["done"] = len(deleted)
                        thread_cpu[me] = time.thread_time()
            except BenchError as exc:
                with lock:
                    if state["done"] < n:
                        state["error"] = str(exc)

        before = self.machine.snapshot()
        start = time.time()
        threads = [threading.Thread(target=run, daemon=True) for _ in range(self.args.pollers)]
        for t in threads:
            t.start()
        deadline = start + self.args.timeout
        while True:
            with lock:
                if state["done"] >= n or state["error"]:
                    break
            if time.time() > deadline:
                raise BenchError(f"{phase}: queue not drained within {self.args.timeout} s ({state['done']}/{n})")
            time.sleep(0.1)
        if senders:
            senders.shutdown(wait=False)
        if state["error"]:
            raise BenchError(f"{phase}: {state['error']}")
        after = self.machine.snapshot()
        window = max(deleted.values()) - start
        # A thread may still be in a long poll on the empty queue; it ends with the queue.
        with lock:
            client_cpu = sum(thread_cpu.values())
        lat = [deleted[i] - enqueued[i] for i in enqueued]
        return {
            "phase": phase,
            "sends_email": send,
            "events": n,
            "pollers": self.args.pollers,
            "batch": self.args.max_messages,
            "concurrency": self.args.concurrency if send else None,
            "drain_s": round(window, 3),
            "messages_per_s": round(n / window, 1),
            "client_cpu_s_per_1000": round(client_cpu / n * 1000, 4),
            "machine": Machine.delta(before, after, None, n),
            "latency_enqueue_to_delete": latency_summary(lat),
            "settled_per_100ms": per_tenth(list(deleted.values()), start),
        }

    # -- all

    # -- the phases (qnbench/phases.py names the method of each)

    def send(self, kind, label, k, runs):
        """One run of a sending phase (send, send_state, send_paced, digest); `runs` holds the runs
        so far of every sending phase, this repeat's included."""
        # Each run's emails go to their own recipient, so each run's check counts its own.
        self.recipient = (f"bench-{self.run_id}@example.com" if label == "send"
                          else f"bench-{self.run_id}-{label.removeprefix('send-')}@example.com")
        state = PHASES[kind].moto
        env = None
        how = ""
        if state:
            how = f", state table in {self.args.moto_endpoint}" + (
                f" (keep-alive relay {self.state_endpoint})" if self.relay else "")
        if kind == "send_paced":
            # The pace send_state's run just reached: the worker's CPU per message depends on its
            # pace (fewer messages share each wake-up), so this is send_state's like-for-like
            # without the table.
            pace = runs["send_state"][k]["messages_per_s"]
            env = dict(self.env, QUILT_NOTIFY__SES__MAX_SEND_RATE=str(pace))
            how = f", at most {pace} emails/s (send_state's pace)"
        digest = kind == "digest"
        if digest:
            log(f"{label}: {self.args.events} events, worker recording them for a digest{how}")
        else:
            log(f"{label}: {self.args.events} events, worker sending to {self.args.ses_endpoint}{how}")
        run = self.worker_phase(label, send=True, trickle=k == 0 and kind in ("send", "send_state"), state=state,
                                env=env, digest=digest)
        if kind == "send_paced":
            run["paced_at_messages_per_s"] = pace
        units = run.get("dynamodb")
        log(f"{label}: {run['messages_per_s']} msg/s, {run['worker_cpu_us_per_message']} µs CPU/msg"
            + (f", DynamoDB per msg: {units['calls_per_message']} calls, {units['write_units_per_message']} WCU, "
               f"{units['read_units_per_message']} RCU" if units else ""))
        return run

    def peer(self, kind, label, k, runs):
        """One run of the Node.js peer on the same N events as a send run."""
        self.recipient = f"bench-{self.run_id}-{label}@example.com"
        log(f"{label}: {self.args.events} events, the Node.js peer ({self.args.pollers} consumers of "
            f"{self.args.max_messages}) sending to {self.args.ses_endpoint}")
        run = self.peer_phase(label)
        log(f"{label}: {run['messages_per_s']} msg/s, {run['worker_cpu_us_per_message']} µs CPU/msg (node)")
        return run

    def filtered(self, label):
        log(f"{label}: {self.args.events} events, no route matches")
        result = self.worker_phase(label, send=False)
        log(f"{label}: {result['messages_per_s']} msg/s, {result['worker_cpu_us_per_message']} µs CPU/msg")
        return result

    def loop(self, label):
        log(f"{label}: {self.args.events} events, plain receive/delete loop")
        result = self.loop_phase(label)
        log(f"{label}: {result['messages_per_s']} msg/s")
        return result

    def loop_send(self, label):
        log(f"{label}: {self.args.events} events, plain receive/SendEmail/delete loop")
        result = self.loop_phase(label, send=True)
        log(f"{label}: {result['messages_per_s']} msg/s")
        return result

    def run_sending(self, sending, results):
        """The sending phases, --repeat times each, alternating (send, send_state, send_paced, send,
        ...) so they see the same minutes of the machine; the report shows the median run."""
        runs = {kind: [] for kind in sending}
        for k in range(self.args.repeat):
            for kind in sending:
                runs[kind].append(getattr(self, PHASES[kind].method)(kind, kind if k == 0 else f"{kind}-{k + 1}",
                                                                     k, runs))
        for kind in sending:
            results[kind] = median_run(runs[kind])
            results[f"{kind}_repeats"] = [repeat_summary(run) for run in runs[kind]]
        if "send" in sending and "send_state" in sending:
            results["state_cost"] = state_cost(results)
        if "digest" in sending:
            results["digest_cost"] = digest_cost(results)
        if "send" in sending and "peer" in sending:
            results["peer_ratio"] = peer_ratio(results)

    def run(self):
        started = time.time()
        names = self.args.phases.split(",")
        results = {
            "run_id": self.run_id,
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "events": self.args.events,
            "settings": {
                "worker": "config/default.toml defaults: " + ", ".join(
                    f"{section}.{key} {DEFAULTS[section][key]}"
                    for section, key in (("worker", "threads"), ("worker", "pollers"), ("worker", "concurrency"),
                                         ("queue", "max_messages"), ("queue", "wait_time_seconds"))
                ) + ", log.format json",
                "send_repeats": self.args.repeat,
                "overrides": self.args.set,
                "ses_max_send_rate": self.args.max_send_rate,
                "sqs_endpoint": self.args.endpoint,
                "ses_endpoint": self.args.ses_endpoint,
                **({"moto_endpoint": self.args.moto_endpoint,
                    "moto_keep_alive_relay": self.relay is not None}
                   if any(PHASES[n].moto for n in names) else {}),
                **({"peer": {"node": node_version(self.args.node), "packages": versions(self.args.peer_dir),
                             "consumers": self.args.pollers, "batch": self.args.max_messages}}
                   if "peer" in names else {}),
            },
            "machine": machine_info(),
            "binary": binary_info(self.args.binary),
        }
        sending = [name for name, phase in PHASES.items() if phase.sending and name in names]
        try:
            for name, phase in PHASES.items():
                if name not in names:
                    continue
                if not phase.sending:
                    results[name] = getattr(self, phase.method)(name)
                elif name == sending[0]:
                    self.run_sending(sending, results)
        finally:
            self.delete_queues()
            self.delete_tables()
            if self.relay:
                self.relay.close()
        results["duration_s"] = round(time.time() - started, 1)
        results["targets"] = targets(results)
        return results
