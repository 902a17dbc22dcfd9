#!/usr/bin/env python3
"""End-to-end benchmark of the quilt-notify worker against the local emulators.

Run through scripts/bench, which starts the emulators and builds the release binary first; this
file does the measuring. Phases, each on a fresh queue of its own (made with setup_resources.py,
deleted at the end):

  startup   the worker on an empty queue, a few times: time from spawn to the first
            ReceiveMessage leaving the process, and the idle RSS while it long-polls.
  send      N events pre-loaded with SendMessageBatch, then the worker with the default worker
            settings drains them, sending one email per event to the SES emulator. Then, with the
            worker still running, a trickle of events sent one at a time (steady-state latency).
  send_state the same as send (same N, settings, repeats, trickle), on a queue of its own, with the
            shared state table on: a fresh table in moto's DynamoDB (--moto-endpoint) per run, made
            with the binary's `state create` before the worker starts and deleted at the end. Each
            email then costs a conditional PutItem (the claim) and an UpdateItem (sent). The worker
            reaches moto through a keep-alive relay in this process (moto's server closes every
            connection; DynamoDB does not; --no-moto-relay to go direct). The repeats alternate with
            send's (send, send_state, send, send_state, ...) so both see the same machine, and the
            report shows the difference in worker CPU per message and messages/s.
  send_paced send without the table, its emails limited (ses.max_send_rate) to the messages/s the
            send_state run just before it reached (needs send_state; runs after it in each repeat).
            moto caps send_state at some tens of messages/s, and the worker's CPU per message grows
            as its pace drops (fewer messages share each wake-up of its runtime), so
            send_state − send_paced is the table's own cost and send_state − send is not.
  filtered  the same N events and worker, but the route matches nothing (another bucket): every
            message is received, parsed, matched, logged `filtered` and deleted. This is the
            worker's receive + delete ceiling without sending, and no production flag is needed.
  loop      a plain receive/delete loop (raw SQS JSON protocol over keep-alive HTTP, no SDK) with
            the worker's batch size, parallelism and long poll: the emulator's own ceiling.
  loop_send the same loop, sending each message's email (the one the worker rendered) to the SES
            emulator between receive and delete, at most 20 at once. For comparison only: its
            Python client needs more CPU per message than the worker, so it is no ceiling.

Per phase: messages/s, CPU seconds (user + sys) of the worker process alone per 1,000 messages,
peak RSS, latency percentiles, and the CPU the emulators and everything else on the machine used
in the same interval, so noise is visible. Results: results.json, results.md, throughput.svg in
--out; the worker logs in --logs.

Needs only the standard library (run with .emulators/venv/bin/python so setup_resources.py finds
boto3; send_state deletes its tables with boto3 too, and leaves them, with a warning, without it).
"""

import argparse
import http.client
import tomllib
import json
import math
import os
import platform
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
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
# The worker settings under test: the plain loops copy their batch size and parallelism.
DEFAULTS = tomllib.loads((ROOT / "config/default.toml").read_text())
CLK_TCK = os.sysconf("SC_CLK_TCK")
SETTLED = ("sent", "filtered", "duplicate")
# LocalStack routes by the signing scope and does not check signatures.
AUTH = "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0"
# The first SDK request of the worker: with ses.max_send_rate set there is no GetAccount call at
# start-up, so the first request that enters the transmit phase is a ReceiveMessage.
TRANSMIT_TARGET = "aws_smithy_runtime_api::client::interceptors::context"
TRANSMIT_MESSAGE = "entering 'transmit' phase"
PHASES = ("startup", "send", "send_state", "send_paced", "filtered", "loop", "loop_send")


class BenchError(Exception):
    pass


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Minimal SQS and SES clients: the JSON protocols the SDK speaks, one keep-alive connection per
# thread, no SDK (so the plain loops measure the emulators, not a client library).


class JsonHttp:
    """POSTs JSON over one keep-alive connection per thread, reconnecting up to twice."""

    def __init__(self, endpoint):
        url = urlparse(endpoint)
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or 80
        self.local = threading.local()

    def _conn(self, timeout):
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
            self.local.conn = conn
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def post(self, what, path, payload, headers, timeout):
        body = json.dumps(payload)
        for attempt in range(3):
            conn = self._conn(timeout)
            try:
                conn.request("POST", path, body, headers)
                response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self.local.conn = None
                if attempt == 2:
                    raise BenchError(f"{what}: {exc}") from exc
                time.sleep(0.2)
                continue
            if response.status != 200:
                raise BenchError(f"{what}: HTTP {response.status}: {data[:300]!r}")
            return json.loads(data) if data else {}
        raise AssertionError("unreachable")


class Sqs(JsonHttp):
    def call(self, action, payload, timeout=40):
        headers = {
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": f"AmazonSQS.{action}",
            "Authorization": AUTH,
        }
        return self.post(f"SQS {action}", "/", payload, headers, timeout)

    def depth(self, url):
        attrs = self.call(
            "GetQueueAttributes",
            {"QueueUrl": url, "AttributeNames": ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]},
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


class Ses(JsonHttp):
    """SES v2 SendEmail (for the plain sending loop)."""

    def send(self, payload):
        headers = {"Content-Type": "application/json", "Authorization": AUTH.replace("/sqs/", "/ses/")}
        return self.post("SES SendEmail", "/v2/email/outbound-emails", payload, headers, 30)


class KeepAliveRelay:
    """HTTP/1.1 keep-alive in front of moto, whose server (werkzeug's) closes the connection after
    every response: without it the worker would open a TCP connection per DynamoDB call, which it
    does not do against DynamoDB (keep-alive). Each relayed request goes to moto on a connection of
    its own; the relay runs in this process (its CPU counts as the bench script's) and counts the
    requests, so the report can show DynamoDB calls per message."""

    HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"}

    def __init__(self, upstream):
        url = urlparse(upstream)
        host, port = url.hostname or "127.0.0.1", url.port or 80
        relay = self
        self.requests = 0
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes

            def log_message(self, *_):
                pass

            def relay(self):
                size = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(size) if size else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in relay.HOP}
                conn = http.client.HTTPConnection(host, port, timeout=60)
                try:
                    conn.request(self.command, self.path, body, headers)
                    response = conn.getresponse()
                    data = response.read()
                except (OSError, http.client.HTTPException) as exc:
                    self.send_error(502, f"moto: {exc}")
                    return
                finally:
                    conn.close()
                with relay.lock:
                    relay.requests += 1
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in relay.HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = relay

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            # The worker opens its connections (up to worker.concurrency) at once; socketserver's
            # default backlog of 5 overflows into SYN cookies and retransmitted SYNs (1 s each).
            request_queue_size = 256

        self.server = Server(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self):
        with self.lock:
            return self.requests

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------------------------
# /proc readings


def proc_cpu(pid):
    """User + system CPU seconds of one process (and its reaped children, which it has none of)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime, stime, cutime, cstime are fields 14-17.
    return sum(int(x) for x in fields[11:15]) / CLK_TCK


def proc_cpu_split(pid):
    """(user, system) CPU seconds of one process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def proc_mem_kb(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def group_cpu(pgid):
    """CPU seconds of every live process in a process group (an emulator and its children)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += sum(int(x) for x in fields[11:15]) / CLK_TCK
    return total


def system_cpu():
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq + steal
    return busy / CLK_TCK, (busy + idle + iowait) / CLK_TCK


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def self_cpu():
    t = os.times()
    return t.user + t.system


def listener_pgid(port):
    """Process group of whatever listens on 127.0.0.1:PORT (to count an emulator's CPU)."""
    try:
        out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return None
    match = re.search(r"pid=(\d+)", out)
    if not match:
        return None
    try:
        return os.getpgid(int(match.group(1)))
    except OSError:
        return None


class Machine:
    """CPU of the emulators, of this script and of the machine, between two snapshots."""

    def __init__(self, emulators):
        self.emulators = emulators  # name -> pgid or None

    def snapshot(self):
        busy, total = system_cpu()
        return {
            "t": time.time(),
            "busy": busy,
            "total": total,
            "self": self_cpu(),
            "load": loadavg(),
            "emulators": {name: (group_cpu(pgid) if pgid else None) for name, pgid in self.emulators.items()},
        }

    @staticmethod
    def delta(a, b, worker_cpu, messages):
        per_k = lambda s: None if s is None else round(s / messages * 1000, 4)  # noqa: E731
        emu = {}
        emu_total = 0.0
        for name, start in a["emulators"].items():
            end = b["emulators"].get(name)
            used = None if start is None or end is None else max(0.0, end - start)
            emu[name] = {"cpu_s": None if used is None else round(used, 3), "cpu_s_per_1000": per_k(used)}
            emu_total += used or 0.0
        busy = b["busy"] - a["busy"]
        wall = b["t"] - a["t"]
        bench = b["self"] - a["self"]
        others = max(0.0, busy - (worker_cpu or 0.0) - emu_total - bench)
        return {
            "wall_s": round(wall, 3),
            "machine_busy_cpu_s": round(busy, 3),
            "machine_busy_cores": round(busy / wall, 2) if wall > 0 else None,
            "emulators": emu,
            "bench_script_cpu_s": round(bench, 3),
            "other_processes_cpu_s": round(others, 3),
            "other_processes_cores": round(others / wall, 2) if wall > 0 else None,
            "load_average_start": a["load"],
            "load_average_end": b["load"],
        }


# ---------------------------------------------------------------------------------------------
# Events


def make_event(run_id, index, bucket):
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "package-revision",
        "source": "com.quiltdata",
        "account": "012345678901",
        "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
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


def preload(sqs, url, events, threads=4):
    """SendMessageBatch in tens, a few calls at once. Returns {event id: time the call returned}."""
    enqueued = {}
    lock = threading.Lock()

    def send(chunk):
        entries = [{"Id": str(i), "MessageBody": json.dumps(e, separators=(",", ":"))} for i, e in enumerate(chunk)]
        result = sqs.call("SendMessageBatch", {"QueueUrl": url, "Entries": entries})
        if result.get("Failed"):
            raise BenchError(f"SendMessageBatch failed entries: {result['Failed'][:3]}")
        now = time.time()
        with lock:
            for e in chunk:
                enqueued[e["id"]] = now

    chunks = [events[i : i + 10] for i in range(0, len(events), 10)]
    started = time.time()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(send, chunks))
    log(f"pre-loaded {len(events)} events in {time.time() - started:.1f} s")
    return enqueued


# ---------------------------------------------------------------------------------------------
# The worker process

TS_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def parse_ts(text):
    match = TS_RE.match(text)
    if not match:
        return None
    base, frac, zone = match.groups()
    dt = datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
    return dt.timestamp() + (float("0." + frac) if frac else 0.0)


class Worker:
    """The release binary as a child process; its log lines parsed as they come."""

    def __init__(self, binary, config, env, log_path):
        self.lock = threading.Lock()
        self.started_ts = None
        self.first_transmit_ts = None
        self.outcomes = []  # (timestamp, event_id, outcome)
        self.settled = {}  # event id -> timestamp of its settled outcome line
        self.counts = {}
        self.rusage = None
        self.exit_status = None
        self.errors = []
        self.log_file = open(log_path, "w")
        self.spawned = time.time()
        self.proc = subprocess.Popen(
            [str(binary), "run", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
            bufsize=1,
        )
        self.pid = self.proc.pid
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.log_file.write(line)
            if not line.startswith("{"):
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            ts = parse_ts(obj.get("timestamp", ""))
            message = obj.get("message")
            with self.lock:
                if message == "worker started" and self.started_ts is None:
                    self.started_ts = ts
                elif message == TRANSMIT_MESSAGE and self.first_transmit_ts is None:
                    self.first_transmit_ts = ts
                outcome = obj.get("outcome")
                if outcome:
                    event_id = obj.get("event_id")
                    self.outcomes.append((ts, event_id, outcome))
                    self.counts[outcome] = self.counts.get(outcome, 0) + 1
                    if outcome in SETTLED and event_id and event_id not in self.settled:
                        self.settled[event_id] = ts
                    elif outcome not in SETTLED and len(self.errors) < 20:
                        self.errors.append(f"{outcome}: {obj.get('error')}")
                elif obj.get("level") in ("ERROR", "WARN") and len(self.errors) < 20:
                    self.errors.append(obj.get("message"))
        self.log_file.flush()

    def alive(self):
        if self.rusage is not None:
            return False
        pid, status, rusage = os.wait4(self.pid, os.WNOHANG)
        if pid == 0:
            return True
        self._reaped(status, rusage)
        return False

    def _reaped(self, status, rusage):
        self.rusage = rusage
        self.exit_status = os.waitstatus_to_exitcode(status)
        self.proc.returncode = self.exit_status  # so Popen never waits for it again

    def cpu(self):
        return proc_cpu(self.pid)

    def mem(self):
        return proc_mem_kb(self.pid)

    def wait_for(self, predicate, seconds, what):
        deadline = time.time() + seconds
        while time.time() < deadline:
            with self.lock:
                if predicate():
                    return
            if not self.alive():
                raise BenchError(f"the worker exited ({self.exit_status}) while waiting for {what}; log: {self.log_file.name}")
            time.sleep(0.02)
        raise BenchError(f"timed out after {seconds:.0f} s waiting for {what}; log: {self.log_file.name}")

    def stop(self, sig=signal.SIGTERM, grace=30):
        """Signals the worker and reaps it; SIGKILL if it takes longer than `grace` seconds."""
        if self.alive():
            os.kill(self.pid, sig)
            deadline = time.time() + grace
            while self.alive() and time.time() < deadline:
                time.sleep(0.05)
            if self.alive():
                log(f"worker {self.pid} still running {grace} s after {sig.name}; SIGKILL")
                os.kill(self.pid, signal.SIGKILL)
                _, status, rusage = os.wait4(self.pid, 0)
                self._reaped(status, rusage)
        self.reader.join(timeout=5)
        self.log_file.close()
        return {
            "cpu_user_s": round(self.rusage.ru_utime, 4),
            "cpu_sys_s": round(self.rusage.ru_stime, 4),
            # Includes the forked bench process before exec: VmHWM is the worker's own peak.
            "ru_maxrss_kb_incl_pre_exec": self.rusage.ru_maxrss,
            "exit_status": self.exit_status,
        }


class Sampler(threading.Thread):
    """Samples the worker's CPU and memory every `every` seconds."""

    def __init__(self, pid, every=0.2):
        super().__init__(daemon=True)
        self.pid = pid
        self.every = every
        self.samples = []  # (t, cpu_s, rss_kb, hwm_kb)
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            try:
                mem = proc_mem_kb(self.pid)
                self.samples.append((time.time(), proc_cpu(self.pid), mem.get("VmRSS"), mem.get("VmHWM")))
            except (OSError, IndexError, ValueError):
                return
            self.halt.wait(self.every)


# ---------------------------------------------------------------------------------------------
# Statistics


def percentile(values, p):
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_summary(values):
    if not values:
        return None
    r = lambda v: round(v, 3)  # noqa: E731
    return {
        "count": len(values),
        "min_s": r(min(values)),
        "p50_s": r(percentile(values, 50)),
        "p95_s": r(percentile(values, 95)),
        "p99_s": r(percentile(values, 99)),
        "max_s": r(max(values)),
    }


def per_tenth(timestamps, origin):
    """Messages settled in each tenth of a second since `origin` (the chart rebins these)."""
    if not timestamps:
        return []
    bins = [0] * (int((max(timestamps) - origin) * 10) + 1)
    for t in timestamps:
        bins[max(0, int((t - origin) * 10))] += 1
    return bins


# ---------------------------------------------------------------------------------------------
# Phases


class Bench:
    def __init__(self, args):
        self.args = args
        self.run_id = args.run_id or (datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S") + "-" + secrets.token_hex(2))
        self.sqs = Sqs(args.endpoint)
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
        if "send_state" in args.phases.split(","):
            # moto's CPU counts as an emulator's (not as other processes') in every phase of the run.
            emulators["moto"] = listener_pgid(urlparse(args.moto_endpoint).port or 80)
        self.machine = Machine(emulators)
        self.env = self._worker_env()
        self.relay = None
        self.state_endpoint = args.moto_endpoint
        if "send_state" in args.phases.split(",") and args.moto_relay:
            self.relay = KeepAliveRelay(args.moto_endpoint)
            self.state_endpoint = self.relay.endpoint

    # -- resources

    def make_queue(self, phase):
        name = f"qn-bench-{self.run_id}-{phase}"
        out = subprocess.run(
            [sys.executable, str(ROOT / "scripts/setup_resources.py"), "--endpoint", self.args.endpoint,
             "--queue", name, "--bucket", self.bucket, "--json"],
            capture_output=True, text=True, check=False,
        )
        if out.returncode != 0:
            raise BenchError(f"setup_resources.py --queue {name}: {out.stderr.strip()}")
        self.queues.append(name)
        return json.loads(out.stdout)["queue_url"]

    def delete_queues(self):
        for name in self.queues:
            out = subprocess.run(
                [sys.executable, str(ROOT / "scripts/setup_resources.py"), "--endpoint", self.args.endpoint,
                 "--queue", name, "--delete", "--json"],
                capture_output=True, text=True, check=False,
            )
            if out.returncode != 0:
                log(f"warning: could not delete queue {name}: {out.stderr.strip()}")
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
        """DeleteTable on moto for every table this run made (boto3, as setup_resources.py uses)."""
        if not self.tables:
            return
        try:
            import boto3
        except ImportError:
            log(f"warning: boto3 missing for {sys.executable}: state tables left in moto: {', '.join(self.tables)}")
            self.tables = []
            return
        from botocore.config import Config

        client = boto3.client("dynamodb", endpoint_url=self.args.moto_endpoint, region_name="us-east-1",
                              aws_access_key_id="test", aws_secret_access_key="test",
                              config=Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2}))
        for name in self.tables:
            try:
                client.delete_table(TableName=name)
            except client.exceptions.ResourceNotFoundException:
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

    def write_config(self, phase, queue_url, bucket, table=None):
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
name = "package-created"
template = "package-created"
to = [{json.dumps(self.recipient)}]
pattern = {json.dumps(json.dumps(pattern))}
"""
        path = self.logs / f"{phase}.toml"
        path.write_text(text)
        return path

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

    # -- startup

    def startup(self):
        runs = []
        url = self.make_queue("startup")
        config = self.write_config("startup", url, self.bucket)
        env = dict(self.env, RUST_LOG=f"info,aws_config=warn,aws_smithy_runtime=warn,{TRANSMIT_TARGET}=debug")
        for k in range(self.args.startup_runs):
            worker = Worker(self.args.binary, config, env, self.logs / f"startup-{k + 1}.log")
            try:
                worker.wait_for(lambda: worker.first_transmit_ts is not None, 30, "the first ReceiveMessage")
                time.sleep(max(0.0, worker.spawned + self.args.idle_seconds - time.time()))
                mem = worker.mem()
                cpu = worker.cpu()
            finally:
                # Idle on an empty queue: nothing to hand back, and SIGTERM would wait out a 20 s
                # long poll.
                worker.stop(signal.SIGKILL, grace=5)
            runs.append({
                "first_receive_ms": round((worker.first_transmit_ts - worker.spawned) * 1000, 1),
                "worker_started_ms": round((worker.started_ts - worker.spawned) * 1000, 1) if worker.started_ts else None,
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

    def worker_phase(self, phase, send, trickle=False, state=False, env=None):
        n = self.args.events
        url = self.make_queue(phase)
        table = f"qn-bench-{self.run_id}-{phase}" if state else None
        config = self.write_config(phase, url, self.bucket if send else f"{self.bucket}-matches-nothing", table)
        if state:
            self.make_table(phase, config)
        events = [make_event(self.run_id, i, self.bucket) for i in range(n)]
        ids_by_index = [e["id"] for e in events]
        preload_started = time.time()
        enqueued = preload(self.sqs, url, events)
        before = self.machine.snapshot()
        worker = Worker(self.args.binary, config, env or self.env, self.logs / f"{phase}.log")
        relayed = self.relay.count() if state and self.relay else None
        sampler = Sampler(worker.pid)
        sampler.start()
        result = {"phase": phase, "events": n}
        if state:
            result["state_table"] = {"table": table, "endpoint_url": self.args.moto_endpoint}
        try:
            worker.wait_for(lambda: worker.started_ts is not None, 30, "the worker to start")
            cpu_started = worker.cpu()
            split_started = proc_cpu_split(worker.pid)
            deadline = time.time() + self.args.timeout
            ids = set(enqueued)
            last_report = time.time()
            while True:
                with worker.lock:
                    done = sum(1 for i in worker.settled if i in ids)
                if done >= n and sum(self.sqs.depth(url)) == 0:
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
            split_drained = proc_cpu_split(worker.pid)
            mem_drained = worker.mem()
            if relayed is not None:
                # From the worker's start to the drain: claims, marks sent, renewals (if any).
                result["dynamodb_calls_per_message"] = round((self.relay.count() - relayed) / n, 3)
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
                "worker_cpu_s": round(drain_cpu, 3),
                "worker_cpu_s_per_1000": round(drain_cpu / n * 1000, 4),
                "worker_cpu_us_per_message": round(drain_cpu / n * 1e6, 1),
                # The kernel's share (system time: sockets, epoll) and the process's own (user).
                "worker_cpu_user_us_per_message": round((split_drained[0] - split_started[0]) / n * 1e6, 1),
                "worker_cpu_sys_us_per_message": round((split_drained[1] - split_started[1]) / n * 1e6, 1),
                "worker_cpu_cores": round(drain_cpu / window, 3),
                "rss_kb_at_drain": mem_drained.get("VmRSS"),
                "machine": Machine.delta(before, after, drain_cpu, n),
            })
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
        if send:
            self.check_mail(result, enqueued, ids_by_index, preload_started)
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
            self.sqs.call("SendMessage", {"QueueUrl": url, "MessageBody": json.dumps(event, separators=(",", ":"))})
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
        }
        if len(found_burst) < n or len(found_trickle) < len(trickle):
            raise BenchError(f"only {len(found_burst)}/{n} burst and {len(found_trickle)}/{len(trickle)} trickle emails "
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

    def loop_phase(self, phase="loop", send=False):
        """The plain loop: receive a batch, (send one email per message,) delete the batch."""
        n = self.args.events
        url = self.make_queue(phase)
        events = [make_event(self.run_id, i, self.bucket) for i in range(n)]
        enqueued = preload(self.sqs, url, events)
        lock = threading.Lock()
        state = {"done": 0, "error": None}
        deleted = {}  # event id -> time its delete returned
        thread_cpu = {}  # thread -> its CPU seconds after its last call
        ses = Ses(self.args.ses_endpoint) if send else None
        sample = getattr(self, "sample_email", None) or {
            "from": "Quilt notifications <quilt-notify@example.com>", "subject": "New package revision",
            "html": "<p>" + "x" * 5000 + "</p>", "text": "x" * 1000}
        # At most worker.concurrency sends at once, as in the worker.
        senders = ThreadPoolExecutor(self.args.concurrency) if send else None

        def send_one(message):
            event = json.loads(message["Body"])
            ses.send({
                "FromEmailAddress": sample["from"],
                "Destination": {"ToAddresses": [f"bench-loop-{self.run_id}@example.com"]},
                "Content": {"Simple": {
                    "Subject": {"Data": f"{sample['subject']} {event['detail']['handle']}", "Charset": "UTF-8"},
                    "Body": {"Html": {"Data": sample["html"], "Charset": "UTF-8"},
                             "Text": {"Data": sample["text"], "Charset": "UTF-8"}}}},
                "EmailTags": [{"Name": "route", "Value": "package-created"}, {"Name": "event_id", "Value": event["id"]}],
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
                    received = self.sqs.call("ReceiveMessage", {
                        "QueueUrl": url, "MaxNumberOfMessages": self.args.max_messages,
                        "WaitTimeSeconds": 20, "VisibilityTimeout": 60,
                        "MessageSystemAttributeNames": ["ApproximateReceiveCount"],
                    }).get("Messages", [])
                    if not received:
                        continue
                    if senders:
                        list(senders.map(send_one, received))
                    answer = self.sqs.call("DeleteMessageBatch", {"QueueUrl": url, "Entries": [
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

    def run(self):
        started = time.time()
        results = {
            "run_id": self.run_id,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
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
                   if "send_state" in self.args.phases.split(",") else {}),
            },
            "machine": machine_info(),
            "binary": binary_info(self.args.binary),
        }
        try:
            phases = self.args.phases.split(",")
            if "startup" in phases:
                results["startup"] = self.startup()
            sending = [p for p in ("send", "send_state", "send_paced") if p in phases]
            if sending:
                # The sending phases alternate (send, send_state, send_paced, send, ...), so they
                # see the same minutes of the machine.
                runs = {p: [] for p in sending}
                for k in range(self.args.repeat):
                    for kind in sending:
                        phase = kind if k == 0 else f"{kind}-{k + 1}"
                        # Each run's emails go to their own recipient, so each run's check counts its own.
                        self.recipient = (f"bench-{self.run_id}@example.com" if phase == "send"
                                          else f"bench-{self.run_id}-{phase.removeprefix('send-')}@example.com")
                        state = kind == "send_state"
                        env = None
                        how = ""
                        if state:
                            how = f", state table in {self.args.moto_endpoint}" + (
                                f" (keep-alive relay {self.state_endpoint})" if self.relay else "")
                        if kind == "send_paced":
                            # The pace send_state's run just reached: the worker's CPU per message
                            # depends on its pace (fewer messages share each wake-up), so this is
                            # send_state's like-for-like without the table.
                            pace = runs["send_state"][k]["messages_per_s"]
                            env = dict(self.env, QUILT_NOTIFY__SES__MAX_SEND_RATE=str(pace))
                            how = f", at most {pace} emails/s (send_state's pace)"
                        log(f"{phase}: {self.args.events} events, worker sending to {self.args.ses_endpoint}{how}")
                        run = self.worker_phase(phase, send=True, trickle=k == 0 and kind != "send_paced",
                                                state=state, env=env)
                        if kind == "send_paced":
                            run["paced_at_messages_per_s"] = pace
                        runs[kind].append(run)
                        log(f"{phase}: {run['messages_per_s']} msg/s, {run['worker_cpu_us_per_message']} µs CPU/msg"
                            + (f", {run['dynamodb_calls_per_message']} DynamoDB calls/msg"
                               if "dynamodb_calls_per_message" in run else ""))
                for kind in sending:
                    results[kind] = median_run(runs[kind])
                    results[f"{kind}_repeats"] = [repeat_summary(run) for run in runs[kind]]
                if "send" in sending and "send_state" in sending:
                    results["state_cost"] = state_cost(results)
            if "filtered" in phases:
                log(f"filtered: {self.args.events} events, no route matches")
                results["filtered"] = self.worker_phase("filtered", send=False)
                log(f"filtered: {results['filtered']['messages_per_s']} msg/s, "
                    f"{results['filtered']['worker_cpu_us_per_message']} µs CPU/msg")
            if "loop" in phases:
                log(f"loop: {self.args.events} events, plain receive/delete loop")
                results["loop"] = self.loop_phase()
                log(f"loop: {results['loop']['messages_per_s']} msg/s")
            if "loop_send" in phases:
                log(f"loop_send: {self.args.events} events, plain receive/SendEmail/delete loop")
                results["loop_send"] = self.loop_phase("loop_send", send=True)
                log(f"loop_send: {results['loop_send']['messages_per_s']} msg/s")
        finally:
            self.delete_queues()
            self.delete_tables()
            if self.relay:
                self.relay.close()
        results["duration_s"] = round(time.time() - started, 1)
        results["targets"] = targets(results)
        return results


# ---------------------------------------------------------------------------------------------
# Context and verdicts


def median_run(runs):
    """The send run with the median worker CPU per message; the steady-state trickle (measured in
    the first run only) is carried over to it."""
    ranked = sorted(runs, key=lambda run: run["worker_cpu_us_per_message"])
    chosen = dict(ranked[(len(ranked) - 1) // 2])
    if "trickle" not in chosen and "trickle" in runs[0]:
        chosen["trickle"] = runs[0]["trickle"]
    return chosen


def repeat_summary(run):
    emulators = run["machine"]["emulators"]
    return {
        "phase": run["phase"],
        "messages_per_s": run["messages_per_s"],
        "worker_cpu_us_per_message": run["worker_cpu_us_per_message"],
        "worker_cpu_user_us_per_message": run.get("worker_cpu_user_us_per_message"),
        "worker_cpu_sys_us_per_message": run.get("worker_cpu_sys_us_per_message"),
        "peak_rss_kb": run["peak_rss_kb"],
        "machine_busy_cores": run["machine"]["machine_busy_cores"],
        "localstack_cpu_s_per_1000": emulators["localstack"]["cpu_s_per_1000"],
        "ses_emulator_cpu_s_per_1000": emulators["ses_emulator"]["cpu_s_per_1000"],
        **({"moto_cpu_s_per_1000": emulators["moto"]["cpu_s_per_1000"]} if "moto" in emulators else {}),
        **({"dynamodb_calls_per_message": run["dynamodb_calls_per_message"]}
           if "dynamodb_calls_per_message" in run else {}),
        **({"paced_at_messages_per_s": run["paced_at_messages_per_s"]} if "paced_at_messages_per_s" in run else {}),
    }


# The issue's target for the shared state table: at most this much more worker CPU per message.
STATE_TARGET_US = 100


def state_cost(r):
    """send_state against send (and against send_paced, send at send_state's pace, when run), from
    the interleaved repeats: medians, min and max, each run, and the difference of the medians and
    of each repeat's pair (run k of one against run k of the other, minutes apart)."""
    rows = {"off": r["send_repeats"], "on": r["send_state_repeats"]}
    if r.get("send_paced_repeats"):
        rows["paced"] = r["send_paced_repeats"]
    for side_rows in rows.values():
        for x in side_rows:
            ls = x.get("localstack_cpu_s_per_1000")
            x["worker_cpu_per_localstack"] = round(x["worker_cpu_us_per_message"] / 1000 / ls, 3) if ls else None

    def side(side_rows, key, scale, digits):
        values = [None if x.get(key) is None else round(x[key] * scale, digits) for x in side_rows]
        known = [v for v in values if v is not None]
        return {"median": round(median(known), digits) if known else None,
                "min": min(known) if known else None, "max": max(known) if known else None, "runs": values}

    def diff(a, b, digits):
        """b - a."""
        delta = None if a["median"] is None or b["median"] is None else round(b["median"] - a["median"], digits)
        return {"delta_of_medians": delta,
                "delta_pct": round(delta / a["median"] * 100, 1) if delta is not None and a["median"] else None,
                "paired_deltas": [None if x is None or y is None else round(y - x, digits)
                                  for x, y in zip(a["runs"], b["runs"])]}

    def compare(key, scale=1.0, digits=1):
        out = {name: side(side_rows, key, scale, digits) for name, side_rows in rows.items()}
        out["on_minus_off"] = diff(out["off"], out["on"], digits)
        if "paced" in out:
            out["on_minus_paced"] = diff(out["paced"], out["on"], digits)
        return out

    cpu = compare("worker_cpu_us_per_message")
    vs_off = cpu["on_minus_off"]["delta_of_medians"]
    vs_paced = cpu.get("on_minus_paced", {}).get("delta_of_medians")
    return {
        "note": "off = send, on = send_state (the shared state table in moto's DynamoDB), paced = send_paced "
                "(send at the pace send_state reached, no table); repeats interleaved send, send_state, "
                "send_paced, send, ...; paired_deltas: run k minus run k",
        "worker_cpu_us_per_message": cpu,
        "messages_per_s": compare("messages_per_s"),
        "peak_rss_mib": compare("peak_rss_kb", 1 / 1024),
        "worker_cpu_user_us_per_message": compare("worker_cpu_user_us_per_message"),
        "worker_cpu_sys_us_per_message": compare("worker_cpu_sys_us_per_message"),
        "worker_cpu_per_localstack": compare("worker_cpu_per_localstack", 1.0, 3),
        "localstack_cpu_us_per_message": compare("localstack_cpu_s_per_1000", 1000.0, 0),
        "moto_cpu_us_per_message": side(rows["on"], "moto_cpu_s_per_1000", 1000.0, 0),
        "dynamodb_calls_per_message": side(rows["on"], "dynamodb_calls_per_message", 1.0, 3),
        "target_us": STATE_TARGET_US,
        "met_vs_off": vs_off is not None and vs_off <= STATE_TARGET_US,
        "met_vs_paced": None if vs_paced is None else vs_paced <= STATE_TARGET_US,
    }


def median(values):
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def emulator_bound(r):
    """The most messages/s any worker, even one using no CPU, could send here: each emulator is
    one process on one core at most, and both share the machine's cores. From the emulators' CPU
    per message in the send runs (median)."""
    repeats = r.get("send_repeats") or [repeat_summary(r["send"])]
    ls = median([x["localstack_cpu_s_per_1000"] for x in repeats]) / 1000
    ses = median([x["ses_emulator_cpu_s_per_1000"] for x in repeats]) / 1000
    if not ls or not ses:
        return None
    cores = r["machine"]["nproc"]
    return {"localstack_s": ls, "ses_s": ses, "cores": cores,
            "messages_per_s": round(min(cores / (ls + ses), 1 / ls, 1 / ses), 1)}


def send_rate(r):
    """Median messages/s of the send runs."""
    repeats = r.get("send_repeats") or [repeat_summary(r["send"])]
    return median([x["messages_per_s"] for x in repeats])


def send_cpu(r):
    """Median worker CPU µs per message of the send runs."""
    repeats = r.get("send_repeats") or [repeat_summary(r["send"])]
    return median([x["worker_cpu_us_per_message"] for x in repeats])


def machine_info():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_mb": mem_kb // 1024,
        "kernel": platform.release(),
        "load_average_at_start": loadavg(),
    }


def binary_info(path):
    path = Path(path)
    info = {"path": str(path), "bytes": path.stat().st_size, "mb": round(path.stat().st_size / 1e6, 2)}
    try:
        out = subprocess.run(["file", "-b", str(path)], capture_output=True, text=True, check=False).stdout
        info["stripped"] = "not stripped" not in out and "stripped" in out
        info["file"] = out.strip()
    except OSError:
        pass
    return info


def targets(r):
    """The issue's targets, each with the measured value and whether it is met."""
    out = []

    def add(name, value, unit, limit, met):
        out.append({"target": name, "value": value, "unit": unit, "limit": limit, "met": met})

    send = r.get("send")
    if send:
        cpu = send_cpu(r)
        add("worker CPU per message (send runs, median)", cpu, "µs", "≤ 150", cpu <= 150)
        add("peak RSS during the run", round(send["peak_rss_kb"] / 1024, 1), "MiB", "< 50",
            send["peak_rss_kb"] / 1024 < 50)
        # loop_send is not a ceiling: its Python client is CPU-bound before the emulators are.
        names = {"filtered": "the worker with sending disabled (receive + delete)",
                 "loop": "the plain receive/delete loop"}
        for ceiling in ("filtered", "loop"):
            if r.get(ceiling):
                ratio = send_rate(r) / r[ceiling]["messages_per_s"]
                add(f"sending throughput (median) vs {names[ceiling]}", round(ratio * 100, 1), "%", "≥ 90",
                    ratio >= 0.9)
    cost = r.get("state_cost")
    if cost:
        cpu = cost["worker_cpu_us_per_message"]
        delta = cpu["on_minus_off"]["delta_of_medians"]
        add("shared state table: added worker CPU per message (send_state − send, medians)", delta, "µs",
            f"≤ +{cost['target_us']}", delta is not None and delta <= cost["target_us"])
        if "on_minus_paced" in cpu:
            delta = cpu["on_minus_paced"]["delta_of_medians"]
            add("shared state table: added worker CPU per message at the same pace (send_state − send_paced, "
                "medians)", delta, "µs", f"≤ +{cost['target_us']}", delta is not None and delta <= cost["target_us"])
    filtered = r.get("filtered")
    if filtered and r.get("loop"):
        ratio = filtered["messages_per_s"] / r["loop"]["messages_per_s"]
        add("receive + delete: the worker (filtered) vs the plain loop", round(ratio * 100, 1), "%", "≥ 90",
            ratio >= 0.9)
    startup = r.get("startup")
    if startup:
        add("idle RSS", round(startup["idle_rss_kb_max"] / 1024, 1), "MiB", "< 20", startup["idle_rss_kb_max"] / 1024 < 20)
        add("first ReceiveMessage after start (max of runs)", startup["first_receive_ms_max"], "ms", "≤ 200",
            startup["first_receive_ms_max"] <= 200)
    binary = r.get("binary")
    if binary:
        add("release binary, stripped", round(binary["bytes"] / 1024 / 1024, 1), "MiB", "< 25",
            binary["bytes"] / 1024 / 1024 < 25 and binary.get("stripped", True))
    return out


# ---------------------------------------------------------------------------------------------
# Reports


def fmt_lat(summary):
    return "–" if not summary else f"{summary['p50_s']:.2f} / {summary['p95_s']:.2f} / {summary['p99_s']:.2f}"


def markdown(r):
    send, filtered, loop = r.get("send"), r.get("filtered"), r.get("loop")
    cols = [("worker, sending (SES emulator)", send),
            ("worker, sending, state table on (moto DynamoDB)", r.get("send_state")),
            ("worker, sending at send_state's pace (no table)", r.get("send_paced")),
            ("worker, sending disabled (filtered)", filtered),
            ("plain receive/delete loop", loop), ("plain receive/SendEmail/delete loop", r.get("loop_send"))]
    cols = [(name, c) for name, c in cols if c]
    lines = [f"Run `{r['run_id']}`, {r['events']:,} events per phase, {r['machine']['nproc']} cores "
             f"({r['machine']['cpu_model']}), load average at start "
             f"{' '.join(str(x) for x in r['machine']['load_average_at_start'])}.", ""]
    lines.append("| | " + " | ".join(name for name, _ in cols) + " |")
    lines.append("| --- |" + " ---: |" * len(cols))

    def row(label, fn):
        cells = []
        for _, c in cols:
            try:
                value = fn(c)
            except (KeyError, TypeError):
                value = None
            cells.append("–" if value is None else str(value))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    row("messages/s", lambda c: f"**{c['messages_per_s']:,.0f}**")
    row("time to drain (s)", lambda c: f"{c['drain_s']:.1f}")
    row("worker CPU s per 1,000 messages", lambda c: f"{c['worker_cpu_s_per_1000']:.3f}")
    row("worker CPU per message (µs)", lambda c: f"**{c['worker_cpu_us_per_message']:.0f}**")
    row("worker CPU use while draining (cores)", lambda c: f"{c['worker_cpu_cores']:.2f}")
    # The whole machine speeds up and slows down by ±25 % over minutes (a shared VM); the ratio to
    # LocalStack's CPU for the same messages in the same run moves far less.
    row("worker CPU per message ÷ LocalStack's", lambda c: f"{c['worker_cpu_s_per_1000'] / c['machine']['emulators']['localstack']['cpu_s_per_1000']:.2f}")
    row("plain loop's own CPU per message (Python client, µs)",
        lambda c: f"{c['client_cpu_s_per_1000'] * 1000:.0f}" if "client_cpu_s_per_1000" in c else None)
    row("worker peak RSS (MiB)", lambda c: f"{c['peak_rss_kb'] / 1024:.1f}")
    row("latency enqueue → email in SES store (`at` + 1 s), p50 / p95 / p99 (s)",
        lambda c: fmt_lat(c.get("latency_enqueue_to_ses_at")) if "latency_enqueue_to_ses_at" in c else None)
    row("latency enqueue → worker's outcome line (after delete), p50 / p95 / p99 (s)",
        lambda c: fmt_lat(c.get("latency_enqueue_to_outcome_line") or c.get("latency_enqueue_to_delete")))
    row("LocalStack CPU s per 1,000 messages",
        lambda c: f"{c['machine']['emulators']['localstack']['cpu_s_per_1000']:.2f}")
    row("SES emulator CPU s per 1,000 messages",
        lambda c: f"{c['machine']['emulators']['ses_emulator']['cpu_s_per_1000']:.2f}")
    if any("moto" in (c.get("machine") or {}).get("emulators", {}) for _, c in cols):
        row("moto (DynamoDB) CPU s per 1,000 messages",
            lambda c: f"{c['machine']['emulators']['moto']['cpu_s_per_1000']:.2f}")
    row("whole machine, cores busy (of the machine's cores)", lambda c: f"{c['machine']['machine_busy_cores']:.2f}")
    row("other processes on the machine (cores busy)", lambda c: f"{c['machine']['other_processes_cores']:.2f}")
    row("load average start → end", lambda c: f"{c['machine']['load_average_start'][0]:.2f} → "
                                              f"{c['machine']['load_average_end'][0]:.2f}")
    lines.append("")
    extra = []
    if send and send.get("trickle"):
        t = send["trickle"]
        extra.append(f"- Steady state: {t['events']} events sent one at a time at {t['rate_per_s']}/s into the running "
                     f"worker: enqueue → outcome line p50 / p95 / p99 "
                     f"{fmt_ms(t['latency_enqueue_to_outcome_line'])} ms (the SES store's `at` has whole seconds only: "
                     f"≤ {fmt_lat(t.get('latency_enqueue_to_ses_at'))} s).")
    if len(r.get("send_repeats") or []) > 1:
        reps = r["send_repeats"]
        cpus = " / ".join(f"{x['worker_cpu_us_per_message']:.0f}" for x in reps)
        rates = " / ".join(f"{x['messages_per_s']:,.0f}" for x in reps)
        extra.append(f"- The send phase ran {len(reps)} times; the table shows the run with the median worker CPU. "
                     f"Worker CPU per message: {cpus} µs (median {send_cpu(r):.0f}); messages/s: {rates} "
                     f"(median {send_rate(r):,.0f}).")
    bound = emulator_bound(r) if send else None
    if bound:
        ceiling = max((r[c]["messages_per_s"] for c in ("filtered", "loop") if r.get(c)), default=None)
        share = f", {bound['messages_per_s'] / ceiling * 100:.0f} % of the receive + delete ceiling" if ceiling else ""
        extra.append(f"- Emulator bound for sending: LocalStack {bound['localstack_s'] * 1e6:.0f} µs and the SES "
                     f"emulator {bound['ses_s'] * 1e6:.0f} µs of CPU per message (send runs, median), each one "
                     f"process on at most one core, both on the same {bound['cores']} cores: no worker, even one "
                     f"using no CPU, could send more than **{bound['messages_per_s']:,.0f} msg/s** here{share}. "
                     f"The worker reached {send_rate(r) / bound['messages_per_s'] * 100:.0f} % of that bound.")
    if send:
        extra.append(f"- Emails in the SES store: {send['emails']['found']:,} of {send['emails']['expected']:,}, "
                     f"{send['emails']['duplicates']} duplicates; outcomes {send['outcomes']}.")
    if r.get("send_state"):
        st = r["send_state"]
        extra.append(f"- State table on (send_state, the run in the table): emails in the SES store "
                     f"{st['emails']['found']:,} of {st['emails']['expected']:,}, {st['emails']['duplicates']} "
                     f"duplicates; outcomes {st['outcomes']}.")
        if st.get("trickle"):
            t = st["trickle"]
            extra.append(f"- Steady state with the state table on: {t['events']} events at {t['rate_per_s']}/s, "
                         f"enqueue → outcome line p50 / p95 / p99 {fmt_ms(t['latency_enqueue_to_outcome_line'])} ms.")
    if r.get("startup"):
        s = r["startup"]
        extra.append(f"- Start-up ({len(s['runs'])} runs): first ReceiveMessage {s['first_receive_ms_median']} ms "
                     f"after spawn (median; max {s['first_receive_ms_max']} ms); idle RSS "
                     f"{s['idle_rss_kb_max'] / 1024:.1f} MiB after {s['runs'][0]['idle_after_s']} s long-polling "
                     f"an empty queue.")
    b = r["binary"]
    extra.append(f"- Release binary: {b['bytes'] / 1024 / 1024:.1f} MiB ({b['bytes']:,} bytes), "
                 f"{'stripped' if b.get('stripped') else 'NOT stripped'}.")
    if loop or r.get("loop_send"):
        plain = loop or r["loop_send"]
        in_flight = (r.get("loop_send") or {}).get("concurrency") or plain["pollers"] * plain["batch"]
        extra.append(f"- Plain loops: {plain['pollers']} threads × ReceiveMessage({plain['batch']}, wait 20 s) → "
                     f"[SendEmail for each message, the same rendered email the worker sent, at most {in_flight} at "
                     "once] → DeleteMessageBatch, raw JSON over keep-alive HTTP, no SDK: the worker's default batch "
                     "size, pollers and messages in flight. The sending loop is no ceiling: its Python client spends "
                     "more CPU per message than the worker.")
    lines += extra
    if r.get("state_cost"):
        lines += [""] + state_section(r)
    lines += ["", "| target | measured | limit | met |", "| --- | ---: | ---: | :---: |"]
    for t in r["targets"]:
        lines.append(f"| {t['target']} | {t['value']} {t['unit']} | {t['limit']} {t['unit']} | "
                     f"{'yes' if t['met'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def state_section(r):
    """The state table on against off (and against off at on's pace), from the interleaved repeats."""
    c = r["state_cost"]
    cpu = c["worker_cpu_us_per_message"]
    paced = "paced" in cpu
    n = len(cpu["off"]["runs"])

    def fmt(v, digits):
        return "–" if v is None else f"{v:,.{digits}f}"

    def signed(v, digits, unit=""):
        return "–" if v is None else f"{v:+,.{digits}f}{unit}".replace("-", "−")

    def cell(side, digits, bold=False):
        med = fmt(side["median"], digits)
        return f"{f'**{med}**' if bold else med} ({fmt(side['min'], digits)}–{fmt(side['max'], digits)})"

    def delta(d, digits, unit, bold=False):
        text = signed(d["delta_of_medians"], digits, unit)
        if bold:
            text = f"**{text}**"
        if d.get("delta_pct") is not None:
            text += f" ({d['delta_pct']:+.0f} %)".replace("-", "−")
        return text + "; runs " + " / ".join(signed(v, digits) for v in d["paired_deltas"])

    def runs(side, digits):
        return " / ".join(fmt(v, digits) for v in side["runs"])

    kinds = "send, send_state, send_paced" if paced else "send, send_state"
    lines = [f"State table on against off: {n} runs of each, interleaved ({kinds}, {kinds.split(',')[0]}, …), each "
             "on its own queue. send_state's worker claims each (event, route) in a fresh table in moto's "
             "DynamoDB (a conditional PutItem) and marks it sent once SES accepted it (an UpdateItem)."
             + (" send_paced is send without the table, its emails limited (`ses.max_send_rate`) to the "
                "messages/s the send_state run before it reached: moto caps send_state's pace, and the worker's "
                "CPU per message depends on its pace." if paced else "")
             + " Cells: median (min–max); differences: of the medians, then run k minus run k.", ""]
    head = "| | state off (send) | state on (send_state) |"
    rule = "| --- | ---: | ---: |"
    if paced:
        head += " state off at send_state's pace (send_paced) |"
        rule += " ---: |"
    head += " on − off |"
    rule += " ---: |"
    if paced:
        head += " on − off at the same pace |"
        rule += " ---: |"
    lines += [head, rule]
    rows = [("messages/s", "messages_per_s", 0, True, ""),
            ("worker CPU per message (µs)", "worker_cpu_us_per_message", 0, True, " µs"),
            ("… of which user (µs)", "worker_cpu_user_us_per_message", 0, False, " µs"),
            ("… of which system (kernel) (µs)", "worker_cpu_sys_us_per_message", 0, False, " µs"),
            ("worker CPU per message ÷ LocalStack's", "worker_cpu_per_localstack", 2, False, ""),
            ("worker peak RSS (MiB)", "peak_rss_mib", 1, False, " MiB"),
            ("LocalStack CPU per message (µs)", "localstack_cpu_us_per_message", 0, False, " µs")]
    for label, key, digits, bold, unit in rows:
        x = c[key]
        line = f"| {label} | {cell(x['off'], digits, bold)} | {cell(x['on'], digits, bold)} |"
        if paced:
            line += f" {cell(x['paced'], digits, bold)} |"
        line += f" {delta(x['on_minus_off'], digits, unit, bold)} |"
        if paced:
            line += f" {delta(x['on_minus_paced'], digits, unit, bold)} |"
        lines.append(line)
    blank = " – |" if paced else ""
    blank_d = " |" if paced else ""
    lines.append(f"| moto (DynamoDB) CPU per message (µs) | – | {cell(c['moto_cpu_us_per_message'], 0)} |{blank} |"
                 f"{blank_d}")
    if c["dynamodb_calls_per_message"]["median"] is not None:
        lines.append(f"| DynamoDB calls per message | – | {cell(c['dynamodb_calls_per_message'], 2)} |{blank} |"
                     f"{blank_d}")
    rate = c["messages_per_s"]
    lines += ["", f"- Each run, in order: worker CPU per message (µs), send {runs(cpu['off'], 0)}; send_state "
                  f"{runs(cpu['on'], 0)}" + (f"; send_paced {runs(cpu['paced'], 0)}" if paced else "")
              + f". Messages/s: send {runs(rate['off'], 0)}; send_state {runs(rate['on'], 0)}"
              + (f"; send_paced {runs(rate['paced'], 0)}" if paced else "") + "."]
    verdict = (f"- Target: the state table adds ≤ {c['target_us']} µs of worker CPU per message. send_state − "
               f"send: {signed(cpu['on_minus_off']['delta_of_medians'], 0, ' µs')} (medians), "
               f"{'met' if c['met_vs_off'] else '**not met**'}")
    if paced:
        verdict += (f"; at the same pace, send_state − send_paced: "
                    f"{signed(cpu['on_minus_paced']['delta_of_medians'], 0, ' µs')}, "
                    f"{'met' if c['met_vs_paced'] else '**not met**'}")
    lines.append(verdict + ".")
    return lines


def fmt_ms(summary):
    if not summary:
        return "–"
    return f"{summary['p50_s'] * 1000:.0f} / {summary['p95_s'] * 1000:.0f} / {summary['p99_s'] * 1000:.0f}"


def rebin(tenths, width):
    """Rates (messages/s) over bins of `width` seconds from counts per tenth of a second."""
    per_bin = max(1, round(width * 10))
    return [sum(tenths[i : i + per_bin]) / (len(tenths[i : i + per_bin]) / 10) for i in range(0, len(tenths), per_bin)]


def svg_chart(r):
    """Throughput over time (messages per second, per phase) and the worker's RSS and CPU."""
    colors = {"send": "#1f77b4", "send_state": "#8c564b", "send_paced": "#e377c2", "filtered": "#2ca02c",
              "loop": "#7f7f7f", "loop_send": "#9467bd"}
    labels = {"send": "worker, sending", "send_state": "worker, sending, state table on",
              "send_paced": "worker, sending at send_state's pace",
              "filtered": "worker, sending disabled (filtered)",
              "loop": "plain receive/delete loop", "loop_send": "plain receive/SendEmail/delete loop"}
    keys = [k for k in colors if r.get(k) and r[k].get("settled_per_100ms")]
    longest = max((len(r[k]["settled_per_100ms"]) / 10 for k in keys), default=1.0)
    # About 50 points on the longest series, in a round bin width.
    width = next((w for w in (0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10) if longest / w <= 60), 10)
    series = [(k, rebin(r[k]["settled_per_100ms"], width)) for k in keys]
    svg_w, svg_h = 960, 640
    left, right = 70, 40
    top1, h1 = 74, 290
    top2, h2 = 450, 140
    plot_w = svg_w - left - right
    x_max = nice_ceiling(longest)
    y_max = nice_ceiling(max([max(s) for _, s in series if s] + [r[k]["messages_per_s"] for k in keys] + [1]) * 1.35)

    def x(sec):
        return left + plot_w * sec / x_max

    def y1(v):
        return top1 + h1 - h1 * v / y_max

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{svg_w}" height="{svg_h}" '
           f'viewBox="0 0 {svg_w} {svg_h}" font-family="Helvetica, Arial, sans-serif" font-size="12">',
           f'<rect width="{svg_w}" height="{svg_h}" fill="white"/>',
           f'<clipPath id="plot1"><rect x="{left}" y="{top1}" width="{plot_w}" height="{h1}"/></clipPath>',
           f'<text x="{left}" y="24" font-size="16" font-weight="bold">quilt-notify: throughput while draining '
           f'{r["events"]:,} pre-loaded events</text>',
           f'<text x="{left}" y="42" fill="#555">messages settled (deleted) per second in {width:g} s bins, '
           f'from the start of the worker (or loop); dashed: the mean over the drain.</text>',
           f'<text x="{left}" y="58" fill="#555">{r["machine"]["nproc"]} cores shared with other work '
           f'(load average {r["machine"]["load_average_at_start"][0]:.2f} at start), emulators on the same '
           f'machine; run {r["run_id"]}.</text>']
    out += axes(left, top1, plot_w, h1, x_max, y_max, "seconds", "messages/s")
    for key, rates in series:
        pts = [(0.0, rates[0] if rates else 0)]
        pts += [(min((i + 0.5) * width, len(r[key]["settled_per_100ms"]) / 10), v) for i, v in enumerate(rates)]
        path = " ".join(f"{x(t):.1f},{y1(v):.1f}" for t, v in pts)
        out.append(f'<polyline clip-path="url(#plot1)" fill="none" stroke="{colors[key]}" stroke-width="2" '
                   f'stroke-linejoin="round" points="{path}"/>')
        mean = r[key]["messages_per_s"]
        end = x(r[key]["drain_s"])
        out.append(f'<line x1="{left}" x2="{end:.1f}" y1="{y1(mean):.1f}" y2="{y1(mean):.1f}" '
                   f'stroke="{colors[key]}" stroke-dasharray="5 4" stroke-width="1.2"/>')
    ly = top1 + 18
    for key, _ in series:
        out.append(f'<rect x="{left + plot_w - 370}" y="{ly - 8}" width="16" height="4" fill="{colors[key]}"/>')
        out.append(f'<text x="{left + plot_w - 348}" y="{ly - 2}">{labels[key]}: '
                   f'{r[key]["messages_per_s"]:,.0f}/s mean, {r[key]["drain_s"]:.1f} s</text>')
        ly += 18
    # Panel 2: the worker's RSS and CPU over the whole sending run (drain, steady trickle, stop).
    send = r.get("send")
    if send and send.get("samples"):
        samples = [s for s in send["samples"] if s["t"] >= 0 and s["rss_kb"]]
        rss_max = nice_ceiling(max(s["rss_kb"] for s in samples) / 1024 * 1.25)
        t_max = nice_ceiling(max(s["t"] for s in samples))

        def x2(t):
            return left + plot_w * t / t_max

        out.append(f'<text x="{left}" y="{top2 - 14}" font-weight="bold">the worker during the sending run '
                   f'(drain, then the steady trickle): RSS in MiB (left axis) and CPU in cores (right axis, '
                   f'1 s average)</text>')
        out += axes(left, top2, plot_w, h2, t_max, rss_max, "seconds since the worker started", "RSS MiB")
        path = " ".join(f"{x2(s['t']):.1f},{top2 + h2 - h2 * s['rss_kb'] / 1024 / rss_max:.1f}" for s in samples)
        out.append(f'<polyline fill="none" stroke="#d62728" stroke-width="2" points="{path}"/>')
        cores_max = float(r["machine"]["nproc"] or 2)
        cpu_pts = []
        j = 0
        for i, s in enumerate(samples):
            while j < i and s["t"] - samples[j]["t"] > 1.0:
                j += 1
            if i > j and s["t"] > samples[j]["t"]:
                cpu_pts.append((s["t"], (s["cpu_s"] - samples[j]["cpu_s"]) / (s["t"] - samples[j]["t"])))
        if cpu_pts:
            path = " ".join(f"{x2(t):.1f},{top2 + h2 - h2 * min(c, cores_max) / cores_max:.1f}" for t, c in cpu_pts)
            out.append(f'<polyline fill="none" stroke="#ff7f0e" stroke-width="1.5" points="{path}"/>')
        for k in range(0, 5):
            yy = top2 + h2 - h2 * k / 4
            out.append(f'<text x="{left + plot_w + 4}" y="{yy + 4:.1f}" fill="#ff7f0e">{cores_max * k / 4:.1f}</text>')
        out.append(f'<rect x="{left + 10}" y="{top2 + 8}" width="16" height="4" fill="#d62728"/>'
                   f'<text x="{left + 32}" y="{top2 + 14}">RSS (peak {send["peak_rss_kb"] / 1024:.1f} MiB)</text>'
                   f'<rect x="{left + 180}" y="{top2 + 8}" width="16" height="4" fill="#ff7f0e"/>'
                   f'<text x="{left + 202}" y="{top2 + 14}">CPU (of {r["machine"]["nproc"]} cores)</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def nice_ceiling(v):
    if v <= 0:
        return 1
    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if m * exp >= v:
            return m * exp
    return 10 * exp


def axes(left, top, w, h, x_max, y_max, x_label, y_label):
    out = [f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#999"/>']
    for k in range(0, 6):
        v = y_max * k / 5
        yy = top + h - h * k / 5
        out.append(f'<line x1="{left}" x2="{left + w}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end">{v:,.0f}</text>')
    step = nice_ceiling(x_max / 10)
    sec = 0.0
    while sec <= x_max + 1e-9:
        xx = left + w * sec / x_max
        out.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{top + h}" y2="{top + h + 4}" stroke="#999"/>')
        out.append(f'<text x="{xx:.1f}" y="{top + h + 16}" text-anchor="middle">{sec:g}</text>')
        sec += step
    out.append(f'<text x="{left + w / 2}" y="{top + h + 32}" text-anchor="middle" fill="#555">{x_label}</text>')
    out.append(f'<text transform="translate({left - 48},{top + h / 2}) rotate(-90)" text-anchor="middle" '
               f'fill="#555">{y_label}</text>')
    return out


# ---------------------------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="bench.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10000, help="events per phase (default %(default)s)")
    parser.add_argument("--out", default=str(ROOT / "target/bench"), help="results directory (default %(default)s)")
    parser.add_argument("--logs", default=str(ROOT / "target/bench/logs"),
                        help="worker logs and generated configs (default %(default)s)")
    parser.add_argument("--binary", default=str(ROOT / "target/release/quilt-notify"))
    parser.add_argument("--endpoint", default="http://127.0.0.1:4566", help="LocalStack (SQS)")
    parser.add_argument("--ses-endpoint", default="http://127.0.0.1:8005", help="SES v2 emulator")
    parser.add_argument("--moto-relay", action=argparse.BooleanOptionalAction, default=True,
                        help="send_state: the worker reaches moto through a keep-alive relay in this process "
                             "(moto closes every connection, DynamoDB does not; default on)")
    parser.add_argument("--moto-endpoint", default=f"http://127.0.0.1:{os.environ.get('QN_MOTO_PORT') or 5000}",
                        help="moto server: DynamoDB for send_state's state tables (default %(default)s, "
                             "QN_MOTO_PORT)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds a phase may take to drain (default %(default)s)")
    parser.add_argument("--trickle", type=int, default=200, help="steady-state events after the send drain (0: none)")
    parser.add_argument("--trickle-rate", type=float, default=20, help="their rate per second (default %(default)s)")
    parser.add_argument("--startup-runs", type=int, default=5, help="start-up measurements (default %(default)s)")
    parser.add_argument("--idle-seconds", type=float, default=5, help="idle RSS is read this long after spawn")
    parser.add_argument("--max-send-rate", type=float, default=100000,
                        help="QUILT_NOTIFY__SES__MAX_SEND_RATE for the worker (default %(default)s)")
    parser.add_argument("--pollers", type=int, default=DEFAULTS["worker"]["pollers"],
                        help="plain loop threads (default: the worker's default pollers, %(default)s)")
    parser.add_argument("--max-messages", type=int, default=DEFAULTS["queue"]["max_messages"],
                        help="plain loop batch (default: the worker's, %(default)s)")
    parser.add_argument("--concurrency", type=int, default=DEFAULTS["worker"]["concurrency"],
                        help="plain send loop: SendEmail calls at once (default: the worker's, %(default)s)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of send (and of send_state, alternating with send's); the report shows "
                             "the median and the spread (default %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="a worker setting for every phase, e.g. worker.concurrency=40 (repeatable; "
                             "default: config/default.toml's values)")
    parser.add_argument("--phases", default="startup,send,filtered,loop,loop_send",
                        help="comma-separated, of " + ",".join(PHASES) + " (default %(default)s; send_state "
                             "and send_paced are left out: they need moto, whose ~50 msg/s make each of their "
                             "runs several times longer than a send run; --phases send,send_state,send_paced "
                             "measures the state table's cost)")
    parser.add_argument("--report-only", metavar="RESULTS.JSON",
                        help="measure nothing: rewrite results.md and throughput.svg from a results.json")
    parser.add_argument("--run-id", help="names the queues, bucket and recipient (default: time + random)")
    args = parser.parse_args(argv)
    for setting in args.set:
        if not re.fullmatch(r"[a-z_]+\.[a-z_]+=.*", setting):
            parser.error(f"--set {setting!r}: expected SECTION.KEY=VALUE, e.g. worker.concurrency=40")
    unknown = set(args.phases.split(",")) - set(PHASES)
    if unknown:
        parser.error(f"--phases: unknown {', '.join(sorted(unknown))} (known: {', '.join(PHASES)})")
    if "send_paced" in args.phases.split(",") and "send_state" not in args.phases.split(","):
        parser.error("--phases: send_paced runs at send_state's pace, so it needs send_state too")
    if args.events < 1:
        parser.error("--events must be at least 1")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def write_reports(results, out):
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    md = markdown(results)
    (out / "results.md").write_text(md)
    (out / "throughput.svg").write_text(svg_chart(results))
    return md


def main(argv=None):
    args = parse_args(argv)
    if args.report_only:
        source = Path(args.report_only)
        results = json.loads(source.read_text())
        results["targets"] = targets(results)
        print(write_reports(results, source.parent))
        return 0
    if not Path(args.binary).is_file():
        sys.exit(f"bench: error: {args.binary} missing (cargo build --release)")
    bench = Bench(args)
    # SIGTERM (e.g. from the bash wrapper's trap) unwinds like Ctrl-C, so queues get deleted.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        results = bench.run()
    except BenchError as exc:
        log(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted; queues deleted")
        return 130
    out = Path(args.out)
    print(write_reports(results, out))
    log(f"results: {out / 'results.md'}, {out / 'results.json'}, {out / 'throughput.svg'}; logs in {bench.logs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
