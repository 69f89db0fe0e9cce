"""Cross-tenant probe (I5): tenant B, holding tenant A's ids, learns and changes nothing.

API: every route in app.routes, every method, with A's payment ids (in every state
reachable here), A's refund ids, A's DLQ entry ids and A's cursor -- always 404 (or
403), never a byte of A's data, the same answer as for an id nobody has, and A's
payments unchanged. Store: B's tenant id in the key finds none of A's items. Keys:
B's data key opens none of A's ciphertexts. Handlers: an event of any consumed type
naming A's payment under B's tenant goes to the DLQ without touching the payment
(extends tests/integration/test_delivery.py, which does this for one stage).
"""
from __future__ import annotations

import json
import re
import uuid

import orjson
import pytest

import app as app_module
from chalicelib import codec
from chalicelib.ports import OutRecord
from chalicelib.stages import STAGES

from ..integration.conftest import card_body, stack  # noqa: F401 - the in-process platform fixture

NOBODY = "pay_01ARZ3NDEKTSV4RRFFQ69G5FAV"
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
PROBES: dict[str, int] = {"api": 0, "store": 0, "handler": 0}


@pytest.fixture
def tenant_a(stack):
    """A's payments in several states, with refunds, a DLQ entry and a cursor."""
    settled = [stack.pay(reference=f"acme-ref-{i}", metadata={"note": "acme-private"}) for i in range(3)]
    manual = stack.pay(capture="manual", reference="acme-ref-manual")
    declined = stack.pay("4000000000000002", reference="acme-ref-declined")
    stack.runner.drain()
    r = stack.post(f"/v1/payments/{settled[0]}/refunds", {"amount": 500})
    assert r.status_code == 202, r.body
    refund_id = json.loads(r.body)["id"]
    stack.runner.drain()
    # A DLQ entry naming one of A's payments.
    first = stack.platform.bus.read_all("payments.initiated")[0]
    stack.platform.bus.publish([OutRecord("payments.initiated", first.key, b"not json",
                                          (("tenant_id", stack.tenant_id.encode()),))])
    stack.runner.drain()
    entry_ids = [e["entry_id"] for e in stack.all_dlq_entries()]
    page = json.loads(stack.get("/v1/payments?limit=1").body)
    assert entry_ids and page["next_cursor"]
    ids = [*settled, manual, declined]
    snapshot = {pid: (stack.stored(pid).version, stack.stored(pid).status) for pid in ids}
    return {"payments": ids, "refund": refund_id, "dlq": entry_ids, "cursor": page["next_cursor"],
            "snapshot": snapshot, "secrets": ["acme-ref", "acme-private", stack.tenant_id, refund_id,
                                             *ids, "1999", "4242", "424242"]}


def _send(stack, method: str, path: str, tenant, body: dict | None = None):
    headers = stack.headers(tenant, **{"Idempotency-Key": uuid.uuid4().hex})
    raw = json.dumps(body if body is not None else {})
    call = getattr(stack.client.http, method.lower())
    return call(path, headers=headers, body=raw) if method != "GET" else call(path, headers=headers)


def _without(text: str, *allowed: str) -> str:
    for a in allowed:
        text = text.replace(a, "<id>")
    return re.sub(r"corr_[0-9a-f]{32}", "<corr>", text)


def _targets(a: dict) -> list[str]:
    return [*a["payments"], a["refund"], *a["dlq"][:1]]


BODIES = {"/v1/payments/{payment_id}/capture": {"amount": 100}, "/v1/payments/{payment_id}/refunds": {"amount": 100},
          "/v1/payments/{payment_id}/cancel": {}}


def test_every_route_and_method_with_a_tenants_ids_is_404_for_another(stack, tenant_a):
    routes = app_module.app.routes
    assert "/v1/payments/{payment_id}" in routes and len(routes) >= 8
    probes = 0
    for path, entries in routes.items():
        if "{payment_id}" not in path:
            continue
        for method in METHODS:
            body = BODIES.get(path, {})
            blank = _send(stack, method, path.replace("{payment_id}", NOBODY), stack.other, body)
            for target in _targets(tenant_a):
                r = _send(stack, method, path.replace("{payment_id}", target), stack.other, body)
                probes += 1
                text = r.body.decode(errors="replace")
                if method in entries:
                    assert r.status_code in (403, 404), (method, path, target, r.status_code, text)
                else:  # not a route: refused before any tenant or id is looked at
                    assert r.status_code in (403, 404, 405), (method, path, r.status_code)
                assert r.status_code == blank.status_code, (method, path, target)
                assert _without(text, target) == _without(blank.body.decode(errors="replace"), NOBODY), \
                    (method, path, target)
                leaked = [s for s in tenant_a["secrets"] if s != target and s in _without(text, target)]
                assert not leaked, (method, path, target, leaked)
    PROBES["api"] += probes
    print(f"\ncross-tenant API probes (route x method x id): {probes}")
    for pid, (version, status) in tenant_a["snapshot"].items():
        assert (stack.stored(pid).version, stack.stored(pid).status) == (version, status)


def test_routes_without_ids_show_another_tenant_nothing(stack, tenant_a):
    """Listing, balances, a stolen cursor, and tenant ids smuggled into the query or headers."""
    a = tenant_a["payments"]
    for path in ["/v1/payments", "/v1/payments?status=settled", f"/v1/payments?cursor={tenant_a['cursor']}",
                 f"/v1/payments?tenant_id={stack.tenant_id}", "/v1/balances",
                 f"/v1/balances?tenant_id={stack.tenant_id}"]:
        for extra in ({}, {"X-Tenant-Id": stack.tenant_id, "Tenant-Id": stack.tenant_id}):
            r = stack.client.http.get(path, headers=stack.headers(stack.other, **extra))
            PROBES["api"] += 1
            assert r.status_code in (200, 400), (path, r.status_code)
            text = r.body.decode()
            assert not [s for s in tenant_a["secrets"] if s in text], (path, text)
            if r.status_code == 200 and "payments" in path:
                assert json.loads(text)["data"] == []
    # POST /v1/payments with A's idempotency key makes B a new payment; A's stays A's.
    r = stack.post("/v1/payments", card_body(), stack.other, **{"Idempotency-Key": "acme-key"})
    assert r.status_code == 202 and json.loads(r.body)["id"] not in a


def test_store_reads_with_another_tenants_id_find_nothing(stack, tenant_a):
    store, keys = stack.platform.store, stack.platform.keys
    a, b = stack.tenant_id, stack.other["tenant_id"]
    for pid in tenant_a["payments"]:
        payment = store.payments.get_payment(a, pid)
        token = payment.payment_method["card"]["token"]
        assert store.secrets.get_secret(a, token) is not None
        checks = [store.payments.get_payment(b, pid), store.payments.timeline(b, pid), store.secrets.get_secret(b, token),
                  store.ledger.postings_for(b, pid)]
        PROBES["store"] += len(checks)
        assert checks == [None, [], None, []], pid
        with pytest.raises(Exception) as info:  # B's data key cannot open A's ciphertext
            keys.decrypt(b, store.secrets.get_secret(a, token))
        assert "4242" not in str(info.value)
    assert store.payments.list_payments(b, None, 100, None) == ([], None)
    assert store.ledger.balances(b) == [] and store.ledger.balances(a) != []
    assert store.payments.count_recent_payments(b, "c1", "2000-01-01T00:00:00Z") == 0
    PROBES["store"] += 3


def test_every_stage_refuses_an_event_naming_another_tenants_payment(stack, tenant_a):
    """For each stage and each type it consumes: A's genuine event, re-labelled as B's -> DLQ, nothing changes."""
    b = stack.other["tenant_id"]
    genuine: dict[str, dict] = {}
    for topic in stack.platform.bus.topics():
        for r in stack.platform.bus.read_all(topic):
            try:
                e = orjson.loads(r.value)
            except orjson.JSONDecodeError:
                continue
            if isinstance(e, dict) and e.get("tenant_id") == stack.tenant_id and "event_id" in e:
                genuine.setdefault(e["type"], e)
    before_dlq = {e["entry_id"] for e in stack.all_dlq_entries()}
    sent = []
    for name, stage in STAGES.items():
        for etype in stage.CONSUMES:
            if etype not in genuine:
                continue
            stolen = {**genuine[etype], "event_id": f"evt_{uuid.uuid4().hex[:26].upper()}", "tenant_id": b}
            event = codec.decode(orjson.dumps(stolen))
            rec = codec.to_record(event)
            stack.platform.bus.publish([OutRecord(rec.topic, rec.key, rec.value, rec.headers)])
            sent.append((name, etype, stolen["payment_id"]))
    assert len({s[0] for s in sent}) >= 6, sent  # most stages had a genuine event to steal
    snapshot = {pid: (stack.stored(pid).version, len(stack.platform.store.payments.timeline(stack.tenant_id, pid)))
                for pid in tenant_a["payments"]}
    stack.runner.drain()
    entries = [e for e in stack.all_dlq_entries() if e["entry_id"] not in before_dlq]
    PROBES["handler"] += len(sent)
    assert len(entries) == len(sent), (sent, entries)
    assert all(e["tenant_id"] == b and "not found for tenant" in e["error"] for e in entries), \
        [(e["stage"], e["tenant_id"], e["error"][-60:]) for e in entries if "not found for tenant" not in e["error"] or e["tenant_id"] != b]
    for pid, (version, steps) in snapshot.items():
        assert (stack.stored(pid).version, len(stack.platform.store.payments.timeline(stack.tenant_id, pid))) == \
            (version, steps), pid
    assert stack.platform.store.payments.list_payments(b, None, 100, None) == ([], None)

