"""Leases on the control table (DynamoDB; in AWS a table in multi-region strong consistency mode,
infra/stacks/control.py): every conditional write there is checked against all its regions at
once, which the main table's last-writer-wins replicas cannot do.

    lease#<home>            -                       owner, epoch, expires_at, handback_to
    intent#<home>           <payment_id>#<kind>     a PSP call about to be made (ports/leases.py)

Only single-item conditional writes and strongly consistent reads: what a multi-region strongly
consistent table offers (it has no transactions and no TTL).
"""
from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ...ports import Intent, Lease, LeaseLost
from ..errors import StoreUnavailable
from .dynamodb_layout import N, S, key



def _lease(item: dict[str, Any]) -> Lease:
    return Lease(item["pk"]["S"].split("#", 1)[1], item["owner"]["S"], int(item["epoch"]["N"]),
                 float(item["expires_at"]["N"]), (item.get("handback_to") or {}).get("S", ""))


def _f(v: float) -> dict[str, str]:
    return {"N": repr(float(v))}


class DynamoLeases:
    def __init__(self, client: Any, table: str):
        self.client, self.table = client, table

    def _call(self, op: str, lost: str | None = None, **kw: Any) -> dict[str, Any]:
        try:
            return getattr(self.client, op)(TableName=self.table, **kw)
        except ClientError as e:
            if lost and e.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise LeaseLost(lost) from None
            raise StoreUnavailable(f"DynamoDB {op} on {self.table} (control): {e}") from e
        except BotoCoreError as e:
            raise StoreUnavailable(f"DynamoDB {op} on {self.table} (control): {e}") from e

    def read(self, home: str) -> Lease | None:
        item = self._call("get_item", Key=key(f"lease#{home}", "-"), ConsistentRead=True).get("Item")
        return _lease(item) if item else None

    def all(self) -> list[Lease]:
        args: dict[str, Any] = {"ConsistentRead": True, "FilterExpression": "begins_with(pk, :p)",
                                "ExpressionAttributeValues": {":p": S("lease#")}}
        out: list[Lease] = []
        while True:  # a handful of items: one per region
            page = self._call("scan", **args)
            out += [_lease(i) for i in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return sorted(out, key=lambda lease: lease.home)
            args["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def acquire(self, home: str, owner: str, now: float, ttl_s: float, skew_s: float) -> Lease:
        current = self.read(home)
        if current is not None and current.expires_at + skew_s > now:
            raise LeaseLost(f"{home}'s lease is {current.owner}'s (epoch {current.epoch}) until "
                            f"{current.expires_at:.3f} + {skew_s:g} s skew")
        lease = Lease(home, owner, (current.epoch if current else 0) + 1, now + ttl_s)
        cond, values = "attribute_not_exists(pk)", {}
        if current is not None:  # nobody took it between our read and this write
            cond, values = "epoch = :old", {":old": N(current.epoch)}
        self._call("put_item", lost=f"{home}'s lease changed hands while {owner} took it",
                   Item={**key(f"lease#{home}", "-"), "owner": S(owner), "epoch": N(lease.epoch),
                         "expires_at": _f(lease.expires_at), "handback_to": S("")},
                   ConditionExpression=cond, **({"ExpressionAttributeValues": values} if values else {}))
        return lease

    def renew(self, lease: Lease, now: float, ttl_s: float) -> Lease:
        out = self._call("update_item", lost=f"{lease.home}'s lease (epoch {lease.epoch}) is no longer "
                                              f"{lease.owner}'s to renew",
                         Key=key(f"lease#{lease.home}", "-"), UpdateExpression="SET expires_at = :exp",
                         ConditionExpression="#o = :o AND epoch = :e AND expires_at > :now",
                         ExpressionAttributeNames={"#o": "owner"},
                         ExpressionAttributeValues={":exp": _f(now + ttl_s), ":o": S(lease.owner),
                                                    ":e": N(lease.epoch), ":now": _f(now)},
                         ReturnValues="ALL_NEW")
        return _lease(out["Attributes"])

    def release(self, lease: Lease, now: float) -> None:
        self._call("update_item", lost=f"{lease.home}'s lease (epoch {lease.epoch}) is no longer {lease.owner}'s",
                   Key=key(f"lease#{lease.home}", "-"), UpdateExpression="SET expires_at = :now",
                   ConditionExpression="#o = :o AND epoch = :e", ExpressionAttributeNames={"#o": "owner"},
                   ExpressionAttributeValues={":now": _f(now), ":o": S(lease.owner),
                                              ":e": N(lease.epoch)})

    def ask_back(self, home: str, region: str) -> None:
        try:
            self._call("update_item", lost="not held by another region", Key=key(f"lease#{home}", "-"),
                       UpdateExpression="SET handback_to = :r", ConditionExpression="attribute_exists(pk) AND #o <> :r",
                       ExpressionAttributeNames={"#o": "owner"}, ExpressionAttributeValues={":r": S(region)})
        except LeaseLost:
            pass  # ours already, or never taken: nothing to ask for

    def put_intent(self, intent: Intent) -> None:
        self._call("put_item", Item={
            **key(f"intent#{intent.home}", f"{intent.payment_id}#{intent.kind}"), "payment_id": S(intent.payment_id),
            "tenant_id": S(intent.tenant_id), "psp": S(intent.psp), "idempotency_key": S(intent.idempotency_key),
            "kind": S(intent.kind), "epoch": N(intent.epoch), "at": _f(intent.at)})

    def intents(self, home: str) -> list[Intent]:
        args: dict[str, Any] = {"ConsistentRead": True, "KeyConditionExpression": "pk = :pk",
                                "ExpressionAttributeValues": {":pk": S(f"intent#{home}")}}
        out: list[Intent] = []
        while True:
            page = self._call("query", **args)
            out += [Intent(i["payment_id"]["S"], i["tenant_id"]["S"], home, i["psp"]["S"], i["idempotency_key"]["S"],
                           i["kind"]["S"], int(i["epoch"]["N"]), float(i["at"]["N"])) for i in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return sorted(out, key=lambda i: i.at)
            args["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def clear_intent(self, home: str, payment_id: str) -> None:
        for kind in ("authorize", "capture", "void", "refund"):
            self._call("delete_item", Key=key(f"intent#{home}", f"{payment_id}#{kind}"))
