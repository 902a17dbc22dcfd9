#!/usr/bin/env python3
"""Create (or update, or delete) quilt-notify's AWS resources on LocalStack.

The one source of truth for the local resources: the host-mode test harness (scripts/test), the
no-Docker runner (scripts/run-local) and the docker compose LocalStack init hook all run this file.
It needs only Python 3 and boto3, so it also runs inside the LocalStack container.

Resources, all idempotent (a re-run updates them in place):
  * the dead-letter queue <queue>-dlq (14 days retention);
  * the queue <queue> with a visibility timeout and RedrivePolicy {deadLetterTargetArn, maxReceiveCount},
    and a queue policy that lets only this rule send (events.amazonaws.com, aws:SourceArn = rule ARN);
  * the EventBridge rule <queue>-rule on the default bus, with the pattern of config/rule-pattern.json
    (the Quilt docs' pattern; --bucket / --prefix replace detail.bucket and detail.handle's prefix);
  * the rule's target: the queue (target id "quilt-notify-queue");
  * the S3 bucket the sample package is pushed to (--sample-bucket; default: the pattern file's
    bucket, "example", whatever --bucket says), where scripts/send-sample-event pushes real
    quilt3 revisions and the worker reads their manifests. --delete leaves it (and its packages).
  * with --state-table: the worker's shared state table on a DynamoDB endpoint (moto's,
    --state-endpoint), with the key schema and TTL `quilt-notify state create` gives it. For the
    compose init hook, whose container has Python but not the worker binary; scripts/run-local
    and the tests run `quilt-notify state create` itself. --delete leaves it.

Progress goes to stderr; stdout carries only the result (JSON with --json).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

DEFAULT_ENDPOINT = "http://127.0.0.1:4566"
DEFAULT_PATTERN_FILE = Path(__file__).resolve().parent.parent / "config" / "rule-pattern.json"
TARGET_ID = "quilt-notify-queue"
DLQ_RETENTION_SECONDS = 14 * 24 * 3600


def log(msg):
    print(f"setup_resources: {msg}", file=sys.stderr, flush=True)


def fail(msg):
    log(f"error: {msg}")
    sys.exit(1)


def env_int(name, default):
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        fail(f"{name}={value!r} is not an integer")


def add_connection_args(parser):
    """Endpoint, region and credentials: shared with send_sample_event.py."""
    parser.add_argument(
        "--endpoint",
        default=os.environ.get("AWS_ENDPOINT_URL") or DEFAULT_ENDPOINT,
        help="AWS endpoint (env AWS_ENDPOINT_URL; default %(default)s)",
    )
    parser.add_argument(
        "--region",
        default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        help="region (env AWS_REGION or AWS_DEFAULT_REGION; default %(default)s)",
    )


def clients(args, *services):
    """boto3 clients for the emulator; credentials test/test unless the environment has others."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        fail("boto3 is not installed for this python (use .emulators/venv/bin/python; scripts/install-emulators)")
    session = boto3.session.Session(
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID") or "test",
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY") or "test",
        aws_session_token=os.environ.get("AWS_SESSION_TOKEN") or None,
        region_name=args.region,
    )
    # Path-style S3 addressing: an IP or a compose service name cannot serve bucket subdomains.
    config = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"},
                    s3={"addressing_style": "path"})
    return [session.client(s, endpoint_url=args.endpoint, config=config) for s in services]


def error_code(exc):
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


def wait_for_endpoint(sqs, endpoint, seconds):
    """Retry a cheap SQS call until the endpoint answers, for at most `seconds`."""
    from botocore.exceptions import BotoCoreError, ClientError

    deadline = time.monotonic() + seconds
    while True:
        try:
            sqs.list_queues(MaxResults=1)
            return
        except (BotoCoreError, ClientError) as exc:
            if time.monotonic() >= deadline:
                fail(f"cannot reach SQS at {endpoint}: {exc} (is LocalStack running? scripts/start-emulators)")
            time.sleep(0.5)


def load_pattern(path, bucket, prefix):
    try:
        pattern = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        fail(f"cannot read the rule pattern {path}: {exc}")
    detail = pattern.get("detail")
    if not isinstance(detail, dict) or "bucket" not in detail or "handle" not in detail:
        fail(f"{path}: expected detail.bucket and detail.handle in the pattern")
    if bucket is not None:
        detail["bucket"] = [bucket]
    if prefix is not None:
        detail["handle"] = [{"prefix": prefix}]
    return pattern


def ensure_queue(sqs, name, attributes):
    """Create the queue, or update the attributes of an existing one. Returns its URL."""
    try:
        return sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    except sqs.exceptions.ClientError as exc:
        # CreateQueue succeeds on an existing queue only when every attribute matches.
        if error_code(exc) not in ("QueueNameExists", "QueueAlreadyExists", "AWS.SimpleQueueService.QueueNameExists"):
            raise
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    return url


def queue_arn(sqs, url):
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def ensure_bucket(s3, bucket):
    """Create the bucket unless it exists (idempotent)."""
    try:
        s3.create_bucket(Bucket=bucket)
        log(f"bucket {bucket}: ready")  # us-east-1 answers 200 for one we own already
    except s3.exceptions.ClientError as exc:
        if error_code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
        log(f"bucket {bucket}: ready (exists)")


def create(args, sqs, events, s3):
    pattern = load_pattern(args.pattern_file, args.bucket, args.prefix)
    sample_bucket = args.sample_bucket
    if sample_bucket is None:
        # The file's bucket, not --bucket's: tests pass a unique --bucket per queue and must not
        # leave a bucket behind for each.
        sample_bucket = load_pattern(args.pattern_file, None, None)["detail"]["bucket"][0]
    if sample_bucket:
        ensure_bucket(s3, sample_bucket)

    dlq_url = ensure_queue(sqs, args.dlq, {"MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS)})
    dlq_arn = queue_arn(sqs, dlq_url)
    log(f"dead-letter queue {args.dlq}: {dlq_url}")

    rule_arn = events.put_rule(
        Name=args.rule,
        EventPattern=json.dumps(pattern, separators=(",", ":")),
        State="ENABLED",
        Description=f"Quilt package-revision events for quilt-notify (queue {args.queue})",
    )["RuleArn"]
    log(f"rule {args.rule}: {json.dumps(pattern, separators=(',', ':'))}")

    # Same account and region as the DLQ: the queue's ARN is known before it exists, so the policy
    # goes in with the other attributes in one call.
    arn = dlq_arn.rsplit(":", 1)[0] + ":" + args.queue
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AllowOnlyTheQuiltNotifyRule",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
            }
        ],
    }
    attributes = {
        "VisibilityTimeout": str(args.visibility_timeout),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": args.max_receive_count}),
        "Policy": json.dumps(policy),
    }
    url = ensure_queue(sqs, args.queue, attributes)
    log(
        f"queue {args.queue}: {url} (visibility {args.visibility_timeout}s, "
        f"to the DLQ after {args.max_receive_count} receives)"
    )

    result = events.put_targets(Rule=args.rule, Targets=[{"Id": TARGET_ID, "Arn": arn}])
    if result.get("FailedEntryCount"):
        fail(f"put_targets on rule {args.rule}: {result['FailedEntries']}")
    log(f"rule {args.rule} -> queue {args.queue}")

    return {"queue_url": url, "dlq_url": dlq_url, "rule_arn": rule_arn, "queue_arn": arn,
            "sample_bucket": sample_bucket or None}


def delete(args, sqs, events):
    deleted = []
    try:
        ids = [t["Id"] for t in events.list_targets_by_rule(Rule=args.rule).get("Targets", [])]
        if ids:
            events.remove_targets(Rule=args.rule, Ids=ids)
        events.delete_rule(Name=args.rule)
        deleted.append(args.rule)
    except events.exceptions.ResourceNotFoundException:
        pass
    for name in (args.queue, args.dlq):
        try:
            sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=name)["QueueUrl"])
            deleted.append(name)
        except sqs.exceptions.ClientError as exc:
            if "NonExistentQueue" not in error_code(exc) and "QueueDoesNotExist" not in error_code(exc):
                raise
    log(f"deleted: {', '.join(deleted) or 'nothing (none existed)'}")
    return {"deleted": deleted}


def ensure_state_table(args):
    """The state table: key pk (S) + sk (S), on-demand, TTL on expires_at (as `quilt-notify
    state create` makes it, src/adapters/aws/admin/dynamodb.rs)."""
    from botocore.exceptions import BotoCoreError, ClientError

    endpoint_args = argparse.Namespace(endpoint=args.state_endpoint, region=args.region)
    (dynamodb,) = clients(endpoint_args, "dynamodb")
    deadline = time.monotonic() + args.wait
    while True:
        try:
            dynamodb.create_table(
                TableName=args.state_table,
                BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                      {"AttributeName": "sk", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                           {"AttributeName": "sk", "KeyType": "RANGE"}],
            )
            log(f"state table {args.state_table}: created at {args.state_endpoint}")
            break
        except ClientError as exc:
            if error_code(exc) == "ResourceInUseException":
                log(f"state table {args.state_table}: exists at {args.state_endpoint}")
                break
            raise
        except BotoCoreError as exc:
            if time.monotonic() >= deadline:
                fail(f"cannot reach DynamoDB at {args.state_endpoint}: {exc} (is moto running?)")
            time.sleep(0.5)
    dynamodb.get_waiter("table_exists").wait(TableName=args.state_table,
                                             WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    dynamodb.update_time_to_live(
        TableName=args.state_table,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
    )
    return args.state_table


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="setup_resources.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_connection_args(parser)
    parser.add_argument("--queue", default=os.environ.get("QN_QUEUE_NAME") or "quilt-notify",
                        help="queue name (env QN_QUEUE_NAME; default %(default)s)")
    parser.add_argument("--dlq", default=os.environ.get("QN_DLQ_NAME"),
                        help="dead-letter queue name (env QN_DLQ_NAME; default <queue>-dlq)")
    parser.add_argument("--rule", default=os.environ.get("QN_RULE_NAME"),
                        help="EventBridge rule name (env QN_RULE_NAME; default <queue>-rule)")
    parser.add_argument("--max-receive-count", type=int, default=env_int("QN_MAX_RECEIVE_COUNT", 3),
                        help="receives before SQS moves a message to the DLQ (env QN_MAX_RECEIVE_COUNT; "
                             "default %(default)s)")
    parser.add_argument("--visibility-timeout", type=int, default=env_int("QN_VISIBILITY_TIMEOUT", 30),
                        help="queue visibility timeout in seconds (env QN_VISIBILITY_TIMEOUT; default %(default)s)")
    parser.add_argument("--bucket", default=os.environ.get("QN_BUCKET") or None,
                        help="replaces detail.bucket of the pattern (env QN_BUCKET; default: the file's, 'example')")
    parser.add_argument("--sample-bucket", default=os.environ.get("QN_SAMPLE_BUCKET"),
                        help="S3 bucket to create for the sample package (env QN_SAMPLE_BUCKET; default: "
                             "the pattern file's bucket, 'example'; '' creates none)")
    parser.add_argument("--prefix", default=os.environ.get("QN_PREFIX"),
                        help="replaces detail.handle's prefix (env QN_PREFIX; default: the file's, '' = every package)")
    parser.add_argument("--pattern-file", default=os.environ.get("QN_RULE_PATTERN_FILE") or str(DEFAULT_PATTERN_FILE),
                        help="the rule's event pattern (env QN_RULE_PATTERN_FILE; default %(default)s)")
    parser.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                        help="retry until the endpoint answers, for at most SECONDS (default 0: fail at once)")
    parser.add_argument("--state-table", default=os.environ.get("QN_STATE_TABLE") or None,
                        help="also create the worker's state table of this name (env QN_STATE_TABLE; default: none)")
    parser.add_argument("--state-endpoint", default=os.environ.get("QN_STATE_ENDPOINT") or "http://127.0.0.1:5000",
                        help="DynamoDB endpoint of the state table (env QN_STATE_ENDPOINT; default %(default)s, moto)")
    parser.add_argument("--delete", action="store_true",
                        help="delete the rule (and its targets), the queue and the DLQ")
    parser.add_argument("--json", action="store_true",
                        help='print {"queue_url", "dlq_url", "rule_arn", "queue_arn", "sample_bucket"} '
                             '(with --delete: {"deleted"}) '
                             "as JSON on stdout, and nothing else")
    args = parser.parse_args(argv)
    args.dlq = args.dlq or f"{args.queue}-dlq"
    args.rule = args.rule or f"{args.queue}-rule"
    if args.max_receive_count < 1 or args.max_receive_count > 1000:
        parser.error("--max-receive-count must be between 1 and 1000")
    if args.visibility_timeout < 0 or args.visibility_timeout > 43200:
        parser.error("--visibility-timeout must be between 0 and 43200 seconds")
    return args


def main(argv=None):
    args = parse_args(argv)
    sqs, events, s3 = clients(args, "sqs", "events", "s3")
    from botocore.exceptions import BotoCoreError, ClientError

    wait_for_endpoint(sqs, args.endpoint, args.wait)
    try:
        result = delete(args, sqs, events) if args.delete else create(args, sqs, events, s3)
        if args.state_table and not args.delete:
            result["state_table"] = ensure_state_table(args)
    except (BotoCoreError, ClientError) as exc:
        fail(f"{exc} (endpoint {args.endpoint})")
    if args.json:
        print(json.dumps(result))
    elif not args.delete:
        for key, value in result.items():
            print(f"{key}={value}")


if __name__ == "__main__":
    main()
