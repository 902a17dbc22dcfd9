"""The end-to-end benchmark of scripts/bench.py, in parts:

  phases.py  the phases (a registry, PHASES) and Bench, which runs them and gathers results
  worker.py  the release binary as a child process, its log lines parsed as they come
  clients.py the AWS calls: boto3 for resources, the load and queue depth; a raw keep-alive JSON
             client for the plain loops (boto3 is measurably too slow there); moto's relay
  capacity.py pure: the relay's DynamoDB calls by operation and the units DynamoDB would bill
  procfs.py  CPU and memory from /proc: the worker, the emulators, the machine
  stats.py   pure: percentiles, medians of repeats, the state table's cost, digest recording's
             cost and its check (every event recorded), the targets
  report.py  pure: results.md and throughput.svg from the results

To add a phase or a mode (e.g. a peer implementation to compare with): write a Bench method that
returns the same result keys as the others (messages_per_s, drain_s, latency_..., machine, ...)
and add a Phase to PHASES in phases.py; its column, chart line and --phases entry follow.
"""

import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The worker settings under test: the plain loops copy their batch size and parallelism.
DEFAULTS = tomllib.loads((ROOT / "config/default.toml").read_text())


class BenchError(Exception):
    """A run that measured nothing usable: the bench stops and says why."""


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)
