"""What the worker's DynamoDB calls would cost on DynamoDB, from the requests and answers the
bench's relay sees (the worker asks for no ConsumedCapacity, and moto's would be a fixed number
per call, whatever the item). Pure: no I/O (tests: scripts/tests).

The rules are the in-memory table's (src/adapters/memory/table.rs), which the pipeline bench's
figures come from, so the two cross-check:
  - an item's size: each attribute's name plus its value (a string's UTF-8 bytes, a number
    about one byte per two digits plus one, a boolean one byte);
  - a write: one unit per started KiB of the larger of the item before and after, at least one,
    refused conditional writes included (on the item as it was); in a transaction, twice that;
  - a strongly consistent read (the worker reads only so): one unit per started 4 KiB, at least
    one, a query summing its page's items, a BatchGetItem each item on its own.
The item before a write comes from the answer (the worker asks every write for ALL_OLD, and for
the item on a failed condition); a transaction answers with no items, so the relay keeps the
items it saw written (a fresh table, written only by the worker through the relay)."""

import json
import math
import re

WRITES = ("PutItem", "UpdateItem", "DeleteItem")
# An update expression as the worker writes it (src/adapters/aws/dynamodb/translate.rs):
# `SET #n0 = :v0, #n1 = :v1 REMOVE #n2`.
SET_RE = re.compile(r"\s*(#\w+)\s*=\s*(:\w+)\s*")


def item_size(item):
    """Bytes DynamoDB bills for an item in the wire format ({"name": {"S": "..."}, ...})."""
    total = 0
    for name, value in (item or {}).items():
        total += len(name.encode())
        if "S" in value:
            total += len(value["S"].encode())
        elif "N" in value:
            digits = value["N"].lstrip("+-").replace(".", "").lstrip("0") or "0"
            total += math.ceil(len(digits) / 2) + 1
        elif "BOOL" in value or "NULL" in value:
            total += 1
        else:  # kinds the worker never writes (B, L, M, sets): their JSON, as an upper bound
            total += len(json.dumps(value))
    return total


def write_units(old, new):
    return max(1, math.ceil(max(item_size(old), item_size(new)) / 1024))


def read_units(size):
    return max(1, math.ceil(size / 4096))


def updated(key, old, request):
    """The item an UpdateItem makes of `old` (None: absent), from its expression and values."""
    item = dict(old) if old else dict(key)
    names = request.get("ExpressionAttributeNames") or {}
    values = request.get("ExpressionAttributeValues") or {}
    text = request.get("UpdateExpression") or ""
    set_part, _, remove_part = text.partition("REMOVE")
    set_part = set_part.strip()
    if set_part:
        if not set_part.startswith("SET"):
            raise ValueError(f"update expression not understood: {text!r}")
        for clause in set_part[3:].split(","):
            match = SET_RE.fullmatch(clause)
            if not match:
                raise ValueError(f"update expression not understood: {text!r}")
            item[names.get(match.group(1), match.group(1))] = values[match.group(2)]
    for name in remove_part.split(","):
        name = name.strip()
        if name:
            item.pop(names.get(name, name), None)
    return item


def key_of(table, key):
    """A hashable key of an item: its table and its key attributes."""
    return (table, tuple(sorted((name, json.dumps(value, sort_keys=True)) for name, value in key.items())))


class Capacity:
    """Calls by operation, and the write and read units they would cost, from each request and
    its answer. Not thread-safe: the relay calls `account` under its lock."""

    def __init__(self, key_names=("pk", "sk")):
        self.key_names = key_names
        self.calls = {}
        self.write = 0
        self.read = 0
        self.uncosted = 0  # calls whose units could not be worked out (unreadable, or a failure)
        self.items = {}  # key_of(...) -> the item as last written through the relay

    def totals(self):
        return {"calls": sum(self.calls.values()), "by_operation": dict(sorted(self.calls.items())),
                "write_units": self.write, "read_units": self.read, "uncosted_calls": self.uncosted}

    def _key(self, item):
        return {k: item[k] for k in self.key_names if k in item}

    def _written(self, table, key, new):
        if new is None:
            self.items.pop(key_of(table, key), None)
        else:
            self.items[key_of(table, key)] = new

    def account(self, target, request_body, status, response_body):
        """One relayed call: `target` is its X-Amz-Target (DynamoDB_20120810.PutItem), the bodies
        are bytes as they went over the wire, `status` the HTTP status of the answer."""
        operation = (target or "").rpartition(".")[2] or "?"
        self.calls[operation] = self.calls.get(operation, 0) + 1
        try:
            request = json.loads(request_body or b"{}")
            answer = json.loads(response_body or b"{}")
            units = self._units(operation, request, status, answer)
        except (ValueError, KeyError, TypeError, AttributeError):
            units = None
        if units is None:
            self.uncosted += 1
            return
        self.write += units[0]
        self.read += units[1]

    def _units(self, operation, request, status, answer):
        """(write units, read units) of one call, or None if they cannot be told."""
        table = request.get("TableName")
        error = str(answer.get("__type", "")) if status != 200 else ""
        if operation == "TransactWriteItems":
            if error and not error.endswith("TransactionCanceledException"):
                return None
            return self._transaction(request, cancelled=bool(error))
        refused = error.endswith("ConditionalCheckFailedException")
        if status != 200 and not refused:
            return None  # throttled, invalid, missing table: no item was read or written
        if operation in WRITES:
            key = self._key(request["Item"]) if operation == "PutItem" else request["Key"]
            # ALL_OLD, if asked: the item before (on success, or the one that failed the condition).
            asked = request.get("ReturnValuesOnConditionCheckFailure" if refused else "ReturnValues") == "ALL_OLD"
            old = (answer.get("Item") if refused else answer.get("Attributes")) if asked else \
                self.items.get(key_of(table, key))
            if refused:
                return write_units(old, None), 0
            new = (request["Item"] if operation == "PutItem" else
                   updated(key, old, request) if operation == "UpdateItem" else None)
            self._written(table, key, new)
            return write_units(old, new), 0
        if operation == "GetItem":
            return 0, read_units(item_size(answer.get("Item")))
        if operation == "Query":
            return 0, read_units(sum(item_size(i) for i in answer.get("Items", [])))
        if operation == "BatchGetItem":
            found = [i for items in (answer.get("Responses") or {}).values() for i in items]
            return 0, sum(read_units(item_size(i)) for i in found)
        if operation.startswith(("Describe", "List")):
            return 0, 0  # the control plane: no units
        return None

    def _transaction(self, request, cancelled):
        """Twice a write's units per item; the items before from what the relay saw written."""
        parts = []
        for entry in request["TransactItems"]:
            (kind, body), = entry.items()
            key = self._key(body["Item"]) if kind == "Put" else body["Key"]
            parts.append((kind, body, body["TableName"], key, self.items.get(key_of(body["TableName"], key))))
        if cancelled:
            # A condition failed or another transaction collided: nothing written, each item
            # billed on the item as it was.
            return sum(2 * write_units(old, None) for *_, old in parts), 0
        total = 0
        for kind, body, table, key, old in parts:
            new = (body["Item"] if kind == "Put" else updated(key, old, body) if kind == "Update"
                   else None if kind == "Delete" else old)
            total += 2 * write_units(old, new)
            if kind != "ConditionCheck":
                self._written(table, key, new)
        return total, 0


def per_message(before, after, messages):
    """The calls and units between two `totals()`, per message (None if the relay was off)."""
    if before is None or after is None:
        return None
    ops = {op: after["by_operation"].get(op, 0) - before["by_operation"].get(op, 0) for op in after["by_operation"]}
    ops = {op: n for op, n in ops.items() if n}
    return {
        "calls": after["calls"] - before["calls"],
        "write_units": after["write_units"] - before["write_units"],
        "read_units": after["read_units"] - before["read_units"],
        "uncosted_calls": after["uncosted_calls"] - before["uncosted_calls"],
        "by_operation": ops,
        "calls_per_message": round((after["calls"] - before["calls"]) / messages, 3),
        "write_units_per_message": round((after["write_units"] - before["write_units"]) / messages, 3),
        "read_units_per_message": round((after["read_units"] - before["read_units"]) / messages, 3),
        "by_operation_per_message": {op: round(n / messages, 3) for op, n in ops.items()},
    }
