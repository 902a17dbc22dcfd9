#!/usr/bin/env python3
"""moto's server, answering one request at a time.

`moto_server` answers each request on its own thread, and its DynamoDB does not lock an item
between checking a ConditionExpression and applying the update: two concurrent conditional
writes to one item can both pass, or one can undo the other (an UpdateItem that creates an item
replaces one created at the same moment). DynamoDB itself is linearizable per item, and the
state table's guarantees (src/adapters/aws/dynamodb.rs) rest on that. One thread gives moto the same
per-item atomicity; every call it serves takes milliseconds, so nothing waits long.

Its TransactWriteItems backs up the whole table once per item of the transaction before
applying it (a deep copy each), so a transaction of 25 writes on a table of 4,000 items copies
100,000 items: the state table's batched writes (src/worker/state/batch.rs) would measure moto's
copying, not DynamoDB. `copy_each_table_once` keeps one backup per table per transaction, which
is all the rollback uses; nothing else changes.

scripts/start-emulators and compose's moto service run this file with moto's venv
(scripts/moto-requirements.txt). Options as moto_server's: -H HOST, -p PORT.
"""

import argparse
import copy
import signal
import sys

import moto.dynamodb.models as dynamodb_models
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


class _CopyEachTableOnce:
    """moto's `copy` module for its DynamoDB models: within one transaction, a table is copied
    once and its later copies are the same backup (the table does not change until every backup
    is taken)."""

    def __init__(self):
        self.backups = None

    def deepcopy(self, value, *args, **kwargs):
        if self.backups is None or not isinstance(value, dynamodb_models.Table):
            return copy.deepcopy(value, *args, **kwargs)
        if id(value) not in self.backups:
            self.backups[id(value)] = copy.deepcopy(value, *args, **kwargs)
        return self.backups[id(value)]

    def __getattr__(self, name):
        return getattr(copy, name)


def copy_each_table_once():
    shim = _CopyEachTableOnce()
    dynamodb_models.copy = shim
    transact = dynamodb_models.DynamoDBBackend.transact_write_items

    def transact_write_items(self, transact_items):
        shim.backups = {}
        try:
            return transact(self, transact_items)
        finally:
            shim.backups = None

    dynamodb_models.DynamoDBBackend.transact_write_items = transact_write_items


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-H", "--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument("-p", "--port", type=int, default=5000, help="port (default %(default)s)")
    args = parser.parse_args()
    # In a container this is PID 1, which ignores SIGTERM unless it handles it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    copy_each_table_once()
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, app, threaded=False, use_reloader=False,
               request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
