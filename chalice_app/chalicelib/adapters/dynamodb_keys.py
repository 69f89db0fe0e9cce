"""API key administration on the DynamoDB single table (listing and revoking keys).

A mixin for adapters/dynamodb.py's DynamoStore, kept apart while that module is
being changed: `class DynamoStore(ApiKeyAdmin): ...`. Key items are
`_apikey#<hash> / -` with tenant_id, prefix, created_at and, once revoked,
revoked_at (tenant_for_key already ignores revoked items).

Listing is an admin operation (payctl), rare and small, so it scans for the
tenant's key items rather than keeping a second index item per key.
"""
from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from .errors import StoreUnavailable


class ApiKeyAdmin:
    client: Any
    table: str

    def list_api_keys(self, tenant_id: str) -> list[dict[str, Any]]:
        """The tenant's keys, oldest first (hash, prefix, created_at, revoked_at)."""
        keys: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table, "ConsistentRead": True,
            "FilterExpression": "begins_with(pk, :p) AND tenant_id = :t",
            "ExpressionAttributeValues": {":p": {"S": "_apikey#"}, ":t": {"S": tenant_id}}}
        while True:
            try:
                page = self.client.scan(**kwargs)
            except ClientError as e:
                raise StoreUnavailable(f"DynamoDB list_api_keys: {e}") from None
            for item in page.get("Items", []):
                keys.append({"key_hash": item["pk"]["S"].split("#", 1)[1], "prefix": item["prefix"]["S"],
                             "created_at": item["created_at"]["S"],
                             "revoked_at": item["revoked_at"]["S"] if "revoked_at" in item else None})
            if "LastEvaluatedKey" not in page:
                return sorted(keys, key=lambda k: (k["created_at"], k["key_hash"]))
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def revoke_api_key(self, key_hash: str, at: str) -> bool:
        """Set revoked_at once; False if the key is unknown or already revoked."""
        try:
            self.client.update_item(
                TableName=self.table, Key={"pk": {"S": f"_apikey#{key_hash}"}, "sk": {"S": "-"}},
                UpdateExpression="SET revoked_at = :at",
                ConditionExpression="attribute_exists(pk) AND attribute_not_exists(revoked_at)",
                ExpressionAttributeValues={":at": {"S": at}})
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise StoreUnavailable(f"DynamoDB revoke_api_key: {e}") from None
        return True
