"""The release binary as a child process: its JSON log lines parsed as they come, its CPU and
memory sampled."""

import json
import os
import re
import signal
import subprocess
import threading
import time
from datetime import datetime

from . import BenchError, log
from .procfs import proc_cpu, proc_mem_kb

# recorded: the digest phase's outcome (kept in the table for a later digest, then deleted).
SETTLED = ("sent", "filtered", "duplicate", "recorded")
# The first SDK request of the worker: with ses.max_send_rate set there is no GetAccount call at
# start-up, so the first request that enters the transmit phase is a ReceiveMessage.
TRANSMIT_TARGET = "aws_smithy_runtime_api::client::interceptors::context"
TRANSMIT_MESSAGE = "entering 'transmit' phase"
TS_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def parse_ts(text):
    """Seconds since the epoch of an RFC 3339 timestamp (µs kept), or None."""
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
        self.log_file = open(log_path, "w")  # noqa: SIM115 - closed by stop(), after the reader
        self.spawned = time.time()
        self.proc = subprocess.Popen([str(binary), "run", "--config", str(config)], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=env, text=True, bufsize=1)
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
        """User + system CPU seconds so far."""
        return sum(proc_cpu(self.pid))

    def mem(self):
        return proc_mem_kb(self.pid)

    def wait_for(self, predicate, seconds, what):
        deadline = time.time() + seconds
        while time.time() < deadline:
            with self.lock:
                if predicate():
                    return
            if not self.alive():
                raise BenchError(f"the worker exited ({self.exit_status}) while waiting for {what}; "
                                 f"log: {self.log_file.name}")
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
                self.samples.append((time.time(), sum(proc_cpu(self.pid)), mem.get("VmRSS"), mem.get("VmHWM")))
            except (OSError, IndexError, ValueError):
                return
            self.halt.wait(self.every)
