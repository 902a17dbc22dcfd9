"""The report of a run, from its results alone (so --report-only can redo it): results.md (the
table, the notes, the targets) and throughput.svg. Pure but for write_reports (tests:
scripts/tests)."""

import json
import math

from .phases import PHASES
from .stats import emulator_bound, send_cpu, send_rate


def fmt_lat(summary):
    return "–" if not summary else f"{summary['p50_s']:.2f} / {summary['p95_s']:.2f} / {summary['p99_s']:.2f}"


def markdown(r):
    send, loop = r.get("send"), r.get("loop")
    cols = [(p.column, r[name]) for name, p in PHASES.items() if p.column and r.get(name)]
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
    row("worker CPU per message ÷ LocalStack's",
        lambda c: f"{c['worker_cpu_s_per_1000'] / c['machine']['emulators']['localstack']['cpu_s_per_1000']:.2f}")
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
    if r.get("digest"):
        d = r["digest"]
        rec = d["recorded"]
        extra.append(f"- Digest (the run in the table): route `{d['digest']['route']}`, a daily digest closing at "
                     f"{d['digest']['at_utc']} UTC, hours after the run, so no email; outcomes {d['outcomes']}. "
                     f"Recorded in the table (a Scan after the run): {rec['items']:,} of {rec['expected']:,} events' "
                     f"items and {rec['markers_recorded']:,} once-markers `recorded`, in "
                     f"{len(rec['windows'])} window.")
    if r.get("peer"):
        pr = r["peer"]
        setup = (r.get("settings") or {}).get("peer") or {}
        pinned = ", ".join(f"{name} {version}" for name, version in (setup.get("packages") or {}).items())
        extra.append(f"- Node.js peer (the run in the table): scripts/bench-peer/consumer.mjs on node "
                     f"{setup.get('node') or '?'} ({pinned or 'versions unknown'}), {setup.get('consumers', '?')} "
                     f"consumers of {setup.get('batch', '?')}; in its column the worker rows are the node "
                     f"process's. Emails in the SES store: {pr['emails']['found']:,} of "
                     f"{pr['emails']['expected']:,}, {pr['emails']['duplicates']} duplicates"
                     + (f"; median size (subject + HTML + text) {pr['emails']['chars_median']:,.0f} characters, "
                        f"the worker's {send['emails']['chars_median']:,.0f}"
                        + ("" if pr["emails"]["chars_median"] == send["emails"]["chars_median"]
                           else " (**not the same emails**: the peer's CPU is not for the worker's work)")
                        if pr["emails"].get("chars_median") and send and send["emails"].get("chars_median") else "")
                     + ".")
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
        lines += ["", *state_section(r)]
    if r.get("peer_ratio"):
        lines += ["", *peer_section(r)]
    if r.get("digest_cost"):
        lines += ["", *digest_section(r)]
    lines += ["", "| target | measured | limit | met |", "| --- | ---: | ---: | :---: |"]
    for t in r["targets"]:
        lines.append(f"| {t['target']} | {t['value']} {t['unit']} | {t['limit']} {t['unit']} | "
                     f"{'yes' if t['met'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def fmt(v, digits):
    """A number with thousands separators, or – for none."""
    return "–" if v is None else f"{v:,.{digits}f}"


def cell(side, digits, bold=False):
    """A table cell "median (min–max)" of a {median, min, max} summary; – without a median."""
    if side["median"] is None:
        return "–"
    med = fmt(side["median"], digits)
    return f"{f'**{med}**' if bold else med} ({fmt(side['min'], digits)}–{fmt(side['max'], digits)})"


def state_section(r):
    """The state table on against off (and against off at on's pace), from the interleaved repeats."""
    c = r["state_cost"]
    cpu = c["worker_cpu_us_per_message"]
    paced = "paced" in cpu
    n = len(cpu["off"]["runs"])

    def signed(v, digits, unit=""):
        return "–" if v is None else f"{v:+,.{digits}f}{unit}".replace("-", "−")

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


def peer_section(r):
    """The Node.js peer against the worker, from the interleaved repeats: the ratio of their CPU
    per message, of the medians and of each pair of runs."""
    c = r["peer_ratio"]
    cpu = c["cpu_us_per_message"]
    n = len(cpu["worker"]["runs"])

    def ratio(x, bold=False):
        if x["of_medians"] is None:
            return "–"
        text = fmt(x["of_medians"], 2) + "×"
        if bold:
            text = f"**{text}**"
        return text + "; runs " + " / ".join(fmt(v, 2) for v in x["paired"])

    runs = f"{n} runs of each, interleaved (send, peer, send, …)" if n > 1 else "one run of each (send, then peer)"
    lines = [f"The Node.js peer against the worker: {runs}, each on "
             "its own queue of the same number of events, every email checked in the SES store. The peer "
             "(scripts/bench-peer/consumer.mjs) does the worker's work with details off: parse, match, the same "
             "templates and template data, one SendEmail, DeleteMessageBatch of the accepted. CPU: each "
             "process's own, user + sys, from its start of polling to the drain. Cells: median (min–max); "
             "ratios: peer ÷ worker of the medians, then run k ÷ run k.", "",
             "| | worker (send) | Node.js peer (peer) | peer ÷ worker |", "| --- | ---: | ---: | ---: |"]
    rows = [("CPU per message (µs)", "cpu_us_per_message", 0, True),
            ("… of which user (µs)", "cpu_user_us_per_message", 0, False),
            ("… of which system (kernel) (µs)", "cpu_sys_us_per_message", 0, False),
            ("messages/s", "messages_per_s", 0, False),
            ("peak RSS (MiB)", "peak_rss_mib", 1, False)]
    for label, key, digits, bold in rows:
        x = c[key]
        lines.append(f"| {label} | {cell(x['worker'], digits, bold)} | {cell(x['peer'], digits, bold)} | "
                     f"{ratio(x['peer_over_worker'], bold)} |")
    pair = cpu["peer_over_worker"]
    lines += ["", "- Each pair, in order: CPU per message (µs), worker / peer: "
                  + "; ".join(f"{fmt(w, 0)} / {fmt(p, 0)}" for w, p in zip(cpu["worker"]["runs"], cpu["peer"]["runs"],
                                                                       strict=False))
              + f". Median of the paired ratios: {fmt(pair['median_of_pairs'], 2)}×.",
              f"- Target: the Node.js peer needs ≥ {c['target_ratio']}× the worker's CPU per message. Ratio of the "
              f"medians: {fmt(pair['of_medians'], 2)}×, {'met' if c['met'] else '**not met**'}."]
    return lines


def digest_section(r):
    """Recording for a digest per event beside an email per event, from the interleaved repeats."""
    c = r["digest_cost"]
    names = [n for n in ("send", "send_state", "digest") if n in c["worker_cpu_us_per_message"]]
    heads = {"send": "email, no table (send)", "send_state": "email, state table on (send_state)",
             "digest": "recorded for a digest (digest)"}
    paired = "send_state" in names
    n = len(c["worker_cpu_us_per_message"]["digest"]["runs"])

    def delta(d, digits, bold=False):
        if d["delta_of_medians"] is None:
            return "–"
        text = f"{d['delta_of_medians']:+,.{digits}f}".replace("-", "−")
        runs = " / ".join("–" if v is None else f"{v:+,.{digits}f}".replace("-", "−") for v in d["paired_deltas"])
        return (f"**{text}**" if bold else text) + (f"; runs {runs}" if len(d["paired_deltas"]) > 1 else "")

    kinds = ", ".join(names)
    lines = [f"Digest recording against an email per event: {n} run{'s' if n > 1 else ''} of each"
             + (f", interleaved ({kinds}, {names[0]}, …)" if len(names) > 1 and n > 1 else "")
             + ", each on its own queue of the same events. digest's route records each event in a fresh state "
             "table for a daily digest that does not close during the run: no email. Per message means per "
             "email in send and send_state, per recorded event in digest. DynamoDB calls: counted by the "
             "relay from the worker's start to the drain (the digest checks' queries included); units: what "
             "DynamoDB would bill on demand, computed by the relay from the items it saw written and read "
             "(qnbench/capacity.py, the in-memory table's rules). Cells: median (min–max).", ""]
    head = "| | " + " | ".join(heads[x] for x in names) + " |" + (" digest − send_state |" if paired else "")
    lines += [head, "| --- |" + " ---: |" * (len(names) + paired)]
    rows = [("messages/s", "messages_per_s", 0, True),
            ("worker CPU per message (µs)", "worker_cpu_us_per_message", 0, True),
            ("… of which user (µs)", "worker_cpu_user_us_per_message", 0, False),
            ("… of which system (kernel) (µs)", "worker_cpu_sys_us_per_message", 0, False),
            ("DynamoDB calls per message", "dynamodb_calls_per_message", 2, True),
            ("DynamoDB write units per message", "dynamodb_write_units_per_message", 2, True),
            ("DynamoDB read units per message", "dynamodb_read_units_per_message", 2, True),
            ("moto (DynamoDB) CPU per message (µs)", "moto_cpu_us_per_message", 0, False),
            ("worker peak RSS (MiB)", "peak_rss_mib", 1, False)]
    for label, key, digits, bold in rows:
        x = c[key]
        line = f"| {label} | " + " | ".join(cell(x[name], digits, bold) for name in names) + " |"
        if paired:
            line += f" {delta(x['digest_minus_send_state'], digits, bold)} |"
        lines.append(line)
    cpu, rate, others = c["worker_cpu_us_per_message"], c["messages_per_s"], c.get("other_processes_cores")

    def each(x, digits):
        return "; ".join(f"{name} {' / '.join(fmt(v, digits) for v in x[name]['runs'])}" for name in names)

    ops = c["digest_calls_by_operation_per_event"]
    lines += ["", f"- Each run, in order: worker CPU per message (µs), {each(cpu, 0)}. Messages/s: {each(rate, 0)}."
              + (f" Other processes on the machine (cores busy): {each(others, 2)}." if others else "")]
    if ops:
        lines.append("- digest's DynamoDB calls per recorded event, by operation (median): "
                     + ", ".join(f"{op} {fmt(side['median'], 3)}" for op, side in ops.items()) + ".")
    uncosted = {name: k for name, k in c["uncosted_calls"].items() if k}
    if uncosted:
        lines.append("- Calls the relay could not cost (left out of the units): "
                     + ", ".join(f"{name} {k:,}" for name, k in uncosted.items()) + ".")
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
    colors = {name: p.color for name, p in PHASES.items() if p.chart}
    labels = {name: p.chart for name, p in PHASES.items() if p.chart}
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
        for k in range(5):
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
    for k in range(6):
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


def write_reports(results, out):
    """results.json, results.md and throughput.svg in `out`; returns the markdown."""
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    md = markdown(results)
    (out / "results.md").write_text(md)
    (out / "throughput.svg").write_text(svg_chart(results))
    return md
