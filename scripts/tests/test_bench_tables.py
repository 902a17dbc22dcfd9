"""Unit tests of scripts/bench_tables.py's pure parts: LocalStack's request log, the email check,
the per-event figures. Run by scripts/test (python -m unittest discover -s scripts/tests); no
emulator, no boto3."""

import sys
import unittest
from datetime import datetime
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(SCRIPTS))

import bench_tables as bt  # noqa: E402 - the scripts folder, put on the path above

LOG = """\
2026-12-06T11:15:33.100  INFO --- [et.reactor-0] localstack.request.aws     : AWS sqs.ReceiveMessage => 200
2026-12-06T11:15:33.200  INFO --- [et.reactor-1] localstack.request.aws     : AWS s3.ListObjectsV2 => 200
2026-12-06T11:15:33.300  INFO --- [et.reactor-1] localstack.request.aws     : AWS s3.GetObject => 206
2026-12-06T11:15:33.400  WARN --- [  MainThread] localstack.dns.plugins     : Unable to start DNS
2026-12-06T11:15:34.500  INFO --- [et.reactor-0] localstack.request.aws     : AWS s3.GetObject => 200
2026-12-06T11:15:34.600  INFO --- [et.reactor-0] localstack.request.aws     : AWS s3.GetObject => 404 (NoSuchKey)
"""


def at(stamp):
    return datetime.fromisoformat(stamp).timestamp()


# One file's entry as config/templates/package-created/text.hbs renders it (from a real run).
TEXT = """\
What changed since the previous revision:
  Modified:
    ~ data/p00.parquet

  Tables:
{entries}
Top level:
  data/: 1 file, 1793 bytes
"""
ENTRY_V1_V2 = """\
    data/p{i:02d}.parquet (parquet, modified)
      Rows:    120 → 130
      Columns: 4
      + station_id (int64)
      - note (string)
      ~ value: int32 → double
"""
ENTRY_V2_V1 = """\
    data/p{i:02d}.parquet (parquet, modified)
      Rows:    130 → 120
      Columns: 4
      + note (string)
      - station_id (int64)
      ~ value: double → int32
"""


def mail(n, entries, subject_files=None):
    return {"subject": f"New package revision: bench/tables-n{n} @ abcdef0 in s3://b (+0 -0 "
                       f"~{subject_files or n} files)",
            "body": {"text": TEXT.format(entries="".join(entries))}}


class LocalStackLog(unittest.TestCase):
    def test_only_s3_request_lines_count_with_their_time_operation_and_status(self):
        requests = bt.parse_s3_requests(LOG.splitlines())
        self.assertEqual(requests, [
            (at("2026-12-06T11:15:33.200"), "ListObjectsV2", 200),
            (at("2026-12-06T11:15:33.300"), "GetObject", 206),
            (at("2026-12-06T11:15:34.500"), "GetObject", 200),
            (at("2026-12-06T11:15:34.600"), "GetObject", 404),
        ])
        self.assertEqual(bt.count_by_operation(requests), {"GetObject": 3, "ListObjectsV2": 1})

    def test_each_get_counts_for_the_event_sent_last_before_it(self):
        requests = bt.parse_s3_requests(LOG.splitlines())
        sent = [at("2026-12-06T11:15:33.250"), at("2026-12-06T11:15:34.000"), at("2026-12-06T11:15:35.000")]
        self.assertEqual(bt.attribute_requests(requests, sent), [1, 2, 0])
        # Before the first send: nobody's.
        self.assertEqual(bt.attribute_requests(requests, [at("2026-12-06T11:15:34.550")]), [1])


class EmailCheck(unittest.TestCase):
    def test_an_odd_revision_lists_every_file_from_v1_to_v2(self):
        entries = [ENTRY_V1_V2.format(i=i) for i in range(3)]
        self.assertIsNone(bt.check_email(mail(3, entries), 3, 1, tables=True))

    def test_an_even_revision_lists_every_file_from_v2_back_to_v1(self):
        entries = [ENTRY_V2_V1.format(i=i) for i in range(3)]
        self.assertIsNone(bt.check_email(mail(3, entries), 3, 2, tables=True))
        self.assertIn("lacks", bt.check_email(mail(3, entries), 3, 1, tables=True))

    def test_a_missing_table_fails(self):
        entries = [ENTRY_V1_V2.format(i=i) for i in (0, 2)]
        problem = bt.check_email(mail(3, entries), 3, 1, tables=True)
        self.assertIn("data/p01.parquet", problem)

    def test_tables_on_without_a_tables_section_fails(self):
        problem = bt.check_email(mail(1, []) | {"body": {"text": "Modified:\n    ~ data/p00.parquet\n"}}, 1, 1,
                                 tables=True)
        self.assertIn("no Tables section", problem)

    def test_tables_off_with_a_tables_section_fails_and_without_one_passes(self):
        entries = [ENTRY_V1_V2.format(i=0)]
        self.assertIn("tables are off", bt.check_email(mail(1, entries), 1, 1, tables=False))
        self.assertIsNone(bt.check_email(mail(1, []) | {"body": {"text": "Modified:\n"}}, 1, 1, tables=False))

    def test_a_subject_with_another_count_of_modified_files_fails(self):
        entries = [ENTRY_V1_V2.format(i=0)]
        self.assertIn("~1 files", bt.check_email(mail(1, entries, subject_files=2), 1, 1, tables=True))


class Figures(unittest.TestCase):
    def run_of(self, **extra):
        return {"events": 4, "cpu_s": 0.010, "cpu_ticks_s": 0.01, "s3_requests": {"GetObject": 12, "ListObjectsV2": 4},
                "elapsed_ms": [40.0, 20.0, 22.0, 24.0], **extra}

    def test_a_stream_run_keeps_its_first_event_apart(self):
        summary = bt.summarize_run(self.run_of(cpu_after_event=[0.004, 0.006, 0.008, 0.010],
                                               gets_by_event=[6, 2, 2, 2]))
        self.assertEqual(summary["cpu_us_per_event"], 2500)
        self.assertEqual(summary["steady_cpu_us_per_event"], 2000)
        self.assertEqual(summary["gets_per_event"], 3.0)
        self.assertEqual(summary["first_event_gets"], 6)
        self.assertEqual(summary["steady_gets_per_event"], 2.0)
        self.assertEqual(summary["s3_requests_per_event"], 4.0)
        self.assertEqual(summary["wall_ms_per_event"], 26.5)
        self.assertEqual(summary["steady_wall_ms_per_event"], 22.0)

    def test_a_burst_run_has_no_steady_figures(self):
        summary = bt.summarize_run(self.run_of())
        self.assertNotIn("steady_cpu_us_per_event", summary)
        self.assertEqual(summary["cpu_us_per_event"], 2500)

    def test_tables_add_the_median_of_the_pairs_differences(self):
        on = [{"cpu_us_per_event": v} for v in (5000, 7000, 6000)]
        off = [{"cpu_us_per_event": v} for v in (3000, 2000, 2500)]
        row = bt.compare(on, off)
        self.assertEqual(row["cpu_us_per_event"]["on"], 6000)
        self.assertEqual(row["cpu_us_per_event"]["off"], 2500)
        self.assertEqual(row["cpu_us_per_event"]["added_runs"], [2000, 5000, 3500])
        self.assertEqual(row["cpu_us_per_event"]["added"], 3500)
        self.assertNotIn("gets_per_event", row)

    def test_the_table_shows_the_steady_state_of_a_stream_and_the_whole_burst(self):
        cpu = {"on": 6000, "off": 2500, "added": 3500, "added_runs": [3400, 3600]}
        gets = {"on": 23, "off": 3, "added": 20}
        results = {"table": [
            {"binary": "after", "mode": "stream", "files": 20, "steady_cpu_us_per_event": cpu,
             "cpu_us_per_event": {"on": 1, "off": 1, "added": 0, "added_runs": [0]},
             "steady_gets_per_event": gets},
            {"binary": "after", "mode": "burst", "files": 20, "cpu_us_per_event": cpu},
        ]}
        lines = bt.markdown(results).splitlines()
        self.assertEqual(lines[2], "| after | stream | 20 | 6,000 µs | 2,500 µs | **+3,500 µs** (+3,400 / +3,600) "
                                   "| 23.0 | 3.0 | +20.0 | 175 µs | – | – | – |")
        self.assertTrue(lines[3].startswith("| after | burst | 20 | 6,000 µs | 2,500 µs | **+3,500 µs** "), lines[3])
        self.assertTrue(lines[3].endswith("| – | – | – | – | – | – | – |"), lines[3])


if __name__ == "__main__":
    unittest.main()
