"""`python -m laptop.moto_server -H 127.0.0.1 -p PORT`: moto's server, with one fix.

moto 5.2's TransactWriteItems backs up by deep-copying the WHOLE table (stream
records included) once per item of the transaction, so every commit costs
O(table) and a few hundred payments slow it to a crawl (and gigabytes of RSS).
This launcher swaps in an equivalent transaction that checks every condition
against the state before the transaction (as DynamoDB does), and only then
applies the writes, keeping an undo log of the touched items and the stream's
length for the rare failure while applying. Likewise a base-table Query sorts
the whole table to pick one partition; here it reads that partition only.
And every write (PutItem, UpdateItem, DeleteItem, TransactWriteItems; BatchWriteItem uses the first two) runs under
one lock: moto's threaded server otherwise lets two conditional writes to the same item both pass
their condition (a lost update DynamoDB never allows), which made the rate-limit counter's
atomicity test flaky. Nothing else in moto changes.
"""
from __future__ import annotations

import copy
import sys
import threading
from typing import Any


def _key_of(table: Any, op_type: str, op: dict[str, Any]) -> dict[str, Any]:
    if op_type != "Put":
        return op["Key"]
    attrs = op["Item"]
    key = {table.hash_key_attr: attrs[table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = attrs[table.range_key_attr]
    return key


def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
    from moto.dynamodb.comparisons import get_filter_expression
    from moto.dynamodb.exceptions import (
        ConditionalCheckFailed,
        MultipleTransactionsException,
        TooManyTransactionsException,
        TransactionCanceledException,
        TransactWriteSingleOpException,
    )
    from moto.dynamodb.models.dynamo_type import DynamoType

    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    ops, seen = [], set()
    for item in transact_items:
        if len(item) > 1:
            raise TransactWriteSingleOpException
        op_type, op = next(iter(item.items()))
        if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
            raise ValueError("Unsupported transaction operation")
        table = self.get_table(op["TableName"])
        key = _key_of(table, op_type, op)
        marker = (op["TableName"], str(dict(sorted(key.items()))))
        if marker in seen:
            raise MultipleTransactionsException()
        seen.add(marker)
        ops.append((op_type, op, table, key))

    # 1. every condition against the state before the transaction
    errors: list[tuple[Any, Any, Any]] = []
    for op_type, op, table, key in ops:
        current = self.get_item(op["TableName"], key)
        cond = op.get("ConditionExpression")
        if cond is not None and not get_filter_expression(cond, op.get("ExpressionAttributeNames"),
                                                          op.get("ExpressionAttributeValues")).expr(current):
            old = current.to_json()["Attributes"] if current and op.get(
                "ReturnValuesOnConditionCheckFailure") == "ALL_OLD" else None
            errors.append(("ConditionalCheckFailed", ConditionalCheckFailed().message, old))
        else:
            errors.append((None, None, None))
    if any(code is not None for code, _, _ in errors):
        raise TransactionCanceledException(errors)

    # 2. the writes, with an undo log of the touched items and stream lengths
    undo: list[tuple[Any, Any, Any, Any]] = []
    streams = {id(t): (t.stream_shard, len(t.stream_shard.items)) for _, _, t, _ in ops if t.stream_shard}
    try:
        for op_type, op, table, key in ops:
            if op_type == "ConditionCheck":
                continue
            h = DynamoType(key[table.hash_key_attr])
            r = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
            undo.append((table, h, r, copy.deepcopy(table.get_item(h, r))))
            names, values = op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
            if op_type == "Put":
                self.put_item(op["TableName"], op["Item"], expression_attribute_names=names,
                              expression_attribute_values=values)
            elif op_type == "Delete":
                self.delete_item(op["TableName"], key, expression_attribute_names=names,
                                 expression_attribute_values=values)
            else:
                self.update_item(op["TableName"], key, update_expression=op["UpdateExpression"],
                                 expression_attribute_names=names, expression_attribute_values=values)
    except Exception:
        for table, h, r, old in reversed(undo):
            bucket = table.items[h] if r is not None else table.items
            slot = r if r is not None else h
            if old is None:
                bucket.pop(slot, None)
            else:
                bucket[slot] = old
        for shard, length in streams.values():
            del shard.items[length:]
        raise


_partition = threading.local()  # the one partition a base-table Query may look at


def patch_query(table_cls: Any) -> None:
    """A base-table Query reads its own partition, not a sorted copy of the whole table."""
    original_query, original_all_items = table_cls.query, table_cls.all_items

    def all_items(self: Any) -> list[Any]:
        only = getattr(_partition, "items", None)
        if only is not None and only[0] is self:
            return list(only[1].values())
        return original_all_items(self)

    def query(self: Any, hash_key: Any, *args: Any, **kw: Any) -> Any:
        index_name = kw.get("index_name", args[6] if len(args) > 6 else None)
        if index_name or hash_key is None or not self.range_key_attr:
            return original_query(self, hash_key, *args, **kw)
        _partition.items = (self, self.items.get(hash_key) or {})
        try:
            return original_query(self, hash_key, *args, **kw)
        finally:
            _partition.items = None

    table_cls.all_items, table_cls.query = all_items, query


_writes = threading.RLock()
WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")  # BatchWriteItem calls put/delete


def serialize_writes(backend_cls: Any) -> None:
    """Each write's condition check and write happen together, as DynamoDB guarantees per item."""
    def locked(fn: Any) -> Any:
        def write(self: Any, *args: Any, **kw: Any) -> Any:
            with _writes:
                return fn(self, *args, **kw)
        return write
    for name in WRITES:
        setattr(backend_cls, name, locked(getattr(backend_cls, name)))


def main(argv: list[str] | None = None) -> None:
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table
    from moto.server import main as moto_main
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    serialize_writes(DynamoDBBackend)
    patch_query(Table)
    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
