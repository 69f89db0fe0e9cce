"""Report counters on the DynamoDB table: one item per tenant, one number attribute per counter.

    <t>#report              counters         c:<name> = n   (ADD, in the transaction of the change's marker)
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


def report_key(tenant_id: str) -> dict[str, dict[str, str]]:
    return {"pk": {"S": f"{tenant_id}#report"}, "sk": {"S": "counters"}}


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
            items.append({"Update": {"TableName": self.table, "Key": report_key(tenant_id),
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
        key = report_key(tenant_id)
        item = self._get(key["pk"]["S"], key["sk"]["S"]) or {}
        return {k[len(PREFIX):]: int(v["N"]) for k, v in sorted(item.items()) if k.startswith(PREFIX)}
