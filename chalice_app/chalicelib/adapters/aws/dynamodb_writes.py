"""Changes -> the items of one TransactWriteItems, each with the port error its condition means."""
from __future__ import annotations

from typing import Any

import orjson

from ...audit.rows import rows_for
from ...codec import payment_json
from ...config import TTL_ATTRIBUTE
from ...ports import AlreadyExists, AlreadyProcessed, Changes, ConcurrencyConflict, IdempotencyRecord, Posting
from . import dynamodb_layout as L
from .dynamodb_layout import N as _n
from .dynamodb_layout import S as _s

MAX_ITEMS = 100  # DynamoDB's limit for one transaction


class UnitOfWork:
    def __init__(self, table: str, ids: L.OutboxIds, region: str):
        self.table, self.ids, self.region = table, ids, region
        self.items: list[dict[str, Any]] = []
        self.on_fail: list[type[Exception] | None] = []  # what a failed condition of items[i] means
        self.labels: list[str] = []

    def _add(self, op: str, body: dict[str, Any], on_fail: type[Exception] | None, label: str) -> None:
        if len(self.items) >= MAX_ITEMS:
            raise ValueError(f"one commit may write at most {MAX_ITEMS} items")
        self.items.append({op: {"TableName": self.table, **body}})
        self.on_fail.append(on_fail)
        self.labels.append(label)

    def put(self, item: dict[str, Any], on_fail: type[Exception] | None = None, label: str = "",
            condition: str | None = None, values: dict[str, Any] | None = None,
            names: dict[str, str] | None = None) -> None:
        body: dict[str, Any] = {"Item": item}
        if condition:
            body["ConditionExpression"] = condition
        if values:
            body["ExpressionAttributeValues"] = values
        if names:
            body["ExpressionAttributeNames"] = names
        self._add("Put", body, on_fail, label)

    # -- the parts of a unit of work -----------------------------------------------------
    def add_changes(self, c: Changes) -> None:
        if c.processed:
            consumer, event_id = c.processed
            self.put({"pk": _s(f"_proc#{consumer}#{event_id}"), "sk": _s("-")}, AlreadyProcessed,
                     f"{consumer} already processed {event_id}", "attribute_not_exists(pk)")
        if c.payment is not None:
            audit_rows = rows_for(c)  # before add_payment: it reads the pending timeline
            self.add_payment(c.payment, c.expected_version, c.payment_body)
            for tenant_id, source, body in audit_rows:
                aid = self.ids.next()
                self.put({**L.audit_queue_key(self.region, aid), "kind": _s(L.AUDIT_KIND), "id": _n(aid),
                          "origin": _s(self.region),
                          "tenant_id": _s(tenant_id), "source": _s(source), "body": _s(orjson.dumps(body).decode())},
                         ConcurrencyConflict, f"audit row id {aid} taken", "attribute_not_exists(pk)")
        for event in c.events:
            oid = self.ids.next()
            self.put({**L.outbox_key(self.region, oid), "kind": _s(L.OUTBOX_KIND), "id": _n(oid),
                      "origin": _s(self.region),
                      "tenant_id": _s(event.tenant_id), "payment_id": _s(event.payment_id),
                      "event": _s(orjson.dumps(event.stored()).decode())},
                     ConcurrencyConflict, f"outbox id {oid} taken", "attribute_not_exists(pk)")
        self.add_postings(c.postings)
        if c.idempotency:
            self.add_idempotency(c.idempotency)
        latest = {(r.tenant_id, r.payment_id): r for r in c.reminders}  # one write per item in a transaction
        for (tenant_id, payment_id), r in latest.items():
            # The payment's reminder item is the truth; the due-time index entry is only a hint
            # that due_reminders() checks against it (and drops when stale), so moving or clearing
            # a reminder never needs to know the old due time.
            key = {"pk": _s(L.payment_pk(tenant_id, payment_id)), "sk": _s("reminder")}
            if r.due_at is None:
                self._add("Delete", {"Key": key}, None, "reminder")
            else:
                attrs = {"tenant_id": _s(tenant_id), "payment_id": _s(payment_id), "due_at": _s(r.due_at)}
                self.put({**key, **attrs})
                self.put({"pk": _s(L.reminders_pk(self.region, tenant_id, payment_id)),
                          "sk": _s(f"{r.due_at}#{tenant_id}#{payment_id}"), **attrs})
        for tenant_id, token, ciphertext in c.secrets:
            self.put({"pk": _s(f"{tenant_id}#vault#{token}"), "sk": _s("secret"), "ciphertext": {"B": ciphertext}},
                     AlreadyExists, f"vault token {token} exists", "attribute_not_exists(pk)")

    def add_payment(self, p: Any, expected: int | None, body: bytes | None = None) -> None:
        version = (expected or 0) + 1
        pk = L.payment_pk(p.tenant_id, p.payment_id)
        item = {"pk": _s(pk), "sk": _s("payment"), "version": _n(version), "status": _s(p.status),
                "gsi1pk": _s(L.status_gsi(p.tenant_id, p.status)), "gsi1sk": _s(p.payment_id),
                "origin": _s(self.region),
                "body": _s((body or payment_json(p, version)).decode())}
        if expected is None:
            self.put(item, AlreadyExists, f"payment {p.payment_id} exists", "attribute_not_exists(pk)")
            self.put({"pk": _s(pk), "sk": _s("list"), "gsi1pk": _s(L.status_gsi(p.tenant_id, None)),
                      "gsi1sk": _s(p.payment_id)})
            customer = (p.customer or {}).get("id")
            if customer:
                self.put({"pk": _s(f"{p.tenant_id}#cus#{customer}"), "sk": _s(f"{p.created_at}#{p.payment_id}")})
            self.put({"pk": _s(L.correlation_pk(p.tenant_id, p.correlation_id)), "sk": _s(p.payment_id)})
        else:
            self.put(item, ConcurrencyConflict, f"payment {p.payment_id} changed since version {expected}",
                     "version = :v", {":v": _n(expected)})
        for i, t in enumerate(p.pending_timeline):
            entry = {"at": t.at, "action": t.action, "from": t.from_state, "to": t.to_state, "stage": t.stage,
                     "detail": t.detail}
            self.put({"pk": _s(pk), "sk": _s(f"tl#{version:08d}#{i:04d}"), "entry": _s(orjson.dumps(entry).decode())})

    def add_postings(self, postings: list[Posting]) -> None:
        balances: dict[tuple[str, str, str], int] = {}
        txns: dict[tuple[str, str], list[int]] = {}
        for x in postings:
            pid = self.ids.next()  # time-ordered: postings_for reads them back in commit order
            doc = {"txn_id": x.txn_id, "account": x.account, "currency": x.currency, "amount": x.amount,
                   "batch": x.batch, "at": x.at}
            self.put({"pk": _s(L.payment_pk(x.tenant_id, x.payment_id)), "sk": _s(f"posting#{pid:020d}#{self.region}"),
                      "tenant_id": _s(x.tenant_id), "posting": _s(orjson.dumps(doc).decode())})
            k = (x.tenant_id, x.account, x.currency)
            balances[k] = balances.get(k, 0) + x.amount
            sums = txns.setdefault((x.txn_id, x.currency), [0, 0])
            sums[0] += x.amount
            sums[1] += 1
        for (tenant_id, account, currency), amount in balances.items():
            self._add("Update", {"Key": {"pk": _s(f"{tenant_id}#balance"),
                                         "sk": _s(f"{account}#{currency}#{self.region}")},
                                 "UpdateExpression": "ADD balance :a SET account = :acc, currency = :cur, tenant_id = :t",
                                 "ExpressionAttributeValues": {":a": _n(amount), ":acc": _s(account),
                                                               ":cur": _s(currency), ":t": _s(tenant_id)}},
                      None, "balance")
        for (txn_id, currency), (total, legs) in txns.items():
            self._add("Update", {"Key": {"pk": _s(L.ledger_pk(txn_id)), "sk": _s(f"{txn_id}#{currency}#{self.region}")},
                                 "UpdateExpression": "ADD #t :t, legs :n SET txn_id = :id, currency = :cur",
                                 "ExpressionAttributeNames": {"#t": "total"},
                                 "ExpressionAttributeValues": {":t": _n(total), ":n": _n(legs), ":id": _s(txn_id),
                                                               ":cur": _s(currency)}}, None, "ledger")

    def add_idempotency(self, r: IdempotencyRecord) -> None:
        # Replaces our own in-flight claim (same request hash) or an expired record;
        # a live record of another request is a conflict.
        body = self.idempotency_put(self.table, r)
        self.put(body["Item"], AlreadyExists, f"idempotency key {r.key} is live",
                 "attribute_not_exists(pk) OR #exp <= :c OR (#st = :inflight AND (request_hash = :h OR"
                 " locked_until <= :c))",
                 {":c": _n(r.created_at), ":inflight": _s("in_flight"), ":h": _s(r.request_hash)},
                 {"#exp": TTL_ATTRIBUTE, "#st": "state"})

    @staticmethod
    def idempotency_put(table: str, r: IdempotencyRecord) -> dict[str, Any]:
        return {"TableName": table, "Item": {
            "pk": _s(f"{r.tenant_id}#idem#{r.key}"), "sk": _s("idem"), "tenant_id": _s(r.tenant_id),
            "key": _s(r.key), "request_hash": _s(r.request_hash), "status_code": _n(r.status_code),
            "response": {"B": bytes(r.response)}, "headers": _s(orjson.dumps(r.headers).decode()),
            TTL_ATTRIBUTE: _n(r.expires_at), "created_at": _n(r.created_at), "state": _s(r.state),
            "locked_until": _n(r.locked_until)}}
