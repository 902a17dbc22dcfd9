#!/usr/bin/env python3
"""End-to-end benchmark of the quilt-notify worker against the local emulators.

Run through scripts/bench, which starts the emulators and builds the release binary first; this
file does the measuring (the parts are in scripts/qnbench/). Phases, each on a fresh queue of its
own (made with setup_resources.py, deleted at the end):

{phases}

Per phase: messages/s, CPU seconds (user + sys) of the worker process (or the Node.js peer's)
alone per 1,000 messages, peak RSS, latency percentiles, and the CPU the emulators and everything
else on the machine used in the same interval, so noise is visible. Results: results.json, results.md, throughput.svg in
--out; the worker logs in --logs.

Needs boto3: run with .emulators/venv/bin/python (scripts/install-emulators).
"""

import argparse
import json
import os
import re
import signal
import sys
import textwrap
from pathlib import Path

from qnbench import DEFAULTS, ROOT, BenchError, log, phases
from qnbench.phases import PHASES
from qnbench.report import write_reports
from qnbench.stats import targets


def description():
    """This file's docstring, with each phase's help from the registry."""
    listed = "\n".join(textwrap.fill(p.help, width=96, initial_indent=f"  {name:<10} ", subsequent_indent=" " * 13,
                                      break_on_hyphens=False) for name, p in PHASES.items())
    return __doc__.format(phases=listed)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="bench.py", description=description(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10000, help="events per phase (default %(default)s)")
    parser.add_argument("--out", default=str(ROOT / "target/bench"), help="results directory (default %(default)s)")
    parser.add_argument("--logs", default=str(ROOT / "target/bench/logs"),
                        help="worker logs and generated configs (default %(default)s)")
    parser.add_argument("--binary", default=str(ROOT / "target/release/quilt-notify"))
    parser.add_argument("--endpoint", default="http://127.0.0.1:4566", help="LocalStack (SQS)")
    parser.add_argument("--ses-endpoint", default="http://127.0.0.1:8005", help="SES v2 emulator")
    parser.add_argument("--moto-relay", action=argparse.BooleanOptionalAction, default=True,
                        help="send_state, digest: the worker reaches moto through a keep-alive relay in this process "
                             "(moto closes every connection, DynamoDB does not; default on)")
    parser.add_argument("--moto-endpoint", default=f"http://127.0.0.1:{os.environ.get('QN_MOTO_PORT') or 5000}",
                        help="moto server: DynamoDB for send_state's and digest's state tables (default %(default)s, "
                             "QN_MOTO_PORT)")
    parser.add_argument("--peer-dir", default=str(ROOT / ".emulators/bench-peer"),
                        help="peer: where scripts/install-emulators bench-peer put the Node.js peer's packages "
                             "(default %(default)s)")
    parser.add_argument("--node", default="node", help="peer: the Node.js to run it with (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=600,
                        help="seconds a phase may take to drain (default %(default)s)")
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
                        help="runs of send (and of peer, send_state, send_paced and digest, alternating with send's); "
                             "the report shows the median and the spread (default %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="a worker setting for every phase, e.g. worker.concurrency=40 (repeatable; "
                             "default: config/default.toml's values)")
    parser.add_argument("--phases", default=phases.DEFAULT,
                        help="comma-separated, of " + ",".join(PHASES) + " (default %(default)s; send_state, "
                             "send_paced and digest are left out: they need moto, whose ~50 msg/s make each of "
                             "their runs several times longer than a send run; --phases send,send_state,send_paced "
                             "measures the state table's cost, --phases send,send_state,digest digest recording's "
                             "beside it; peer needs scripts/install-emulators bench-peer, which scripts/bench "
                             "runs)")
    parser.add_argument("--report-only", metavar="RESULTS.JSON",
                        help="measure nothing: rewrite results.md and throughput.svg from a results.json")
    parser.add_argument("--run-id", help="names the queues, bucket and recipient (default: time + random)")
    args = parser.parse_args(argv)
    for setting in args.set:
        if not re.fullmatch(r"[a-z_]+\.[a-z_]+=.*", setting):
            parser.error(f"--set {setting!r}: expected SECTION.KEY=VALUE, e.g. worker.concurrency=40")
    wrong = phases.check(args.phases.split(","))
    if wrong:
        parser.error(f"--phases: {wrong}")
    if args.events < 1:
        parser.error("--events must be at least 1")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


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
    from qnbench.runner import Bench  # boto3: only to measure

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
