"""PaymentStore + TenantDirectory on one DynamoDB table (layout: dynamodb_layout.py).

The TenantDirectory half (tenants, API keys, DLQ redrive marks) is in dynamodb_tenants.py.

A unit of work is one TransactWriteItems: payment (conditional on version),
timeline, outbox, processed marker, ledger legs and balances, idempotency
record, vault secrets and reminders commit together or not at all. Vendor
errors are translated: a failed condition names which item failed, and that
decides ConcurrencyConflict / AlreadyExists / AlreadyProcessed; anything else
is StoreUnavailable. Services never see botocore.
"""
from __future__ import annotations

import time
from typing import Any, Iterator, Sequence

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from ...config import STATUS_INDEX, TTL_ATTRIBUTE
from ...domain.events import Event
from ...domain.payment import Payment
from ...ports import (
    AlreadyExists,
    AlreadyProcessed,
    Changes,
    ConcurrencyConflict,
    IdempotencyRecord,
    OutboxRecord,
    Reminder,
)
from ..cursors import decode_cursor, encode_cursor
from ..errors import StoreUnavailable
from . import dynamodb_layout as L
from .dynamodb_layout import N, S
from .dynamodb_layout import key as _key
from .dynamodb_reports import DynamoReports
from .dynamodb_security import SecurityItems
from .dynamodb_tenants import TenantItems
from .dynamodb_writes import UnitOfWork


class DynamoStore(TenantItems, DynamoReports, SecurityItems):
    """PaymentStore and TenantDirectory on `table` through a low-level boto3 DynamoDB client.

    `outbox_grace_s` > 0 makes pending_outbox() return only records older than
    that: the table's stream relay publishes fresh ones, and the polling relay
    becomes the sweeper for anything the stream path missed.
    """

    def __init__(self, client: Any, table: str, outbox_grace_s: float = 0.0):
        self.client, self.table, self.outbox_grace_s = client, table, outbox_grace_s
        self.ids = L.OutboxIds()
        self._swept = 0.0

    # -- plumbing -----------------------------------------------------------------------
    def _call(self, op: str, **kw: Any) -> dict[str, Any]:
        try:
            return getattr(self.client, op)(**kw)
        except ClientError as e:
            err = e.response.get("Error", {})
            raise StoreUnavailable(f"DynamoDB {op} on {self.table}: {err.get('Code')}: {err.get('Message')}") from e
        except BotoCoreError as e:
            raise StoreUnavailable(f"DynamoDB {op} on {self.table}: {e}") from e

    def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        return self._call("get_item", TableName=self.table, Key=_key(pk, sk), ConsistentRead=True).get("Item")

    def _query(self, *, index: bool = False, limit: int | None = None, forward: bool = True,
               **kw: Any) -> Iterator[dict[str, Any]]:
        """Items of a key condition, following pages; stops after `limit` items."""
        args: dict[str, Any] = {"TableName": self.table, "ScanIndexForward": forward, **kw}
        if index:
            args["IndexName"] = STATUS_INDEX
        else:
            args["ConsistentRead"] = True
        seen = 0
        while True:
            if limit is not None:
                args["Limit"] = limit - seen
            page = self._call("query", **args)
            for item in page.get("Items", []):
                yield item
                seen += 1
            if "LastEvaluatedKey" not in page or (limit is not None and seen >= limit):
                return
            args["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _partition(self, pk: str, prefix: str | None = None, **kw: Any) -> Iterator[dict[str, Any]]:
        cond, values = "pk = :pk", {":pk": S(pk)}
        if prefix:
            cond += " AND begins_with(sk, :pre)"
            values[":pre"] = S(prefix)
        return self._query(KeyConditionExpression=cond, ExpressionAttributeValues=values, **kw)

    # -- unit of work -----------------------------------------------------------------
    def commit(self, changes: Changes) -> None:
        """Everything in `changes` in one TransactWriteItems (at most 100 items)."""
        uow = UnitOfWork(self.table, self.ids)
        uow.add_changes(changes)
        if not uow.items:
            return
        try:
            self.client.transact_write_items(TransactItems=uow.items)
        except ClientError as e:
            raise self._translate(e, uow) from None
        except BotoCoreError as e:
            raise StoreUnavailable(f"DynamoDB commit on {self.table}: {e}") from e
        p = changes.payment
        if p is not None:
            p.version = (changes.expected_version or 0) + 1
            p.pending_timeline.clear()

    def _translate(self, e: ClientError, uow: UnitOfWork) -> Exception:
        err = e.response.get("Error", {})
        code = err.get("Code")
        if code == "TransactionCanceledException":
            reasons = [r.get("Code") for r in e.response.get("CancellationReasons") or []]
            failed = [i for i, r in enumerate(reasons) if r == "ConditionalCheckFailed" and i < len(uow.on_fail)]
            for kind in (AlreadyProcessed, ConcurrencyConflict, AlreadyExists):  # sqlite's order of checks
                for i in failed:
                    if uow.on_fail[i] is kind:
                        return kind(f"commit refused: {uow.labels[i]}")
            if "TransactionConflict" in reasons:  # another transaction held an item: retry later
                return ConcurrencyConflict("commit raced another transaction on the same items")
        return StoreUnavailable(f"DynamoDB commit on {self.table}: {code}: {err.get('Message')}")

    # -- payments -----------------------------------------------------------------------
    def get_payment(self, tenant_id: str, payment_id: str) -> Payment | None:
        item = self._get(L.payment_pk(tenant_id, payment_id), "payment")
        return Payment.from_dict(orjson.loads(item["body"]["S"])) if item else None

    def list_payments(self, tenant_id: str, status: str | None, limit: int,
                      cursor: str | None) -> tuple[list[Payment], str | None]:
        cond, values = "gsi1pk = :g", {":g": S(L.status_gsi(tenant_id, status))}
        if cursor:
            cond += " AND gsi1sk < :after"
            values[":after"] = S(decode_cursor(cursor))
        items = list(self._query(index=True, limit=limit + 1, forward=False, KeyConditionExpression=cond,
                                 ExpressionAttributeValues=values))
        if status:
            page = [Payment.from_dict(orjson.loads(i["body"]["S"])) for i in items[:limit]]
        else:  # listing pointers: read the payments themselves, consistently
            page = self._batch_payments(tenant_id, [i["gsi1sk"]["S"] for i in items[:limit]])
        return page, (encode_cursor(page[-1].payment_id) if len(items) > limit and page else None)

    def _batch_payments(self, tenant_id: str, ids: list[str]) -> list[Payment]:
        found = self._batch_get([_key(L.payment_pk(tenant_id, i), "payment") for i in ids])
        items = [found.get((L.payment_pk(tenant_id, i), "payment")) for i in ids]
        return [Payment.from_dict(orjson.loads(i["body"]["S"])) for i in items if i]

    def timeline(self, tenant_id: str, payment_id: str) -> list[dict[str, Any]]:
        items = self._partition(L.payment_pk(tenant_id, payment_id), "tl#")
        return [{"seq": n, **orjson.loads(i["entry"]["S"])} for n, i in enumerate(items, 1)]

    def payments_by_correlation(self, tenant_id: str, correlation_id: str, limit: int = 100) -> list[str]:
        page = self._call("query", TableName=self.table, ConsistentRead=True, Limit=limit,
                          KeyConditionExpression="pk = :pk",
                          ExpressionAttributeValues={":pk": S(L.correlation_pk(tenant_id, correlation_id))})
        return [i["sk"]["S"] for i in page["Items"]]

    def count_recent_payments(self, tenant_id: str, customer_id: str, since: str) -> int:
        args = {"TableName": self.table, "Select": "COUNT", "ConsistentRead": True,
                "KeyConditionExpression": "pk = :pk AND sk >= :since",
                "ExpressionAttributeValues": {":pk": S(f"{tenant_id}#cus#{customer_id}"), ":since": S(since)}}
        total = 0
        while True:
            page = self._call("query", **args)
            total += page["Count"]
            if "LastEvaluatedKey" not in page:
                return total
            args["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # -- idempotency --------------------------------------------------------------------
    @staticmethod
    def _idempotency(item: dict[str, Any]) -> IdempotencyRecord:
        return IdempotencyRecord(item["tenant_id"]["S"], item["key"]["S"], item["request_hash"]["S"],
                                 int(item["status_code"]["N"]), bytes(item["response"]["B"]),
                                 orjson.loads(item["headers"]["S"]), int(item[TTL_ATTRIBUTE]["N"]),
                                 int(item["created_at"]["N"]), item["state"]["S"], int(item["locked_until"]["N"]))

    def get_idempotency(self, tenant_id: str, key: str, now: int) -> IdempotencyRecord | None:
        item = self._get(f"{tenant_id}#idem#{key}", "idem")
        record = self._idempotency(item) if item else None
        return record if record and record.expires_at > now else None  # TTL deletes lazily: check ourselves

    def claim_idempotency(self, record: IdempotencyRecord) -> IdempotencyRecord | None:
        put = UnitOfWork.idempotency_put(self.table, record)
        put["ConditionExpression"] = ("attribute_not_exists(pk) OR #exp <= :now OR"
                                      " (#st = :inflight AND locked_until <= :now)")
        put["ExpressionAttributeNames"] = {"#exp": TTL_ATTRIBUTE, "#st": "state"}
        put["ExpressionAttributeValues"] = {":now": N(record.created_at), ":inflight": S("in_flight")}
        for _ in range(5):
            try:
                self.client.put_item(**put, ReturnValuesOnConditionCheckFailure="ALL_OLD")
                return None
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise StoreUnavailable(f"DynamoDB claim_idempotency: {e}") from None
                item = e.response.get("Item") or self._get(put["Item"]["pk"]["S"], "idem")
                if item:  # else it vanished between the two calls: try again
                    return self._idempotency(item)
        raise StoreUnavailable("claim_idempotency: the record kept changing")

    def release_idempotency(self, tenant_id: str, key: str, request_hash: str) -> None:
        try:
            self.client.delete_item(TableName=self.table, Key=_key(f"{tenant_id}#idem#{key}", "idem"),
                                    ConditionExpression="#st = :inflight AND request_hash = :h",
                                    ExpressionAttributeNames={"#st": "state"},
                                    ExpressionAttributeValues={":inflight": S("in_flight"), ":h": S(request_hash)})
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise StoreUnavailable(f"DynamoDB release_idempotency: {e}") from None

    def purge_expired_idempotency(self, now: int) -> int:
        """Nothing to do: the table's TTL on expires_at deletes expired records (reads check it too)."""
        return 0

    # -- reminders, control, vault -----------------------------------------------------
    def due_reminders(self, now: str, limit: int) -> list[Reminder]:
        """Earliest first: index entries due by `now`, each confirmed by its payment's reminder item."""
        entries: list[dict[str, Any]] = []
        for shard in range(L.REMINDER_SHARDS):
            entries += self._query(limit=limit + 100, KeyConditionExpression="pk = :pk AND sk < :upto",
                                   ExpressionAttributeValues={":pk": S(f"_reminders#{shard}"), ":upto": S(now + "$")})
        entries.sort(key=lambda i: i["sk"]["S"])
        current = self._batch_get([_key(L.payment_pk(i["tenant_id"]["S"], i["payment_id"]["S"]), "reminder")
                                   for i in entries])
        due, stale = [], []
        for i in entries:
            truth = current.get((L.payment_pk(i["tenant_id"]["S"], i["payment_id"]["S"]), "reminder"))
            if truth is None or truth["due_at"]["S"] != i["due_at"]["S"]:
                stale.append({"DeleteRequest": {"Key": {"pk": i["pk"], "sk": i["sk"]}}})
            elif len(due) < limit:
                due.append(Reminder(i["tenant_id"]["S"], i["payment_id"]["S"], i["due_at"]["S"]))
        self._batch_write(stale)  # moved or cleared since: the hint goes
        return due

    def _batch_get(self, keys: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
        found: dict[tuple[str, str], dict[str, Any]] = {}
        unique = list({(k["pk"]["S"], k["sk"]["S"]): k for k in keys}.values())
        for start in range(0, len(unique), 100):
            req: dict[str, Any] = {self.table: {"Keys": unique[start:start + 100], "ConsistentRead": True}}
            while req:
                out = self._call("batch_get_item", RequestItems=req)
                for item in out.get("Responses", {}).get(self.table, []):
                    found[(item["pk"]["S"], item["sk"]["S"])] = item
                req = out.get("UnprocessedKeys") or {}
        return found

    def get_control(self, name: str) -> dict[str, Any] | None:
        item = self._get(f"_control#{name}", "-")
        return orjson.loads(item["body"]["S"]) if item else None

    def put_control(self, name: str, value: dict[str, Any]) -> None:
        self._call("put_item", TableName=self.table,
                   Item={**_key(f"_control#{name}", "-"), "body": S(orjson.dumps(value).decode())})

    def get_secret(self, tenant_id: str, token: str) -> bytes | None:
        item = self._get(f"{tenant_id}#vault#{token}", "secret")
        return bytes(item["ciphertext"]["B"]) if item else None

    # -- ledger -------------------------------------------------------------------------
    def balances(self, tenant_id: str) -> list[dict[str, Any]]:
        rows = [{"account": i["account"]["S"], "currency": i["currency"]["S"], "balance": int(i["balance"]["N"])}
                for i in self._partition(f"{tenant_id}#balance")]
        return sorted(rows, key=lambda r: (r["account"], r["currency"]))

    def ledger_drift(self) -> list[dict[str, Any]]:
        """Kept balances that differ from the sum of their postings, across tenants.

        An audit (payctl ledger check), so a Scan of ledger items is acceptable here."""
        kept: dict[tuple[str, str, str], int] = {}
        sums: dict[tuple[str, str, str], int] = {}
        args: dict[str, Any] = {"TableName": self.table, "ConsistentRead": True,
                                "FilterExpression": "begins_with(sk, :p) OR attribute_exists(balance)",
                                "ExpressionAttributeValues": {":p": S("posting#")}}
        while True:
            page = self._call("scan", **args)
            for i in page.get("Items", []):
                if "balance" in i:
                    kept[(i["tenant_id"]["S"], i["account"]["S"], i["currency"]["S"])] = int(i["balance"]["N"])
                else:
                    doc = orjson.loads(i["posting"]["S"])
                    k = (i["tenant_id"]["S"], doc["account"], doc["currency"])
                    sums[k] = sums.get(k, 0) + doc["amount"]
            if "LastEvaluatedKey" not in page:
                break
            args["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return [{"tenant_id": k[0], "account": k[1], "currency": k[2], "balance": kept.get(k),
                 "postings_sum": sums.get(k)} for k in sorted(set(kept) | set(sums)) if kept.get(k) != sums.get(k)]

    def ledger_totals(self) -> list[dict[str, Any]]:
        return [{"txn_id": i["txn_id"]["S"], "currency": i["currency"]["S"], "sum": int(i["total"]["N"]),
                 "legs": int(i["legs"]["N"])}
                for shard in range(L.LEDGER_SHARDS) for i in self._partition(f"_ledger#{shard}")]

    def postings_for(self, tenant_id: str, payment_id: str) -> list[dict[str, Any]]:
        return [orjson.loads(i["posting"]["S"]) for i in self._partition(L.payment_pk(tenant_id, payment_id),
                                                                           "posting#")]

    # -- outbox -------------------------------------------------------------------------
    def pending_outbox(self, limit: int) -> list[OutboxRecord]:
        """Oldest first across the outbox partitions (older than outbox_grace_s, if set)."""
        cond, values = "pk = :pk", {}
        if self.outbox_grace_s > 0:  # the sweeper: records this old are rare, so look now and then
            if time.monotonic() - self._swept < min(5.0, self.outbox_grace_s / 2):
                return []
            self._swept = time.monotonic()
            cond += " AND sk < :upto"
            values[":upto"] = S(f"{L.OutboxIds.before(self.outbox_grace_s):020d}")
        items: list[dict[str, Any]] = []
        for shard in range(L.OUTBOX_SHARDS):
            items += self._query(limit=limit, KeyConditionExpression=cond,
                                 ExpressionAttributeValues={**values, ":pk": S(f"_outbox#{shard}")})
        items.sort(key=lambda i: i["sk"]["S"])
        return [outbox_record(i) for i in items[:limit]]

    def mark_published(self, ids: Sequence[int]) -> None:
        """Delete the outbox items (deleting one already gone is fine: relays retry)."""
        self._batch_write([{"DeleteRequest": {"Key": L.outbox_key(i)}} for i in dict.fromkeys(ids)])

    def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        for start in range(0, len(requests), 25):
            pending = {self.table: requests[start:start + 25]}
            while pending:
                pending = self._call("batch_write_item", RequestItems=pending).get("UnprocessedItems") or {}


def outbox_record(item: dict[str, Any]) -> OutboxRecord:
    """An outbox item (from a query, GetRecords or a Lambda stream event) as an OutboxRecord."""
    return OutboxRecord(int(item["id"]["N"]), Event.from_dict(orjson.loads(item["event"]["S"])))


def is_outbox_item(image: dict[str, Any] | None) -> bool:
    return bool(image) and image.get("kind", {}).get("S") == L.OUTBOX_KIND
