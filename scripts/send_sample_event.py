#!/usr/bin/env python3
"""Push a real Quilt package revision to S3, then publish its package-revision event to
EventBridge (PutEvents, default bus), as a Quilt stack would.

The push: `scripts/quilt_packages.py sample` with quilt3 pushes the next revision of the sample
package to the event's bucket and handle (with none yet, two revisions, so the first email
already shows what changed); the event's detail.topHash is then the pushed top hash. With
--no-push, or --top-hash, nothing is pushed and the event goes out as given.

Source, detail-type and detail come from events/package-revision.json (the Quilt docs' sample:
bucket "example", which scripts/setup_resources.py creates, handle "some/package"); --bucket,
--handle, --type and --top-hash override fields of the detail. Prints the event id of each
published event on stdout. Publishing needs only Python 3 and boto3; the push needs quilt3
(scripts/quilt_packages.py re-runs itself with .emulators/quilt-venv, which
scripts/install-emulators makes, when this Python lacks it). Endpoint, region and credentials as
for setup_resources.py.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from setup_resources import add_connection_args, clients, fail

DEFAULT_EVENT_FILE = Path(__file__).resolve().parent.parent / "events" / "package-revision.json"
QUILT_PACKAGES = Path(__file__).resolve().parent / "quilt_packages.py"


def push_sample(endpoint, region, bucket, handle):
    """Push the sample package's next revision with quilt3; returns its top hash."""
    command = [sys.executable, str(QUILT_PACKAGES), "--endpoint-url", endpoint,
               "sample", "--bucket", bucket, "--name", handle]
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, check=True,
                              env={**os.environ, "AWS_DEFAULT_REGION": region})
        pushed = json.loads(done.stdout)
    except (OSError, subprocess.CalledProcessError, ValueError) as exc:
        fail(f"pushing {handle} to s3://{bucket} with quilt3 failed ({exc}); see the messages above. "
             "Is quilt3 installed (scripts/install-emulators) and LocalStack serving S3? "
             "--no-push publishes the event without a package")
    previous = pushed.get("previous_top_hash")
    print(f"send-sample-event: pushed {handle}@{pushed['top_hash'][:10]} to s3://{bucket}"
          f" (previous revision: {previous[:10] if previous else 'none'})", file=sys.stderr)
    return pushed["top_hash"]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="send-sample-event", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_connection_args(parser)
    parser.add_argument("--event-file", default=os.environ.get("QN_EVENT_FILE") or str(DEFAULT_EVENT_FILE),
                        help="EventBridge event to take source, detail-type and detail from (default %(default)s)")
    parser.add_argument("--bucket", help="override detail.bucket")
    parser.add_argument("--handle", help="override detail.handle (package name)")
    parser.add_argument("--type", dest="type_", metavar="TYPE", help="override detail.type (e.g. created)")
    parser.add_argument("--top-hash", help="override detail.topHash (implies --no-push)")
    parser.add_argument("--no-push", action="store_true",
                        help="publish the event without pushing a package revision first")
    parser.add_argument("--count", type=int, default=1, help="publish the event N times (default 1)")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")

    try:
        event = json.loads(Path(args.event_file).read_text())
    except (OSError, ValueError) as exc:
        fail(f"cannot read {args.event_file}: {exc}")
    detail = dict(event.get("detail") or {})
    given = (("bucket", args.bucket), ("handle", args.handle), ("type", args.type_), ("topHash", args.top_hash))
    for key, value in given:
        if value is not None:
            detail[key] = value
    if not args.no_push and args.top_hash is None:
        detail["topHash"] = push_sample(args.endpoint, args.region, detail.get("bucket", "example"),
                                        detail.get("handle", "some/package"))
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
