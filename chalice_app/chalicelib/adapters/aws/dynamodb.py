"""The store on one DynamoDB table (layout: dynamodb_layout.py): open_store builds every concern
(this module: the unit of work and payment reads; dynamodb_items.py, dynamodb_reports.py,
dynamodb_audit.py, dynamodb_tenants.py, dynamodb_stream.py: the others), each over the same table.

A unit of work is one TransactWriteItems: payment (conditional on version),
timeline, outbox, processed marker, ledger legs and balances, idempotency
record, vault secrets and reminders commit together or not at all. Vendor
errors are translated: a failed condition names which item failed, and that
decides ConcurrencyConflict / AlreadyExists / AlreadyProcessed; anything else
is StoreUnavailable. Services never see botocore.
"""
from __future__ import annotations

from typing import Any

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from ...config import DEFAULTS, PLATFORM_REGION
from ...domain.events import Event
from ...domain.payment import Payment
from ...ports import AlreadyExists, AlreadyProcessed, Changes, ConcurrencyConflict, OutboxRecord, Store
from ..cursors import decode_cursor, encode_cursor
from ..errors import StoreUnavailable
from . import dynamodb_layout as L
from .dynamodb_layout import S
from .dynamodb_layout import key as _key
from .dynamodb_table import DynamoTable
from .dynamodb_writes import UnitOfWork


def open_store(client: Any, table: str, outbox_grace_s: float = 0.0, region: str = DEFAULTS[PLATFORM_REGION]) -> Store:
    """Every store concern on `table`, as `region` writes and reads it. `outbox_grace_s` > 0 makes
    the outbox hand the polling relay only records older than that: the table's stream relay
    publishes fresh ones, and the polling relay becomes the sweeper for anything the stream path
    missed."""
    from .dynamodb_audit import DynamoAuditQueue
    from .dynamodb_items import (
        DynamoControls,
        DynamoIdempotency,
        DynamoLedger,
        DynamoOutbox,
        DynamoReminders,
        DynamoRequestCounters,
        DynamoSecrets,
    )
    from .dynamodb_reports import DynamoReports
    from .dynamodb_stream import DynamoChangeFeed
    from .dynamodb_tenants import DynamoTenants
    at = {"client": client, "table": table, "region": region}
    return Store(unit_of_work=DynamoUnitOfWork(**at), payments=DynamoPayments(**at),
                 idempotency=DynamoIdempotency(**at), reminders=DynamoReminders(**at),
                 controls=DynamoControls(**at), secrets=DynamoSecrets(**at),
                 ledger=DynamoLedger(**at), outbox=DynamoOutbox(**at, outbox_grace_s=outbox_grace_s),
                 feed=DynamoChangeFeed(region), reports=DynamoReports(**at),
                 requests=DynamoRequestCounters(**at), audit_queue=DynamoAuditQueue(**at),
                 tenants=DynamoTenants(**at))


class DynamoUnitOfWork(DynamoTable):
    """A Changes as one TransactWriteItems (port UnitOfWork)."""

    def __init__(self, client: Any, table: str, region: str = DEFAULTS[PLATFORM_REGION]):
        super().__init__(client, table, region)
        self.ids = L.OutboxIds()

    def commit(self, changes: Changes) -> None:
        """Everything in `changes` in one TransactWriteItems (at most 100 items)."""
        uow = UnitOfWork(self.table, self.ids, self.region)
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


class DynamoPayments(DynamoTable):
    """Payments, their timelines and lookups (port PaymentReads)."""

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


def outbox_record(item: dict[str, Any]) -> OutboxRecord:
    """An outbox item (from a query, GetRecords or a Lambda stream event) as an OutboxRecord."""
    return OutboxRecord(int(item["id"]["N"]), Event.from_dict(orjson.loads(item["event"]["S"])))


def is_outbox_item(image: dict[str, Any] | None, region: str | None = None) -> bool:
    """An outbox item (written in `region`, if given: a global table's stream carries every region's)."""
    return (bool(image) and image.get("kind", {}).get("S") == L.OUTBOX_KIND
            and (region is None or image.get("origin", {}).get("S") == region))
