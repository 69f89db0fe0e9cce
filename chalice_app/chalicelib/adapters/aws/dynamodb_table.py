"""The DynamoDB single table as every store concern reaches it: one client, one table name, and
the reads and batch writes they share. Vendor errors become StoreUnavailable here."""
from __future__ import annotations

from typing import Any, Iterator

from botocore.exceptions import BotoCoreError, ClientError

from ...config import DEFAULTS, PLATFORM_REGION, STATUS_INDEX
from ..errors import StoreUnavailable
from .dynamodb_layout import S
from .dynamodb_layout import key as _key


class DynamoTable:
    """A store concern on `table` through a low-level boto3 DynamoDB client, as `region` writes it
    (the table is a global table: see dynamodb_layout's "Regions")."""

    def __init__(self, client: Any, table: str, region: str = DEFAULTS[PLATFORM_REGION]):
        self.client, self.table, self.region = client, table, region

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

    def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        for start in range(0, len(requests), 25):
            pending = {self.table: requests[start:start + 25]}
            while pending:
                pending = self._call("batch_write_item", RequestItems=pending).get("UnprocessedItems") or {}
