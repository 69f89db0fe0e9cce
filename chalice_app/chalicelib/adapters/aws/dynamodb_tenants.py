"""TenantDirectory on the DynamoDB single table: tenants, API keys, DLQ redrive marks.

An API key's lookup item `_apikey#<hash>` is the truth (revocation
included); `<tenant>#apikeys` holds one entry per key so listing is a Query, not a Scan.
"""
from __future__ import annotations

from typing import Any, Sequence

import orjson
from botocore.exceptions import ClientError

from ...ports import AlreadyExists
from ..errors import StoreUnavailable
from .dynamodb_layout import S
from .dynamodb_layout import key as _key
from .dynamodb_table import DynamoTable


class DynamoTenants(DynamoTable):
    """Tenants, API keys and DLQ redrive marks (port TenantDirectory)."""

    # -- tenants ------------------------------------------------------------------------
    def put_tenant(self, tenant: dict[str, Any]) -> None:
        tid = tenant["tenant_id"]
        self._call("put_item", TableName=self.table, Item={
            **_key(f"{tid}#tenant", "tenant"), "gsi1pk": S("_tenants"), "gsi1sk": S(tid),
            "body": S(orjson.dumps(tenant).decode())})

    def get_tenant(self, tenant_id: str) -> dict[str, Any] | None:
        item = self._get(f"{tenant_id}#tenant", "tenant")
        return orjson.loads(item["body"]["S"]) if item else None

    def list_tenants(self) -> list[dict[str, Any]]:
        items = self._query(index=True, KeyConditionExpression="gsi1pk = :g",
                            ExpressionAttributeValues={":g": S("_tenants")})
        return [orjson.loads(i["body"]["S"]) for i in items]

    def add_api_key(self, tenant_id: str, key_hash: str, prefix: str, at: str) -> None:
        """The key's lookup item (the truth, also for revocation) and the tenant's listing entry, together."""
        lookup = {**_key(f"_apikey#{key_hash}", "-"), "tenant_id": S(tenant_id), "prefix": S(prefix),
                  "created_at": S(at)}
        listing = {**_key(f"{tenant_id}#apikeys", f"{at}#{key_hash}"), "key_hash": S(key_hash)}
        try:
            self.client.transact_write_items(TransactItems=[
                {"Put": {"TableName": self.table, "Item": lookup, "ConditionExpression": "attribute_not_exists(pk)"}},
                {"Put": {"TableName": self.table, "Item": listing}}])
        except ClientError as e:
            reasons = [r.get("Code") for r in e.response.get("CancellationReasons") or []]
            if reasons[:1] == ["ConditionalCheckFailed"]:
                raise AlreadyExists("API key already registered") from None
            raise StoreUnavailable(f"DynamoDB add_api_key: {e}") from None

    def tenant_for_key(self, key_hash: str) -> str | None:
        item = self._get(f"_apikey#{key_hash}", "-")
        return item["tenant_id"]["S"] if item and "revoked_at" not in item else None

    def list_api_keys(self, tenant_id: str) -> list[dict[str, Any]]:
        hashes = [i["key_hash"]["S"] for i in self._partition(f"{tenant_id}#apikeys")]  # by created_at, hash
        found = self._batch_get([_key(f"_apikey#{h}", "-") for h in hashes])
        out = []
        for h in hashes:
            item = found.get((f"_apikey#{h}", "-"))
            if item:
                out.append({"key_hash": h, "prefix": item["prefix"]["S"], "created_at": item["created_at"]["S"],
                            "revoked_at": item["revoked_at"]["S"] if "revoked_at" in item else None})
        return out

    def revoke_api_key(self, key_hash: str, at: str) -> bool:
        """True if this call revoked the key (False: unknown or already revoked)."""
        try:
            self.client.update_item(TableName=self.table, Key=_key(f"_apikey#{key_hash}", "-"),
                                    UpdateExpression="SET revoked_at = :at",
                                    ConditionExpression="attribute_exists(pk) AND attribute_not_exists(revoked_at)",
                                    ExpressionAttributeValues={":at": S(at)})
            return True
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise StoreUnavailable(f"DynamoDB revoke_api_key: {e}") from None

    def mark_redriven(self, entry_ids: Sequence[str], at: str) -> None:
        self._batch_write([{"PutRequest": {"Item": {**_key("_redrives", i), "at": S(at)}}}
                           for i in dict.fromkeys(entry_ids)])

    def redriven_ids(self) -> set[str]:
        return {i["sk"]["S"] for i in self._partition("_redrives")}
