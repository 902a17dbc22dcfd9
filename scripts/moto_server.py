#!/usr/bin/env python3
"""moto's server, answering one request at a time.

`moto_server` answers each request on its own thread, and its DynamoDB does not lock an item
between checking a ConditionExpression and applying the update: two concurrent conditional
writes to one item can both pass, or one can undo the other (an UpdateItem that creates an item
replaces one created at the same moment). DynamoDB itself is linearizable per item, and the
state table's guarantees (src/adapters/aws/dynamodb.rs) rest on that. One thread gives moto the same
per-item atomicity; every call it serves takes milliseconds, so nothing waits long.

scripts/start-emulators and compose's moto service run this file with moto's venv
(scripts/moto-requirements.txt). Options as moto_server's: -H HOST, -p PORT.
"""

import argparse
import signal
import sys

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-H", "--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument("-p", "--port", type=int, default=5000, help="port (default %(default)s)")
    args = parser.parse_args()
    # In a container this is PID 1, which ignores SIGTERM unless it handles it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, app, threaded=False, use_reloader=False,
               request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
