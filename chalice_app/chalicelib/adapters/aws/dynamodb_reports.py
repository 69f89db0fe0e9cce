"""Report counters on the DynamoDB table: one item per tenant, one number attribute per counter.

    <t>#report              counters#<r>     c:<name> = n   (ADD, in the transaction of the change's marker)
                                             one item per region (each counts what it wrote), summed on read
    _proc#<consumer>#<id>   -                processed marker of the reporting consumer

A chunk of deltas is one TransactWriteItems: a conditional Put of each delta's
marker plus one ADD Update per tenant. If a marker exists (redelivery) the whole
transaction is refused; the already-applied deltas are dropped and the rest retried,
so a change is counted exactly once however often the stream hands it over.
"""
from __future__ import annotations

import time
from typing import Any, Sequence

from botocore.exceptions import BotoCoreError, ClientError

from ...ports import ConcurrencyConflict, ReportDelta
from ..errors import StoreUnavailable
from .dynamodb_table import DynamoTable

CHUNK = 45  # markers + one update per tenant stay under DynamoDB's 100 items per transaction
PREFIX = "c:"
CONFLICT_RETRIES = 8


def report_key(tenant_id: str, region: str) -> dict[str, dict[str, str]]:
    return {"pk": {"S": f"{tenant_id}#report"}, "sk": {"S": f"counters#{region}"}}


class DynamoReports(DynamoTable):
    """Per-tenant report counters, each change counted once (port ReportCounters)."""

    def _report_items(self, consumer: str, chunk: Sequence[ReportDelta]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = [{"Put": {
            "TableName": self.table, "Item": {"pk": {"S": f"_proc#{consumer}#{d.change_id}"}, "sk": {"S": "-"}},
            "ConditionExpression": "attribute_not_exists(pk)"}} for d in chunk]
        sums: dict[str, dict[str, int]] = {}
        for d in chunk:
            tenant = sums.setdefault(d.tenant_id, {})
            for name, n in d.counters.items():
                tenant[name] = tenant.get(name, 0) + n
        for tenant_id, counters in sums.items():
            counters = {k: v for k, v in counters.items() if v}
            names = {f"#c{i}": PREFIX + k for i, k in enumerate(counters)}
            values: dict[str, Any] = {f":c{i}": {"N": str(v)} for i, v in enumerate(counters.values())}
            values[":t"] = {"S": tenant_id}
            adds = ", ".join(f"#c{i} :c{i}" for i in range(len(counters)))
            items.append({"Update": {"TableName": self.table, "Key": report_key(tenant_id, self.region),
                                     "UpdateExpression": (f"ADD {adds} " if adds else "") + "SET tenant_id = :t",
                                     **({"ExpressionAttributeNames": names} if names else {}),
                                     "ExpressionAttributeValues": values}})
        return items

    def apply_report(self, consumer: str, deltas: Sequence[ReportDelta]) -> int:
        unique = list({d.change_id: d for d in reversed(deltas)}.values())[::-1]  # first of each id wins
        applied = conflicts = 0
        while unique:
            chunk = unique[:CHUNK]
            try:
                self.client.transact_write_items(TransactItems=self._report_items(consumer, chunk))
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                    raise StoreUnavailable(f"DynamoDB report update on {self.table}: {e}") from None
                reasons = [r.get("Code") for r in e.response.get("CancellationReasons") or []]
                done = {i for i, r in enumerate(reasons[:len(chunk)]) if r == "ConditionalCheckFailed"}
                if done:  # those changes were counted before: drop them, retry the rest of the chunk
                    unique = [d for i, d in enumerate(chunk) if i not in done] + unique[len(chunk):]
                    continue
                conflicts += 1
                if conflicts > CONFLICT_RETRIES:
                    raise ConcurrencyConflict("report counters kept racing another transaction") from None
                time.sleep(0.01 * 2 ** min(conflicts, 6))
                continue
            except BotoCoreError as e:
                raise StoreUnavailable(f"DynamoDB report update on {self.table}: {e}") from e
            applied += len(chunk)
            unique = unique[len(chunk):]
        return applied

    def report_counters(self, tenant_id: str) -> dict[str, int]:
        """The tenant's counters: what every region counted, summed."""
        totals: dict[str, int] = {}
        for item in self._partition(f"{tenant_id}#report", "counters#"):
            for k, v in item.items():
                if k.startswith(PREFIX):
                    totals[k[len(PREFIX):]] = totals.get(k[len(PREFIX):], 0) + int(v["N"])
        return dict(sorted(totals.items()))
