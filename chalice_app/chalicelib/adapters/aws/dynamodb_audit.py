"""AuditLog on the platform's DynamoDB table (aws-local and aws modes).

    <c>#audit               <seq, 12 digits>  chained entry: body (canonical JSON bytes), hash
    <c>#audithead           head              last seq, its hash, HMAC of both (audit/chain.py)
    <c>#auditsrc#<source>   -                 a state change already chained (the chainer's dedupe)
    _audit#tenants          <c>               chains (for `payctl audit verify`)

<c> is a chain: "<tenant>@<region>", one per tenant and region, each appended only by its region.
    _audit#meta             <name>            platform values (the KMS-wrapped head-MAC key)

An append is one TransactWriteItems: the entries (each only if absent), their
source markers (each only if absent) and the head, conditional on the head
being the one the entries were linked to. A lost race re-reads and retries, so
two writers never fork a chain. Entries are never updated: in AWS the chainer's
role may be denied UpdateItem/DeleteItem on "<t>#audit" keys.
"""
from __future__ import annotations

import random
import time
from typing import Any, Sequence

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from ...audit.chain import Head, HeadSigner, chain_name, link, split_chain
from ...config import DEFAULTS, PLATFORM_REGION
from ...ports import AuditPending
from ..errors import StoreUnavailable
from . import dynamodb_layout as L
from .dynamodb_layout import S as _s
from .dynamodb_layout import key as _key
from .dynamodb_table import DynamoTable

CHUNK = 45  # entries per transaction: 2 items each + the head (+ tenant index) <= 100
RETRIES = 30  # lost races on the head, each followed by a jittered wait (at most ~0.2 s)


class DynamoAuditLog:
    def __init__(self, client: Any, table: str, signer: HeadSigner, region: str = DEFAULTS[PLATFORM_REGION]):
        self.client, self.table, self.signer, self.region = client, table, signer, region

    def _call(self, op: str, **kw: Any) -> dict[str, Any]:
        try:
            return getattr(self.client, op)(TableName=self.table, **kw)
        except (ClientError, BotoCoreError) as e:
            raise StoreUnavailable(f"DynamoDB {op} on {self.table} (audit log): {e}") from e

    def _query_all(self, pk: str) -> list[dict[str, Any]]:
        args: dict[str, Any] = {"KeyConditionExpression": "pk = :pk", "ExpressionAttributeValues": {":pk": _s(pk)},
                                "ConsistentRead": True}
        items: list[dict[str, Any]] = []
        while True:
            page = self._call("query", **args)
            items += page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return items
            args["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # -- append ---------------------------------------------------------------------------
    def append(self, tenant_id: str, entries: Sequence[tuple[str | None, dict[str, Any]]]) -> list[dict[str, Any]]:
        self.signer.ready()
        added: list[dict[str, Any]] = []
        for start in range(0, len(entries), CHUNK):
            added += self._append_chunk(tenant_id, chain_name(tenant_id, self.region),
                                        list(entries[start:start + CHUNK]))
        return added

    def _chained(self, tenant_id: str, sources: list[str]) -> set[str]:
        keys = [_key(f"{tenant_id}#auditsrc#{s}", "-") for s in dict.fromkeys(sources)]
        found: set[str] = set()
        if not keys:
            return found
        req: dict[str, Any] = {self.table: {"Keys": keys, "ConsistentRead": True}}
        while req:
            try:
                out = self.client.batch_get_item(RequestItems=req)
            except (ClientError, BotoCoreError) as e:
                raise StoreUnavailable(f"DynamoDB batch_get_item on {self.table} (audit log): {e}") from e
            found |= {i["pk"]["S"].split("#auditsrc#", 1)[1] for i in out.get("Responses", {}).get(self.table, [])}
            req = out.get("UnprocessedKeys") or {}
        return found

    def _append_chunk(self, tenant_id: str, chain: str,
                      entries: list[tuple[str | None, dict[str, Any]]]) -> list[dict[str, Any]]:
        for attempt in range(RETRIES):
            if attempt:
                time.sleep(random.uniform(0, min(0.2, 0.005 * 2 ** attempt)))
            head = self.head(tenant_id)
            done = self._chained(chain, [s for s, _ in entries if s])
            todo = [(s, b) for s, b in entries if s is None or s not in done]
            if not todo:
                return []
            linked, (seq, digest, mac) = link(tenant_id, head, todo, self.signer, self.region)
            items: list[dict[str, Any]] = []
            for e in linked:
                items.append({"Put": {"TableName": self.table, "ConditionExpression": "attribute_not_exists(pk)",
                                      "Item": {**_key(f"{chain}#audit", f"{e['seq']:012d}"),
                                               "body": {"B": e["raw"]}, "hash": _s(e["hash"])}}})
                if e["source"]:
                    items.append({"Put": {"TableName": self.table, "ConditionExpression": "attribute_not_exists(pk)",
                                          "Item": {**_key(f"{chain}#auditsrc#{e['source']}", "-"),
                                                   "seq": {"N": str(e["seq"])}}}})
            new_head = {**_key(f"{chain}#audithead", "head"), "seq": {"N": str(seq)}, "hash": _s(digest),
                        "mac": _s(mac)}
            if head is None:
                items.append({"Put": {"TableName": self.table, "Item": new_head,
                                      "ConditionExpression": "attribute_not_exists(pk)"}})
                items.append({"Put": {"TableName": self.table, "Item": _key("_audit#tenants", chain)}})
            else:
                items.append({"Put": {"TableName": self.table, "Item": new_head,
                                      "ConditionExpression": "seq = :seq AND #h = :hash",
                                      "ExpressionAttributeNames": {"#h": "hash"},
                                      "ExpressionAttributeValues": {":seq": {"N": str(head[0])},
                                                                    ":hash": _s(head[1])}}})
            try:
                self.client.transact_write_items(TransactItems=items)
                return [e["entry"] for e in linked]
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                    raise StoreUnavailable(f"DynamoDB audit append on {self.table}: {e}") from e
                # another writer moved the head (or chained one of these sources): read again
            except BotoCoreError as e:
                raise StoreUnavailable(f"DynamoDB audit append on {self.table}: {e}") from e
        raise StoreUnavailable(f"audit head of {tenant_id} kept changing; try again")

    # -- reads ----------------------------------------------------------------------------
    def _chain(self, tenant_id: str, region: str | None) -> str:
        return chain_name(tenant_id, self.region if region is None else region)

    def rows(self, tenant_id: str, region: str | None = None) -> list[tuple[int, bytes, str]]:
        return [(int(i["sk"]["S"]), bytes(i["body"]["B"]), i["hash"]["S"])
                for i in self._query_all(f"{self._chain(tenant_id, region)}#audit")]

    def head(self, tenant_id: str, region: str | None = None) -> Head | None:
        key = _key(f"{self._chain(tenant_id, region)}#audithead", "head")
        item = self._call("get_item", Key=key, ConsistentRead=True).get("Item")
        if not item:
            return None
        return int(item["seq"]["N"]), item["hash"]["S"], (item.get("mac") or {}).get("S")

    def _chains(self) -> list[tuple[str, str]]:
        return sorted(split_chain(i["sk"]["S"]) for i in self._query_all("_audit#tenants"))

    def tenants(self) -> list[str]:
        return sorted({t for t, _ in self._chains()})

    def regions(self, tenant_id: str) -> list[str]:
        return [r for t, r in self._chains() if t == tenant_id]

    def meta(self, name: str) -> bytes | None:
        item = self._call("get_item", Key=_key("_audit#meta", name), ConsistentRead=True).get("Item")
        return bytes(item["value"]["B"]) if item else None

    def put_meta_if_absent(self, name: str, value: bytes) -> bytes:
        try:
            self.client.put_item(TableName=self.table, Item={**_key("_audit#meta", name), "value": {"B": value}},
                                 ConditionExpression="attribute_not_exists(pk)")
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise StoreUnavailable(f"DynamoDB put_item on {self.table} (audit meta): {e}") from e
        except BotoCoreError as e:
            raise StoreUnavailable(f"DynamoDB put_item on {self.table} (audit meta): {e}") from e
        stored = self.meta(name)
        assert stored is not None
        return stored


class DynamoAuditQueue(DynamoTable):
    """State-change audit rows committed with the state, waiting for the chainer (port AuditQueue).

    A region chains only the rows it wrote (its own partitions), into its own chains."""

    def _audit_queue(self, limit: int | None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for shard in range(L.AUDIT_SHARDS):
            items += self._partition(L.audit_queue_pk(self.region, shard), limit=limit)
        return sorted(items, key=lambda i: i["sk"]["S"])

    def pending_audit(self, limit: int) -> list[AuditPending]:
        """Oldest first across the queue partitions (ids are time-ordered)."""
        return [AuditPending(int(i["id"]["N"]), i["tenant_id"]["S"], i["source"]["S"], orjson.loads(i["body"]["S"]))
                for i in self._audit_queue(limit)[:limit]]

    def mark_audited(self, ids: Sequence[int]) -> None:
        self._batch_write([{"DeleteRequest": {"Key": L.audit_queue_key(self.region, i)}} for i in dict.fromkeys(ids)])

    def pending_audit_count(self, tenant_id: str) -> int:
        """An admin check (payctl audit verify): the queue is short while the chainer runs."""
        return sum(1 for i in self._audit_queue(None) if i["tenant_id"]["S"] == tenant_id)
