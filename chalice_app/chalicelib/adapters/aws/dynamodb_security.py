"""DynamoStore's security items: state-change audit rows awaiting the chainer, shared rate-limit counters.

    _auditq#<n>   <id>      audit rows written by the payment's TransactWriteItems (dynamodb_writes.py)
    <t>#rate      <window>  API requests counted in a rate-limit window (TTL expires_at)
"""
from __future__ import annotations

from typing import Any, Sequence

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from ...config import TTL_ATTRIBUTE
from ...ports import AuditPending
from ..errors import StoreUnavailable
from . import dynamodb_layout as L
from .dynamodb_layout import N
from .dynamodb_layout import key as _key


class SecurityItems:
    client: Any
    table: str

    # -- shared rate limit ----------------------------------------------------------------
    def count_request(self, tenant_id: str, window: int, limit: int, expires_at: int) -> bool:
        """One conditional ADD on the tenant's window item (TTL removes old windows)."""
        try:
            self.client.update_item(
                TableName=self.table, Key=_key(f"{tenant_id}#rate", f"{window:012d}"),
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

    # -- state-change audit rows (chained by security/audit.chain_pending) -----------------
    def _audit_queue(self, limit: int | None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for shard in range(L.AUDIT_SHARDS):
            items += self._partition(f"_auditq#{shard}", limit=limit)
        return sorted(items, key=lambda i: i["sk"]["S"])

    def pending_audit(self, limit: int) -> list[AuditPending]:
        """Oldest first across the queue partitions (ids are time-ordered)."""
        return [AuditPending(int(i["id"]["N"]), i["tenant_id"]["S"], i["source"]["S"], orjson.loads(i["body"]["S"]))
                for i in self._audit_queue(limit)[:limit]]

    def mark_audited(self, ids: Sequence[int]) -> None:
        self._batch_write([{"DeleteRequest": {"Key": L.audit_queue_key(i)}} for i in dict.fromkeys(ids)])

    def pending_audit_count(self, tenant_id: str) -> int:
        """An admin check (payctl audit verify): the queue is short while the chainer runs."""
        return sum(1 for i in self._audit_queue(None) if i["tenant_id"]["S"] == tenant_id)
