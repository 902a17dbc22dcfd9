"""The Node.js peer (scripts/bench-peer/consumer.mjs) as a child process: its progress lines parsed
as they come, its CPU and memory read from /proc as the worker's are."""

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from . import ROOT, BenchError, log
from .procfs import proc_cpu, proc_mem_kb

SOURCE = ROOT / "scripts/bench-peer"
# The packages the peer pins (scripts/bench-peer/package-lock.json), for the report.
PACKAGES = ("sqs-consumer", "@aws-sdk/client-sqs", "@aws-sdk/client-sesv2", "handlebars")


def parse_deleted(line):
    """(total deleted so far, seconds since the epoch) of a "deleted TOTAL AT_MS" line, or None."""
    parts = line.split()
    if len(parts) != 3 or parts[0] != "deleted" or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    return int(parts[1]), int(parts[2]) / 1000


def settle_times(progress):
    """One timestamp per deleted message from the (total, time) progress lines, in order: each
    line's new messages are counted at its time."""
    times = []
    seen = 0
    for total, at in progress:
        if total > seen:
            times += [at] * (total - seen)
            seen = total
    return times


def versions(peer_dir):
    """The installed versions of the pinned packages, and node's."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = json.loads((Path(peer_dir) / "node_modules" / name / "package.json").read_text())["version"]
        except (OSError, ValueError, KeyError):
            out[name] = None
    return out


def node_version(node):
    try:
        return subprocess.run([node, "--version"], capture_output=True, text=True, check=False,
                              timeout=30).stdout.strip()
    except OSError:
        return None


class Peer:
    """node consumer.mjs, run from `peer_dir` (where install-emulators put its node_modules: ES
    modules resolve packages next to the script, so the script is copied there first)."""

    def __init__(self, node, peer_dir, env, log_path):
        peer_dir = Path(peer_dir)
        if not (peer_dir / "node_modules/sqs-consumer").is_dir():
            raise BenchError(f"the Node.js peer is not installed in {peer_dir}: scripts/install-emulators bench-peer")
        script = peer_dir / "consumer.mjs"
        shutil.copyfile(SOURCE / "consumer.mjs", script)
        self.lock = threading.Lock()
        self.ready_ts = None
        self.progress = []  # (total deleted, time)
        self.errors = []
        self.error_count = 0
        self.exit_status = None
        self.log_file = open(log_path, "w")  # noqa: SIM115 - closed by stop(), after the reader
        self.spawned = time.time()
        self.proc = subprocess.Popen([node, str(script)], cwd=peer_dir, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=env, text=True, bufsize=1)
        self.pid = self.proc.pid
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.log_file.write(line)
            now = time.time()
            deleted = parse_deleted(line)
            with self.lock:
                if deleted:
                    self.progress.append(deleted)
                elif line.startswith("bench-peer: ready") and self.ready_ts is None:
                    self.ready_ts = now
                elif line.startswith("bench-peer:"):
                    self.error_count += 1
                    if len(self.errors) < 20:
                        self.errors.append(line.strip())
        self.log_file.flush()

    def deleted(self):
        with self.lock:
            return self.progress[-1][0] if self.progress else 0

    def alive(self):
        if self.exit_status is not None:
            return False
        if self.proc.poll() is None:
            return True
        self.exit_status = self.proc.returncode
        return False

    def cpu_split(self):
        """(user, system) CPU seconds so far, every thread of the process (libuv's pool, V8's GC)."""
        return proc_cpu(self.pid)

    def mem(self):
        return proc_mem_kb(self.pid)

    def wait_ready(self, seconds):
        deadline = time.time() + seconds
        while time.time() < deadline:
            with self.lock:
                if self.ready_ts is not None:
                    return
            if not self.alive():
                raise BenchError(f"the Node.js peer exited ({self.exit_status}) before it was ready; "
                                 f"log: {self.log_file.name}")
            time.sleep(0.02)
        raise BenchError(f"the Node.js peer was not ready after {seconds:.0f} s; log: {self.log_file.name}")

    def stop(self, grace=10):
        """SIGTERM (the peer aborts its polls and exits), SIGKILL after `grace` seconds."""
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log(f"Node.js peer {self.pid} still running {grace} s after SIGTERM; SIGKILL")
                self.proc.kill()
                self.proc.wait()
            self.exit_status = self.proc.returncode
        self.reader.join(timeout=5)
        self.log_file.close()
        return self.exit_status
