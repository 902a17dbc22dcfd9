#!/usr/bin/env python3
"""Publish the sample Quilt package-revision event to EventBridge (PutEvents, default bus).

Source, detail-type and detail come from events/package-revision.json (the Quilt docs' sample);
--bucket, --handle, --type and --top-hash override fields of the detail. Prints the event id of
each published event on stdout. Needs only Python 3 and boto3 (runs inside the LocalStack
container too); endpoint, region and credentials as for setup_resources.py.
"""

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from setup_resources import add_connection_args, clients, fail  # noqa: E402

DEFAULT_EVENT_FILE = Path(__file__).resolve().parent.parent / "events" / "package-revision.json"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="send-sample-event", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_connection_args(parser)
    parser.add_argument("--event-file", default=os.environ.get("QN_EVENT_FILE") or str(DEFAULT_EVENT_FILE),
                        help="EventBridge event to take source, detail-type and detail from (default %(default)s)")
    parser.add_argument("--bucket", help="override detail.bucket")
    parser.add_argument("--handle", help="override detail.handle (package name)")
    parser.add_argument("--type", dest="type_", metavar="TYPE", help="override detail.type (e.g. created)")
    parser.add_argument("--top-hash", help="override detail.topHash")
    parser.add_argument("--count", type=int, default=1, help="publish the event N times (default 1)")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")

    try:
        event = json.loads(Path(args.event_file).read_text())
    except (OSError, ValueError) as exc:
        fail(f"cannot read {args.event_file}: {exc}")
    detail = dict(event.get("detail") or {})
    for key, value in (("bucket", args.bucket), ("handle", args.handle), ("type", args.type_), ("topHash", args.top_hash)):
        if value is not None:
            detail[key] = value
    entry = {
        "Source": event.get("source", "com.quiltdata"),
        "DetailType": event.get("detail-type", "package-revision"),
        "Detail": json.dumps(detail),
        "EventBusName": "default",
    }

    (events,) = clients(args, "events")
    from botocore.exceptions import BotoCoreError, ClientError

    remaining = args.count
    while remaining > 0:
        batch = min(remaining, 10)  # PutEvents takes at most 10 entries
        remaining -= batch
        try:
            result = events.put_events(Entries=[entry] * batch)
        except (BotoCoreError, ClientError) as exc:
            fail(f"PutEvents to {args.endpoint}: {exc} (is LocalStack running? scripts/start-emulators)")
        if result.get("FailedEntryCount"):
            fail(f"PutEvents rejected entries: {result['Entries']}")
        for item in result["Entries"]:
            print(item["EventId"], flush=True)
    print(f"send-sample-event: published {entry['Source']} / {entry['DetailType']} {entry['Detail']}", file=sys.stderr)


if __name__ == "__main__":
    main()
