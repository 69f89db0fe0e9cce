"""Store concerns on the DynamoDB table beside the unit of work: idempotency keys, reminders,
control records, vault secrets, the ledger, the outbox (the polling relay's sweep) and the
shared rate-limit counters. Each is a DynamoTable over the same table."""
from __future__ import annotations

import time
from typing import Any, Sequence

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from ...config import TTL_ATTRIBUTE
from ...ports import IdempotencyRecord, OutboxRecord, Reminder
from ..errors import StoreUnavailable
from . import dynamodb_layout as L
from .dynamodb import outbox_record
from .dynamodb_layout import N, S
from .dynamodb_layout import key as _key
from .dynamodb_table import DynamoTable
from .dynamodb_writes import UnitOfWork


class DynamoIdempotency(DynamoTable):
    """API idempotency keys (port IdempotencyKeys); the table's TTL expires them."""

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


class DynamoReminders(DynamoTable):
    """Reminders (port Reminders): set and cleared by commits, indexed in time-ordered shards."""

    def due_reminders(self, now: str, limit: int) -> list[Reminder]:
        """Earliest first: this region's index entries due by `now`, each confirmed by its payment's
        reminder item (the other regions' entries replicate here too: theirs to work)."""
        entries: list[dict[str, Any]] = []
        for shard in range(L.REMINDER_SHARDS):
            entries += self._query(limit=limit + 100, KeyConditionExpression="pk = :pk AND sk < :upto",
                                   ExpressionAttributeValues={":pk": S(f"_reminders#{self.region}#{shard}"),
                                                              ":upto": S(now + "$")})
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


class DynamoControls(DynamoTable):
    """Control records shared by every worker (port ControlRecords)."""

    def get_control(self, name: str) -> dict[str, Any] | None:
        item = self._get(f"_control#{name}@{self.region}", "-")
        return orjson.loads(item["body"]["S"]) if item else None

    def put_control(self, name: str, value: dict[str, Any]) -> None:
        self._call("put_item", TableName=self.table,
                   Item={**_key(f"_control#{name}@{self.region}", "-"), "body": S(orjson.dumps(value).decode())})


class DynamoSecrets(DynamoTable):
    """Vault ciphertexts (port Secrets), written by commits."""

    def get_secret(self, tenant_id: str, token: str) -> bytes | None:
        item = self._get(f"{tenant_id}#vault#{token}", "secret")
        return bytes(item["ciphertext"]["B"]) if item else None


class DynamoLedger(DynamoTable):
    """Balances kept with each posting, and the I4 checks (port Ledger)."""

    def balances(self, tenant_id: str) -> list[dict[str, Any]]:
        """Each account's balance: the sum of what every region added to it."""
        sums: dict[tuple[str, str], int] = {}
        for i in self._partition(f"{tenant_id}#balance"):
            k = (i["account"]["S"], i["currency"]["S"])
            sums[k] = sums.get(k, 0) + int(i["balance"]["N"])
        return [{"account": a, "currency": c, "balance": b} for (a, c), b in sorted(sums.items())]

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
                if "balance" in i:  # one item per region: the kept balance is their sum
                    k = (i["tenant_id"]["S"], i["account"]["S"], i["currency"]["S"])
                    kept[k] = kept.get(k, 0) + int(i["balance"]["N"])
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
        """Per transaction and currency: the sum of its legs and their count, over every region."""
        totals: dict[tuple[str, str], list[int]] = {}
        for shard in range(L.LEDGER_SHARDS):
            for i in self._partition(f"_ledger#{shard}"):
                t = totals.setdefault((i["txn_id"]["S"], i["currency"]["S"]), [0, 0])
                t[0] += int(i["total"]["N"])
                t[1] += int(i["legs"]["N"])
        return [{"txn_id": k[0], "currency": k[1], "sum": s, "legs": n} for k, (s, n) in totals.items()]

    def postings_for(self, tenant_id: str, payment_id: str) -> list[dict[str, Any]]:
        return [orjson.loads(i["posting"]["S"]) for i in self._partition(L.payment_pk(tenant_id, payment_id),
                                                                           "posting#")]


class DynamoOutbox(DynamoTable):
    """Outbox items not yet published (port Outbox)."""

    def __init__(self, client: Any, table: str, region: str, outbox_grace_s: float = 0.0):
        super().__init__(client, table, region)
        self.outbox_grace_s = outbox_grace_s
        self._swept = 0.0

    def pending_outbox(self, limit: int, origin: str | None = None) -> list[OutboxRecord]:
        """Oldest first across this region's outbox partitions (older than outbox_grace_s, if set).

        Another region's items replicate here too; they are that region's to publish."""
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
                                 ExpressionAttributeValues={**values, ":pk": S(L.outbox_pk(origin or self.region,
                                                                                          shard))})
        items.sort(key=lambda i: i["sk"]["S"])
        return [outbox_record(i) for i in items[:limit]]

    def mark_published(self, ids: Sequence[int], origin: str | None = None) -> None:
        """Delete the outbox items (deleting one already gone is fine: relays retry)."""
        self._batch_write([{"DeleteRequest": {"Key": L.outbox_key(origin or self.region, i)}}
                           for i in dict.fromkeys(ids)])


class DynamoRequestCounters(DynamoTable):
    """API request counts per tenant and window (port RequestCounters)."""

    def count_request(self, tenant_id: str, window: int, limit: int, expires_at: int) -> bool:
        """One conditional ADD on the tenant's window item of this region (TTL removes old windows).

        Each region counts what it admits: the limit holds per region, with no cross-region read on
        the request path (a client reaches one region through Route 53 latency routing)."""
        try:
            self.client.update_item(
                TableName=self.table, Key=_key(f"{tenant_id}#rate", f"{window:012d}#{self.region}"),
                UpdateExpression="ADD #n :one SET #exp = :exp",
                ConditionExpression="attribute_not_exists(#n) OR #n < :limit",
                ExpressionAttributeNames={"#n": "n", "#exp": TTL_ATTRIBUTE},
                ExpressionAttributeValues={":one": N(1), ":limit": N(limit), ":exp": N(expires_at)})
            return True
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise StoreUnavailable(f"DynamoDB count_request on {self.table}: {e}") from None
        except BotoCoreError as e:
            raise StoreUnavailable(f"DynamoDB count_request on {self.table}: {e}") from e
