"""The bench's phases: what each measures, how it shows in the report, and which Bench method runs
it. The one place to add a phase or a mode: a new entry here (and its method in runner.py) gets
its --phases name, its report column and its line in the chart."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Phase:
    name: str
    help: str  # for --help
    method: str  # the runner.Bench method: (label) -> result, or (label, earlier runs) if sending
    column: str | None = None  # its column in results.md (None: a section of its own)
    chart: str | None = None  # its line in throughput.svg
    color: str | None = None
    sending: bool = False  # runs --repeat times, interleaved with the other sending phases
    default: bool = True  # in the default --phases
    needs: tuple = ()  # phases it cannot run without
    moto: bool = False  # needs moto (DynamoDB)


PHASES = {p.name: p for p in (
    Phase("startup", "the worker on an empty queue, a few times: time from spawn to the first "
          "ReceiveMessage leaving the process, and the idle RSS while it long-polls", "startup"),
    Phase("send", "N events pre-loaded with SendMessageBatch, then the worker with the default worker "
          "settings drains them, sending one email per event to the SES emulator; then, with the worker "
          "still running, a trickle of events sent one at a time (steady-state latency)", "send",
          column="worker, sending (SES emulator)", chart="worker, sending", color="#1f77b4", sending=True),
    Phase("send_state", "send with the shared state table on: a fresh table in moto's DynamoDB "
          "(--moto-endpoint) per run, made with the binary's `state create`; each email then costs a "
          "conditional PutItem and an UpdateItem. The worker reaches moto through a keep-alive relay in this "
          "process (moto closes every connection; DynamoDB does not; --no-moto-relay to go direct)", "send",
          column="worker, sending, state table on (moto DynamoDB)", chart="worker, sending, state table on",
          color="#8c564b", sending=True, default=False, moto=True),
    Phase("send_paced", "send without the table, its emails limited (ses.max_send_rate) to the messages/s "
          "the send_state run just before it reached: moto caps send_state at some tens of messages/s and "
          "the worker's CPU per message grows as its pace drops, so send_state − send_paced is the table's "
          "own cost", "send", column="worker, sending at send_state's pace (no table)",
          chart="worker, sending at send_state's pace", color="#e377c2", sending=True, default=False,
          needs=("send_state",)),
    Phase("digest", "send_state's events, table and relay, but the worker's route is a digest route "
          "(`digest = { at = … }`, daily, closing about 12 hours after the run starts): each event is recorded "
          "in the table (5 calls: the once-marker, the window's pending entry, the event's item, the window's "
          "state, the marker again) and no email is sent. Drained: the queue empty and every event's item and "
          "marker (`recorded`) in the table, in one window, checked with a Scan afterwards; its worker CPU, "
          "DynamoDB calls and units per recorded event beside send_state's per email", "send",
          column="worker, recording for a digest, state table on (moto DynamoDB)",
          chart="worker, recording for a digest", color="#bcbd22", sending=True, default=False, moto=True),
    Phase("peer", "the same N events drained by the Node.js peer (scripts/bench-peer/consumer.mjs: "
          "sqs-consumer + AWS SDK v3 SQS and SES v2 + Handlebars, pinned; the worker's pollers and batch size, its "
          "templates and template data with details off), one email each to the SES emulator, every email "
          "checked as send's are; its process's CPU (user + sys) per message against the worker's in the send run "
          "of the same repeat", "peer", column="Node.js peer, sending (SES emulator)", chart="Node.js peer, sending",
          color="#17becf", sending=True),
    Phase("filtered", "the same N events and worker, but the route matches nothing (another bucket): every "
          "message is received, parsed, matched, logged `filtered` and deleted; the worker's receive + "
          "delete ceiling, with no production flag", "filtered",
          column="worker, sending disabled (filtered)", chart="worker, sending disabled (filtered)",
          color="#2ca02c"),
    Phase("loop", "a plain receive/delete loop (raw SQS JSON over keep-alive HTTP, no SDK) with the "
          "worker's batch size, parallelism and long poll: the emulator's own ceiling", "loop",
          column="plain receive/delete loop", chart="plain receive/delete loop", color="#7f7f7f"),
    Phase("loop_send", "the same loop sending each message's email (the one the worker rendered) to the "
          "SES emulator between receive and delete; for comparison only: its Python client needs more CPU "
          "per message than the worker, so it is no ceiling", "loop_send",
          column="plain receive/SendEmail/delete loop", chart="plain receive/SendEmail/delete loop",
          color="#9467bd"),
)}

DEFAULT = ",".join(name for name, p in PHASES.items() if p.default)


def check(names):
    """Why `names` (a --phases list) cannot run, or None."""
    unknown = set(names) - set(PHASES)
    if unknown:
        return f"unknown {', '.join(sorted(unknown))} (known: {', '.join(PHASES)})"
    for name in names:
        missing = [need for need in PHASES[name].needs if need not in names]
        if missing:
            return f"{name} runs at {missing[0]}'s pace, so it needs {missing[0]} too"
    return None
