"""LocalStack "ready" init hook for `docker compose up` (compose.yaml mounts it in
/etc/localstack/init/ready.d/): creates quilt-notify's queue, dead-letter queue, EventBridge rule,
target, queue policy, the S3 bucket of the sample package and the worker's state table (in the
moto service: QN_STATE_TABLE, QN_STATE_ENDPOINT) by running
scripts/setup_resources.py, the same script the host-mode test harness and scripts/run-local run.

LocalStack exec()s .py hooks inside its own process, so this file only starts the set-up script as
a child process of LocalStack's Python (sys.executable, which has boto3): the script keeps its own
argv, exit status and __file__, and a failure marks this hook ERROR, which the compose health check
of the localstack service reports (the worker then never starts, and `docker compose up` says why).

Environment (compose sets it on the localstack service): QN_QUEUE_NAME, QN_MAX_RECEIVE_COUNT,
QN_VISIBILITY_TIMEOUT, QN_BUCKET, QN_PREFIX, QN_SAMPLE_BUCKET, QN_STATE_TABLE, QN_STATE_ENDPOINT as
documented in setup_resources.py --help;
QN_SETUP_SCRIPT and QN_SETUP_ENDPOINT move the script and the endpoint (for trying the hook
outside the container).
"""

import os
import subprocess
import sys

subprocess.run(
    [
        sys.executable,
        os.environ.get("QN_SETUP_SCRIPT", "/quilt-notify/scripts/setup_resources.py"),
        "--endpoint",
        os.environ.get("QN_SETUP_ENDPOINT", "http://127.0.0.1:4566"),
        "--wait",
        "30",
    ],
    check=True,
)
