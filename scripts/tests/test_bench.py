"""Unit tests of the bench's pure parts: its statistics, phase checks and report (scripts/qnbench).

Run by scripts/test (python -m unittest discover -s scripts/tests); no emulator, no boto3."""

import copy
import json
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(SCRIPTS))

from qnbench import capacity, peer, phases, report, stats  # noqa: E402 - the scripts folder, put on the path above

PUBLISHED = SCRIPTS.parent / "docs/perf"


def published():
    return json.loads((PUBLISHED / "results.json").read_text())


def run(cpu, rate, **extra):
    """A send run's summary as repeat_summary gives it."""
    return {"phase": "send", "messages_per_s": rate, "worker_cpu_us_per_message": cpu,
            "worker_cpu_user_us_per_message": cpu * 0.8, "worker_cpu_sys_us_per_message": cpu * 0.2,
            "peak_rss_kb": 20480, "machine_busy_cores": 1.5, "localstack_cpu_s_per_1000": 0.4,
            "ses_emulator_cpu_s_per_1000": 0.3, **extra}


class Statistics(unittest.TestCase):
    def test_percentiles_are_nearest_rank(self):
        values = list(range(1, 11))
        self.assertEqual(stats.percentile(values, 50), 5)
        self.assertEqual(stats.percentile(values, 95), 10)
        self.assertEqual(stats.percentile(values, 1), 1)
        self.assertEqual(stats.percentile([3, 1, 2], 50), 2)
        self.assertIsNone(stats.percentile([], 50))

    def test_a_latency_summary_rounds_to_milliseconds_and_counts(self):
        summary = stats.latency_summary([0.0004, 1.23456, 2.0, 0.5])
        self.assertEqual(summary, {"count": 4, "min_s": 0.0, "p50_s": 0.5, "p95_s": 2.0, "p99_s": 2.0,
                                   "max_s": 2.0})
        self.assertIsNone(stats.latency_summary([]))

    def test_settled_messages_are_counted_per_tenth_of_a_second_from_the_start(self):
        self.assertEqual(stats.per_tenth([100.0, 100.05, 100.25, 99.9], 100.0), [3, 0, 1])
        self.assertEqual(stats.per_tenth([], 100.0), [])

    def test_an_emails_size_is_its_subject_html_and_text(self):
        self.assertEqual(stats.email_chars({"subject": "abc", "body": {"html": "<p>x</p>", "text": "x"}}), 12)
        self.assertEqual(stats.email_chars({"subject": "abc"}), 3)

    def test_the_median_of_an_even_count_is_the_mean_of_the_middle_two(self):
        self.assertEqual(stats.median([3, 1, 2]), 2)
        self.assertEqual(stats.median([4, 1, 3, 2]), 2.5)

    def test_the_run_shown_is_the_median_cpu_one_with_the_first_runs_trickle(self):
        first = {"worker_cpu_us_per_message": 260, "trickle": {"events": 200}}
        runs = [first, {"worker_cpu_us_per_message": 202}, {"worker_cpu_us_per_message": 188}]
        chosen = stats.median_run(runs)
        self.assertEqual(chosen["worker_cpu_us_per_message"], 202)
        self.assertEqual(chosen["trickle"], {"events": 200})
        self.assertNotIn("trickle", runs[1], "the runs themselves are left as they were")

    def test_the_emulator_bound_is_the_tightest_of_the_cores_and_each_emulator(self):
        r = {"send_repeats": [run(200, 1500)], "machine": {"nproc": 2}}
        bound = stats.emulator_bound(r)
        # min(2 / (0.0004 + 0.0003), 1 / 0.0004, 1 / 0.0003): LocalStack's one core binds.
        self.assertEqual(bound["messages_per_s"], 2500.0)
        r["machine"]["nproc"] = 1
        self.assertEqual(stats.emulator_bound(r)["messages_per_s"], round(1 / 0.0007, 1))

    def test_the_state_tables_cost_is_the_difference_of_medians_and_of_each_pair_of_runs(self):
        r = {"send_repeats": [run(200, 1500), run(220, 1400), run(210, 1450)],
             "send_state_repeats": [run(900, 50, moto_cpu_s_per_1000=15.0, dynamodb_calls_per_message=2.0),
                                    run(950, 48, moto_cpu_s_per_1000=16.0, dynamodb_calls_per_message=2.0),
                                    run(920, 52, moto_cpu_s_per_1000=15.5, dynamodb_calls_per_message=2.0)],
             "send_paced_repeats": [run(500, 50), run(520, 48), run(510, 52)]}
        cost = stats.state_cost(r)
        cpu = cost["worker_cpu_us_per_message"]
        self.assertEqual(cpu["off"]["median"], 210)
        self.assertEqual(cpu["on"]["median"], 920)
        self.assertEqual(cpu["on_minus_off"]["delta_of_medians"], 710)
        self.assertEqual(cpu["on_minus_off"]["paired_deltas"], [700, 730, 710])
        self.assertEqual(cpu["on_minus_paced"]["delta_of_medians"], 410)
        self.assertEqual(cost["dynamodb_calls_per_message"]["median"], 2.0)
        self.assertEqual(cost["moto_cpu_us_per_message"]["median"], 15500)
        self.assertFalse(cost["met_vs_off"])
        self.assertFalse(cost["met_vs_paced"])

    def test_the_peers_ratio_is_peer_over_worker_of_the_medians_and_of_each_pair_of_runs(self):
        r = {"send_repeats": [run(200, 1500), run(150, 1600), run(180, 1400)],
             "peer_repeats": [run(1800, 700), run(1650, 750), run(2000, 720)]}
        ratio = stats.peer_ratio(r)
        cpu = ratio["cpu_us_per_message"]
        self.assertEqual(cpu["worker"]["median"], 180)
        self.assertEqual(cpu["peer"]["median"], 1800)
        self.assertEqual(cpu["peer_over_worker"]["of_medians"], 10.0)
        self.assertEqual(cpu["peer_over_worker"]["paired"], [9.0, 11.0, 11.11])
        self.assertEqual(cpu["peer_over_worker"]["median_of_pairs"], 11.0)
        self.assertEqual(ratio["messages_per_s"]["peer_over_worker"]["of_medians"], 0.48)
        self.assertEqual(ratio["peak_rss_mib"]["peer"]["median"], 20.0)
        self.assertTrue(ratio["met"], "10× is the target, and it is met at 10× exactly")

    def test_a_peer_under_ten_times_the_workers_cpu_misses_its_target(self):
        r = {"send_repeats": [run(200, 1500)], "peer_repeats": [run(1960, 700)]}
        ratio = stats.peer_ratio(r)
        self.assertEqual(ratio["cpu_us_per_message"]["peer_over_worker"]["of_medians"], 9.8)
        self.assertFalse(ratio["met"])
        target = {t["target"]: t for t in stats.targets({"peer_ratio": ratio})}[
            "Node.js peer CPU per message ÷ the worker's (peer ÷ send, medians)"]
        self.assertEqual((target["value"], target["limit"], target["met"]), (9.8, "≥ 10", False))

    def test_a_run_without_a_worker_cpu_reading_has_no_ratio(self):
        r = {"send_repeats": [run(0, 1500), run(200, 1500)], "peer_repeats": [run(1800, 700), run(2000, 700)]}
        self.assertEqual(stats.peer_ratio(r)["cpu_us_per_message"]["peer_over_worker"]["paired"], [None, 10.0])

    def test_targets_say_which_are_met(self):
        r = {"send": {"peak_rss_kb": 30 * 1024}, "send_repeats": [run(140, 1500)],
             "filtered": {"messages_per_s": 2000}, "loop": {"messages_per_s": 1600},
             "startup": {"idle_rss_kb_max": 21 * 1024, "first_receive_ms_max": 31},
             "binary": {"bytes": 18 * 1024 * 1024, "stripped": True}}
        met = {t["target"]: t["met"] for t in stats.targets(r)}
        self.assertTrue(met["worker CPU per message (send runs, median)"])
        self.assertTrue(met["peak RSS during the run"])
        self.assertFalse(met["sending throughput (median) vs the worker with sending disabled (receive + delete)"])
        self.assertFalse(met["idle RSS"])
        self.assertTrue(met["first ReceiveMessage after start (max of runs)"])
        self.assertTrue(met["release binary, stripped"])
        self.assertTrue(met["receive + delete: the worker (filtered) vs the plain loop"])


class Phases(unittest.TestCase):
    def test_the_default_phases_leave_out_those_that_need_moto(self):
        self.assertEqual(phases.DEFAULT, "startup,send,peer,filtered,loop,loop_send")

    def test_the_peer_is_a_sending_phase_so_its_runs_interleave_with_sends(self):
        self.assertTrue(phases.PHASES["peer"].sending)
        self.assertFalse(phases.PHASES["peer"].moto)
        self.assertIsNone(phases.check(["send", "peer"]))

    def test_digest_is_a_sending_phase_on_moto_left_out_of_the_defaults(self):
        digest = phases.PHASES["digest"]
        self.assertTrue(digest.sending)
        self.assertTrue(digest.moto)
        self.assertFalse(digest.default)
        self.assertIsNone(phases.check(["send", "send_state", "digest"]))
        self.assertIsNone(phases.check(["digest"]))

    def test_unknown_phases_and_a_paced_run_without_its_pace_are_refused(self):
        self.assertIsNone(phases.check(["send", "send_state", "send_paced"]))
        self.assertIn("unknown nope", phases.check(["send", "nope"]))
        self.assertEqual(phases.check(["send", "send_paced"]),
                         "send_paced runs at send_state's pace, so it needs send_state too")


def put(item, **extra):
    return json.dumps({"TableName": "t", "Item": item, "ReturnValues": "ALL_OLD",
                       "ReturnValuesOnConditionCheckFailure": "ALL_OLD", **extra}).encode()


def update(key, expression, names, values):
    return json.dumps({"TableName": "t", "Key": key, "UpdateExpression": expression,
                       "ExpressionAttributeNames": names, "ExpressionAttributeValues": values,
                       "ReturnValues": "ALL_OLD", "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}).encode()


def key(pk, sk):
    return {"pk": {"S": pk}, "sk": {"S": sk}}


REFUSED = "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException"
TARGET = "DynamoDB_20120810."


class Capacity(unittest.TestCase):
    """The units the relay works out, by the in-memory table's rules (src/adapters/memory/table.rs)."""

    def test_an_items_size_is_its_names_and_values_a_number_one_byte_per_two_digits_and_one(self):
        self.assertEqual(capacity.item_size({"ab": {"S": "héllo"}}), 2 + 6)
        self.assertEqual(capacity.item_size({"n": {"N": "1765000000"}}), 1 + 5 + 1)
        self.assertEqual(capacity.item_size({"n": {"N": "-123"}}), 1 + 2 + 1)
        self.assertEqual(capacity.item_size({"b": {"BOOL": True}}), 2)
        self.assertEqual(capacity.item_size(None), 0)

    def test_a_write_costs_a_unit_per_started_kib_of_the_larger_item_and_a_read_per_started_4_kib(self):
        small, big = {"x": {"S": "a"}}, {"x": {"S": "a" * 1500}}
        self.assertEqual(capacity.write_units(None, small), 1)
        self.assertEqual(capacity.write_units(big, small), 2)
        self.assertEqual(capacity.write_units(None, None), 1)
        self.assertEqual(capacity.read_units(0), 1)
        self.assertEqual(capacity.read_units(4097), 2)

    def test_a_refused_conditional_put_is_billed_on_the_item_that_refused_it(self):
        c = capacity.Capacity()
        old = {**key("send#e1", "r"), "entry": {"S": "a" * 2000}}
        c.account(TARGET + "PutItem", put(key("send#e1", "r")), 400,
                  json.dumps({"__type": REFUSED, "Item": old}).encode())
        self.assertEqual(c.totals(), {"calls": 1, "by_operation": {"PutItem": 1}, "write_units": 2,
                                      "read_units": 0, "uncosted_calls": 0})

    def test_an_update_is_billed_on_the_larger_of_the_item_before_and_the_item_it_makes(self):
        c = capacity.Capacity()
        old = {**key("send#e1", "r"), "status": {"S": "recording"}}
        c.account(TARGET + "UpdateItem",
                  update(key("send#e1", "r"), "SET #n0 = :v0 REMOVE #n1", {"#n0": "status", "#n1": "owner"},
                         {":v0": {"S": "x" * 1100}}), 200, json.dumps({"Attributes": old}).encode())
        self.assertEqual(c.write, 2)
        self.assertEqual(capacity.updated(key("a", "b"), None, {"UpdateExpression": "SET #n0 = :v0",
                                                                 "ExpressionAttributeNames": {"#n0": "s"},
                                                                 "ExpressionAttributeValues": {":v0": {"N": "1"}}}),
                         {**key("a", "b"), "s": {"N": "1"}})
        with self.assertRaises(ValueError):
            capacity.updated(key("a", "b"), None, {"UpdateExpression": "ADD #n0 :v0"})

    def test_reads_cost_per_item_read_and_a_missing_item_costs_one_unit(self):
        c = capacity.Capacity()
        c.account(TARGET + "GetItem", b'{"TableName": "t"}', 200, b"{}")
        big = {"x": {"S": "a" * 3000}}
        c.account(TARGET + "Query", b'{"TableName": "t"}', 200, json.dumps({"Items": [big, big]}).encode())
        c.account(TARGET + "BatchGetItem", b"{}", 200, json.dumps({"Responses": {"t": [big, big]}}).encode())
        self.assertEqual((c.read, c.write), (1 + 2 + 2, 0))
        self.assertEqual(c.calls, {"GetItem": 1, "Query": 1, "BatchGetItem": 1})

    def test_a_transaction_costs_twice_per_item_on_the_items_the_relay_saw_written(self):
        c = capacity.Capacity()
        c.account(TARGET + "PutItem", put({**key("send#e1", "r"), "entry": {"S": "a" * 1500}}), 200, b"{}")
        items = [{"Update": {"TableName": "t", "Key": key("send#e1", "r"), "UpdateExpression": "SET #n0 = :v0",
                             "ExpressionAttributeNames": {"#n0": "status"},
                             "ExpressionAttributeValues": {":v0": {"S": "sent"}}}},
                 {"Update": {"TableName": "t", "Key": key("send#e2", "r"), "UpdateExpression": "SET #n0 = :v0",
                             "ExpressionAttributeNames": {"#n0": "status"},
                             "ExpressionAttributeValues": {":v0": {"S": "claimed"}}}}]
        body = json.dumps({"TransactItems": items}).encode()
        c.account(TARGET + "TransactWriteItems", body, 200, b"{}")
        self.assertEqual(c.write, 2 + 2 * 2 + 2 * 1)
        c.account(TARGET + "TransactWriteItems", body, 400,
                  b'{"__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException"}')
        self.assertEqual(c.write, 8 + 2 * 2 + 2 * 1, "cancelled: each item billed on the item as it was")

    def test_failed_and_unreadable_calls_are_counted_but_not_costed_and_the_control_plane_is_free(self):
        c = capacity.Capacity()
        c.account(TARGET + "PutItem", put(key("a", "b")), 400,
                  b'{"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"}')
        c.account(TARGET + "GetItem", b"not json", 200, b"{}")
        c.account(TARGET + "DescribeTable", b'{"TableName": "t"}', 200, b"{}")
        self.assertEqual(c.totals()["uncosted_calls"], 2)
        self.assertEqual(c.totals()["calls"], 3)
        self.assertEqual((c.write, c.read), (0, 0))

    def test_recording_an_event_for_a_digest_costs_four_write_units_and_one_read_as_in_the_pipeline_bench(self):
        """The worker's five calls for one recorded event (src/worker/state/windows/record.rs), as
        moto answers them for the second event of a window."""
        c = capacity.Capacity()
        route, window = "package-digest", "window#package-digest#1765000000"
        marker = {**key("send#e2", route), "status": {"S": "recording"}, "event_id": {"S": "e2"},
                  "route": {"S": route}, "window_start": {"N": "1765000000"}, "window_end": {"N": "1765086400"},
                  "recorded_at": {"N": "1765040000"}, "expires_at": {"N": "1766382400"}}
        pending = {**key("pending#" + route, "00000000001765000000-00000000001765086400"), "route": {"S": route},
                   "window_start": {"N": "1765000000"}, "window_end": {"N": "1765086400"},
                   "expires_at": {"N": "1766382400"}}
        entry = {**key(window, "e#e2"), "entry": {"S": json.dumps({"handle": "bench/x/000001", "top_hash": "ab" * 32})},
                 "event_id": {"S": "e2"}, "expires_at": {"N": "1766382400"}}
        c.account(TARGET + "PutItem", put(marker, ConditionExpression="attribute_not_exists(#n0)"), 200, b"{}")
        c.account(TARGET + "UpdateItem",
                  update({"pk": pending["pk"], "sk": pending["sk"]}, "SET #n0 = :v0, #n1 = :v1, #n2 = :v2, #n3 = :v3",
                         {"#n0": "route", "#n1": "window_start", "#n2": "window_end", "#n3": "expires_at"},
                         {":v0": pending["route"], ":v1": pending["window_start"], ":v2": pending["window_end"],
                          ":v3": pending["expires_at"]}),
                  200, json.dumps({"Attributes": pending}).encode())
        c.account(TARGET + "PutItem", put(entry), 200, b"{}")
        c.account(TARGET + "GetItem", json.dumps({"TableName": "t", "Key": key(window, "window")}).encode(), 200,
                  b"{}")
        c.account(TARGET + "UpdateItem", update(key("send#e2", route), "SET #n0 = :v0", {"#n0": "status"},
                                                {":v0": {"S": "recorded"}}),
                  200, json.dumps({"Attributes": marker}).encode())
        self.assertEqual(c.totals(), {"calls": 5, "by_operation": {"GetItem": 1, "PutItem": 2, "UpdateItem": 2},
                                      "write_units": 4, "read_units": 1, "uncosted_calls": 0})

    def test_per_message_is_the_difference_of_two_totals_over_the_messages(self):
        before = {"calls": 10, "by_operation": {"PutItem": 10}, "write_units": 10, "read_units": 0,
                  "uncosted_calls": 0}
        after = {"calls": 60, "by_operation": {"PutItem": 30, "GetItem": 10, "UpdateItem": 20}, "write_units": 50,
                 "read_units": 10, "uncosted_calls": 1}
        d = capacity.per_message(before, after, 10)
        self.assertEqual((d["calls_per_message"], d["write_units_per_message"], d["read_units_per_message"]),
                         (5.0, 4.0, 1.0))
        self.assertEqual(d["by_operation_per_message"], {"PutItem": 2.0, "GetItem": 1.0, "UpdateItem": 2.0})
        self.assertEqual(d["uncosted_calls"], 1)
        self.assertIsNone(capacity.per_message(None, after, 10))


def scanned(route, recorded, window="window#package-digest#1765000000", status="recorded"):
    """A Scan's items: each event's item in `window` and its once-marker."""
    items = []
    for event_id in recorded:
        items.append(key(window, f"e#{event_id}"))
        items.append({**key(f"send#{event_id}", route), "status": {"S": status}})
    return items


class DigestCheck(unittest.TestCase):
    route = "package-digest"

    def test_every_event_recorded_in_one_window_passes(self):
        items = [*scanned(self.route, ["a", "b"]), key("pending#package-digest", "x"), key("digest-routes", "p")]
        check = stats.recorded_check(items, {"a", "b"}, self.route)
        self.assertTrue(check["ok"])
        self.assertEqual((check["items"], check["markers_recorded"], check["windows"]),
                         (2, 2, ["window#package-digest#1765000000"]))
        self.assertNotIn("problem", check)

    def test_an_event_without_its_item_fails(self):
        items = [*scanned(self.route, ["a"]), {**key("send#b", self.route), "status": {"S": "recorded"}}]
        check = stats.recorded_check(items, {"a", "b"}, self.route)
        self.assertFalse(check["ok"])
        self.assertEqual(check["problem"], "1 of 2 events have no item in a window, e.g. b")

    def test_a_marker_still_recording_or_withdrawn_fails(self):
        items = [*scanned(self.route, ["a"]), *scanned(self.route, ["b"], status="recording")]
        check = stats.recorded_check(items, {"a", "b"}, self.route)
        self.assertFalse(check["ok"])
        self.assertIn("1 of 2 once-markers do not say recorded, e.g. b: recording", check["problem"])

    def test_events_in_two_windows_fail_the_run_whose_window_must_not_close(self):
        items = [*scanned(self.route, ["a"]), *scanned(self.route, ["b"], window="window#package-digest#1765086400")]
        check = stats.recorded_check(items, {"a", "b"}, self.route)
        self.assertFalse(check["ok"])
        self.assertIn("in 2 windows, not one", check["problem"])

    def test_another_routes_items_do_not_count_and_no_events_is_no_pass(self):
        check = stats.recorded_check(scanned("other", ["a"], window="window#other#1"), {"a"}, self.route)
        self.assertFalse(check["ok"])
        self.assertFalse(stats.recorded_check([], set(), self.route)["ok"])


class PeerProgress(unittest.TestCase):
    def test_a_deleted_line_gives_the_total_and_the_time_in_seconds(self):
        self.assertEqual(peer.parse_deleted("deleted 40 1765000000123\n"), (40, 1765000000.123))
        self.assertIsNone(peer.parse_deleted("bench-peer: ready, 4 consumers of 10 on http://q"))
        self.assertIsNone(peer.parse_deleted("deleted forty 1765000000123"))
        self.assertIsNone(peer.parse_deleted("deleted 40"))

    def test_each_message_settles_at_the_time_of_the_line_that_first_counts_it(self):
        progress = [(10, 100.0), (10, 100.1), (25, 100.2), (30, 100.5)]
        self.assertEqual(peer.settle_times(progress), [100.0] * 10 + [100.2] * 15 + [100.5] * 5)
        self.assertEqual(peer.settle_times([]), [])


def with_peer(r, cpus):
    """The published run with peer runs of the given node CPU per message, paired with the first
    len(cpus) send runs."""
    r["send_repeats"] = r["send_repeats"][: len(cpus)]
    r["peer"] = copy.deepcopy(r["send"])
    r["peer"]["worker_cpu_us_per_message"] = cpus[0]
    r["peer_repeats"] = [dict(stats.repeat_summary(r["send"]), phase="peer", worker_cpu_us_per_message=cpu)
                         for cpu in cpus]
    r["settings"]["peer"] = {"node": "v20.20.2", "consumers": 4, "batch": 10,
                             "packages": {"sqs-consumer": "14.2.8", "@aws-sdk/client-sqs": "3.1178.0",
                                          "@aws-sdk/client-sesv2": "3.1178.0", "handlebars": "4.7.10"}}
    r["peer_ratio"] = stats.peer_ratio(r)
    r["targets"] = stats.targets(r)
    return r


def with_digest(r, digest_cpus, state_cpus=(335, 340)):
    """The published run with send_state and digest runs (2 of each, paired with send's first two),
    with the DynamoDB calls and units the relay reports."""
    r["send_repeats"] = r["send_repeats"][:2]
    base = stats.repeat_summary(r["send"])
    units = {"moto_cpu_s_per_1000": 12.0}
    r["send_state_repeats"] = [dict(base, **units, phase="send_state", worker_cpu_us_per_message=cpu,
                                    messages_per_s=80, dynamodb_calls_per_message=0.1,
                                    dynamodb_write_units_per_message=4.0, dynamodb_read_units_per_message=0.0,
                                    dynamodb_by_operation_per_message={"TransactWriteItems": 0.1},
                                    dynamodb_uncosted_calls=0) for cpu in state_cpus]
    r["digest_repeats"] = [dict(base, moto_cpu_s_per_1000=40.0, phase="digest", worker_cpu_us_per_message=cpu,
                                messages_per_s=25, dynamodb_calls_per_message=5.004,
                                dynamodb_write_units_per_message=4.0, dynamodb_read_units_per_message=1.004,
                                dynamodb_by_operation_per_message={"PutItem": 2.0, "UpdateItem": 2.0,
                                                                   "GetItem": 1.0, "Query": 0.004},
                                dynamodb_uncosted_calls=0) for cpu in digest_cpus]
    r["digest"] = dict(copy.deepcopy(r["send"]), phase="digest", outcomes={"recorded": 10000},
                       digest={"route": "package-digest", "at_utc": "23:10"},
                       recorded={"expected": 10000, "items": 10000, "markers_recorded": 10000,
                                 "windows": ["window#package-digest#1765000000"], "ok": True})
    r["digest"]["machine"]["emulators"]["moto"] = {"cpu_s": 400.0, "cpu_s_per_1000": 40.0}
    r["digest_cost"] = stats.digest_cost(r)
    r["targets"] = stats.targets(r)
    return r


class Report(unittest.TestCase):
    def test_the_published_runs_report_is_rebuilt_from_its_results_unchanged(self):
        r = published()
        r["targets"] = stats.targets(r)
        self.assertEqual(report.markdown(r), (PUBLISHED / "results.md").read_text())
        self.assertEqual(report.svg_chart(r), (PUBLISHED / "throughput.svg").read_text())

    def test_the_table_has_a_column_per_phase_run_in_the_registrys_order(self):
        r = published()
        r["targets"] = stats.targets(r)
        del r["loop"]
        header = report.markdown(r).splitlines()[2]
        self.assertEqual(header, "| | worker, sending (SES emulator) | worker, sending disabled (filtered) | "
                                 "plain receive/SendEmail/delete loop |")

    def test_the_state_section_shows_on_against_off_and_at_the_same_pace(self):
        r = published()
        for kind in ("send_state", "send_paced"):
            r[kind] = copy.deepcopy(r["send"])
            r[kind]["machine"]["emulators"]["moto"] = {"cpu_s": 1.0, "cpu_s_per_1000": 15.0}
            r[f"{kind}_repeats"] = [stats.repeat_summary(r[kind])] * len(r["send_repeats"])
        r["state_cost"] = stats.state_cost(r)
        r["targets"] = stats.targets(r)
        md = report.markdown(r)
        self.assertIn("State table on against off: 3 runs of each, interleaved (send, send_state, send_paced", md)
        self.assertIn("| worker CPU per message (µs) |", md)
        self.assertIn("at the same pace (send_state − send_paced, medians)", md)
        self.assertIn("worker, sending, state table on (moto DynamoDB)", md.splitlines()[2])

    def test_the_peer_section_shows_the_ratio_of_the_medians_and_of_each_pair(self):
        r = with_peer(published(), [1800, 1650, 2000])
        md = report.markdown(r)
        self.assertIn("Node.js peer, sending (SES emulator)", md.splitlines()[2])
        self.assertIn("The Node.js peer against the worker: 3 runs of each, interleaved (send, peer, send", md)
        worker = [x["worker_cpu_us_per_message"] for x in r["send_repeats"]]
        line = next(x for x in md.splitlines() if x.startswith("| CPU per message (µs) |"))
        ratio = r["peer_ratio"]["cpu_us_per_message"]["peer_over_worker"]
        self.assertIn(f"**{ratio['of_medians']:.2f}×**; runs "
                      + " / ".join(f"{p / w:.2f}" for w, p in zip(worker, [1800, 1650, 2000], strict=True)), line)
        self.assertIn("- Each pair, in order: CPU per message (µs), worker / peer: "
                      f"{worker[0]:,.0f} / 1,800; {worker[1]:,.0f} / 1,650; {worker[2]:,.0f} / 2,000.", md)
        self.assertIn("Node.js peer CPU per message ÷ the worker's (peer ÷ send, medians)", md)
        self.assertIn("sqs-consumer 14.2.8, @aws-sdk/client-sqs 3.1178.0", md)
        self.assertIn("in its column the worker rows are the node process's. Emails in the SES store: 10,200 of "
                      "10,200, 0 duplicates.", md)
        self.assertIn("| … of which user (µs) | – | – | – |", md, "the published runs have no user/sys split")

    def test_the_peers_emails_are_sized_beside_the_workers(self):
        r = with_peer(published(), [1800])
        r["send"]["emails"]["chars_median"] = 5358
        r["peer"]["emails"]["chars_median"] = 5358
        self.assertIn("0 duplicates; median size (subject + HTML + text) 5,358 characters, the worker's 5,358.",
                      report.markdown(r))
        r["peer"]["emails"]["chars_median"] = 4347
        self.assertIn("4,347 characters, the worker's 5,358 (**not the same emails**: the peer's CPU is not for the "
                      "worker's work).", report.markdown(r))

    def test_a_single_pair_is_not_called_interleaved(self):
        r = with_peer(published(), [1800])
        self.assertIn("The Node.js peer against the worker: one run of each (send, then peer)", report.markdown(r))

    def test_the_digest_section_shows_cpu_calls_and_units_per_recorded_event_beside_per_email(self):
        r = with_digest(published(), [1400, 1300])
        cost = r["digest_cost"]
        self.assertEqual(cost["worker_cpu_us_per_message"]["digest"]["median"], 1350)
        self.assertEqual(cost["worker_cpu_us_per_message"]["digest_minus_send_state"],
                         {"delta_of_medians": 1012.5, "paired_deltas": [1065, 960]})
        self.assertEqual(cost["digest_calls_by_operation_per_event"]["PutItem"]["median"], 2.0)
        md = report.markdown(r)
        self.assertIn("worker, recording for a digest, state table on (moto DynamoDB)", md.splitlines()[2])
        self.assertIn("Digest recording against an email per event: 2 runs of each, interleaved (send, send_state, "
                      "digest, send, …)", md)
        self.assertIn("| | email, no table (send) | email, state table on (send_state) | recorded for a digest "
                      "(digest) | digest − send_state |", md)
        section = md[md.index("Digest recording against"):]
        line = next(x for x in section.splitlines() if x.startswith("| worker CPU per message (µs) | "))
        self.assertTrue(line.endswith("| **338** (335–340) | **1,350** (1,300–1,400) | **+1,012**; runs +1,065 / "
                                      "+960 |"), line)
        self.assertIn("| DynamoDB write units per message | – | **4.00** (4.00–4.00) | **4.00** (4.00–4.00) | "
                      "**+0.00**; runs +0.00 / +0.00 |", md)
        self.assertIn("| DynamoDB read units per message | – | **0.00** (0.00–0.00) | **1.00** (1.00–1.00) |", md)
        # The published send runs predate the per-run reading of other processes: "–".
        self.assertIn("Messages/s: send 1,598 / 1,273; send_state 80 / 80; digest 25 / 25. Other processes on the "
                      "machine (cores busy): send – / –; send_state 0.00 / 0.00; digest 0.00 / 0.00.", md)
        self.assertIn("- digest's DynamoDB calls per recorded event, by operation (median): GetItem 1.000, "
                      "PutItem 2.000, Query 0.004, UpdateItem 2.000.", md)
        self.assertIn("Recorded in the table (a Scan after the run): 10,000 of 10,000 events' items and 10,000 "
                      "once-markers `recorded`, in 1 window.", md)
        self.assertNotIn("could not cost", md)

    def test_a_digest_run_alone_has_no_difference_column(self):
        r = published()
        r = with_digest(r, [1400])
        del r["send_state_repeats"]
        r["digest_repeats"] = r["digest_repeats"][:1]
        r["digest_cost"] = stats.digest_cost(r)
        md = report.markdown(r)
        self.assertIn("Digest recording against an email per event: 1 run of each, each on its own queue", md)
        self.assertIn("| | email, no table (send) | recorded for a digest (digest) |\n", md)

    def test_the_chart_has_a_line_for_the_peer(self):
        r = with_peer(published(), [1800, 1650, 2000])
        root = ET.fromstring(report.svg_chart(r))
        lines = root.findall("{http://www.w3.org/2000/svg}polyline")
        self.assertEqual(len(lines), 7)
        self.assertIn(phases.PHASES["peer"].color, [x.get("stroke") for x in lines])

    def test_the_chart_is_svg_with_a_line_per_phase_and_the_workers_rss_and_cpu(self):
        r = published()
        root = ET.fromstring(report.svg_chart(r))
        self.assertEqual(root.tag, "{http://www.w3.org/2000/svg}svg")
        lines = root.findall("{http://www.w3.org/2000/svg}polyline")
        # send, filtered, loop, loop_send; then RSS and CPU.
        self.assertEqual(len(lines), 6)

    def test_write_reports_writes_the_three_files(self):
        r = published()
        r["targets"] = stats.targets(r)
        with tempfile.TemporaryDirectory() as out:
            md = report.write_reports(r, Path(out))
            self.assertEqual(sorted(p.name for p in Path(out).iterdir()),
                             ["results.json", "results.md", "throughput.svg"])
            self.assertEqual((Path(out) / "results.md").read_text(), md)
            self.assertEqual(json.loads((Path(out) / "results.json").read_text())["run_id"], r["run_id"])


if __name__ == "__main__":
    unittest.main()
