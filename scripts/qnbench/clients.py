"""The bench's AWS calls.

boto3 makes the queues (through setup_resources.py), loads them, polls their depth, sends the
trickle and deletes state tables: its speed is enough there (measured: docs/performance.md, "The
bench's own client"). The plain loops keep a raw JSON client over keep-alive HTTP: they measure
the emulators' ceiling, and boto3 costs about five times the client CPU per call, which made the
loop itself the bottleneck.
"""

import http.client
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import boto3
from botocore.config import Config

from . import BenchError
from .capacity import Capacity

# LocalStack routes by the signing scope and does not check signatures.
AUTH = "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"


def client(service, endpoint, pool=10):
    """A boto3 client for an emulator: us-east-1, test/test, a few retries."""
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                        aws_secret_access_key="test",
                        config=Config(connect_timeout=5, read_timeout=40, max_pool_connections=pool,
                                      retries={"max_attempts": 3, "mode": "standard"}))


def depth(sqs, url):
    """(visible, in flight) messages on a queue."""
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


class RawJson:
    """The JSON protocols of SQS and SES v2 without an SDK: one keep-alive connection per thread,
    reconnecting up to twice. For the plain loops only."""

    def __init__(self, endpoint):
        url = urlparse(endpoint)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.local = threading.local()

    def _post(self, what, path, payload, headers, timeout):
        body = json.dumps(payload)
        for attempt in range(3):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            try:
                conn.request("POST", path, body, headers)
                response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self.local.conn = None
                if attempt == 2:
                    raise BenchError(f"{what}: {exc}") from exc
                time.sleep(0.2)
                continue
            if response.status != 200:
                raise BenchError(f"{what}: HTTP {response.status}: {data[:300]!r}")
            return json.loads(data) if data else {}
        raise AssertionError("unreachable")

    def sqs(self, action, payload, timeout=40):
        headers = {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": f"AmazonSQS.{action}",
                   "Authorization": AUTH.format(service="sqs")}
        return self._post(f"SQS {action}", "/", payload, headers, timeout)

    def send_email(self, payload):
        headers = {"Content-Type": "application/json", "Authorization": AUTH.format(service="ses")}
        return self._post("SES SendEmail", "/v2/email/outbound-emails", payload, headers, 30)


class KeepAliveRelay:
    """HTTP/1.1 keep-alive in front of moto, whose server (werkzeug's) closes the connection after
    every response: without it the worker would open a TCP connection per DynamoDB call, which it
    does not do against DynamoDB (keep-alive). Each relayed request goes to moto on a connection of
    its own; the relay runs in this process (its CPU counts as the bench script's) and counts the
    requests by operation, with the units DynamoDB would bill for them (qnbench/capacity.py), so
    the report can show DynamoDB calls and units per message."""

    HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"})

    def __init__(self, upstream):
        url = urlparse(upstream)
        host, port = url.hostname or "127.0.0.1", url.port or 80
        relay = self
        self.requests = 0
        self.capacity = Capacity()
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes

            def log_message(self, *_):
                pass

            def relay(self):
                size = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(size) if size else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in relay.HOP}
                conn = http.client.HTTPConnection(host, port, timeout=60)
                try:
                    conn.request(self.command, self.path, body, headers)
                    response = conn.getresponse()
                    data = response.read()
                except (OSError, http.client.HTTPException) as exc:
                    self.send_error(502, f"moto: {exc}")
                    return
                finally:
                    conn.close()
                with relay.lock:
                    relay.requests += 1
                    relay.capacity.account(self.headers.get("X-Amz-Target"), body, response.status, data)
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in relay.HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = relay

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            # The worker opens its connections (up to worker.concurrency) at once; socketserver's
            # default backlog of 5 overflows into SYN cookies and retransmitted SYNs (1 s each).
            request_queue_size = 256

        self.server = Server(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self):
        with self.lock:
            return self.requests

    def totals(self):
        """Calls by operation and their units so far (Capacity.totals)."""
        with self.lock:
            return self.capacity.totals()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
