"""aws-local end to end in one process: API -> DynamoDB (+ stream) -> relay -> Tansu -> stages -> settled."""
from __future__ import annotations

import json
import uuid

from chalicelib.ports import OutRecord

from .conftest import card_body

SEVEN_STAGE_ACTIONS = ["validate", "approve_risk", "route", "start_attempt", "authorize", "capture", "settle"]


def test_payments_reach_settled_through_every_stage(aws_stack):
    s = aws_stack
    tid = s.tenant["tenant_id"]
    created = []
    for _ in range(3):
        r = s.post("/v1/payments", card_body(), **{"Idempotency-Key": uuid.uuid4().hex})
        assert r.status_code == 202, r.body
        created.append(json.loads(r.body)["id"])

    s.drive(lambda: all(s.platform.store.payments.get_payment(tid, p).status == "settled" for p in created))

    for pid in created:
        actions = [t["action"] for t in s.platform.store.payments.timeline(tid, pid)]
        assert actions[:7] == SEVEN_STAGE_ACTIONS, actions
        assert json.loads(s.get(f"/v1/payments/{pid}").body)["status"] == "settled"
    assert all(t["sum"] == 0 for t in s.platform.store.ledger.ledger_totals())
    listed = json.loads(s.get("/v1/payments?status=settled&limit=100").body)["data"]
    assert set(created) <= {p["id"] for p in listed}
    # the stream relay published and then deleted every outbox record
    s.drive(lambda: s.raw_store.outbox.pending_outbox(100) == [], timeout_s=10)
    # the reporting consumer on the same stream counted each payment once (the tenant is shared
    # with the other tests of this package, so at least these three)
    def report() -> dict:
        return json.loads(s.get("/v1/reports/summary").body)
    s.drive(lambda: report()["payments"]["settled"] >= 3, timeout_s=20)
    r = report()
    assert r["payments"]["count"] >= r["payments"]["settled"] >= 3 and r["approval_rate"] == 1.0
    assert [c["currency"] for c in r["currencies"]] == ["EUR"] and r["psps"][0]["psp"] == "sim-a"


def test_idempotent_replay_returns_the_first_response(aws_stack):
    s = aws_stack
    body = card_body()
    key = uuid.uuid4().hex
    first = s.post("/v1/payments", body, **{"Idempotency-Key": key})
    assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers
    again = s.post("/v1/payments", body, **{"Idempotency-Key": key})
    assert again.status_code == 202 and again.body == first.body
    assert again.headers["Idempotent-Replayed"] == "true"
    other = s.post("/v1/payments", card_body(amount=1001), **{"Idempotency-Key": key})
    assert other.status_code == 409
    pid = json.loads(first.body)["id"]
    s.drive(lambda: s.platform.store.payments.get_payment(s.tenant["tenant_id"], pid).status == "settled")
    late = s.post("/v1/payments", body, **{"Idempotency-Key": key})
    assert late.body == first.body and late.headers["Idempotent-Replayed"] == "true"


def test_poison_record_lands_in_the_dlq_naming_it(aws_stack):
    s = aws_stack
    key = f"pay_poison_{uuid.uuid4().hex[:8]}"
    s.platform.bus.publish([OutRecord("payments.initiated", key, b"{not json",
                                      (("tenant_id", s.tenant["tenant_id"].encode()),))])

    def dead() -> list[dict]:
        return [json.loads(r.value) for r in s.platform.bus.read_all("payments.initiated.dlq")
                if r.key == key]
    s.drive(lambda: bool(dead()), timeout_s=30)
    (entry,) = dead()
    assert entry["stage"] == "validation" and entry["topic"] == "payments.initiated"
    assert "JSON" in entry["error"] and entry["tenant_id"] == s.tenant["tenant_id"]


def test_dashboard_metrics_read_the_aws_local_adapters(aws_stack):
    from laptop.dashboard import metrics
    s = aws_stack
    tid = s.tenant["tenant_id"]
    r = s.post("/v1/payments", card_body(), **{"Idempotency-Key": uuid.uuid4().hex})
    pid = json.loads(r.body)["id"]
    s.drive(lambda: s.platform.store.payments.get_payment(tid, pid).status == "settled")
    m = metrics.snapshot(s.platform)
    assert m["mode"] == "aws-local" and pid in {p["payment_id"] for p in m["recent"]}
    stages = {x["stage"]: x for x in m["stages"]}
    assert stages["authorization"]["steps"] >= 2 and stages["authorization"]["latency_ms"]["p50"] >= 0
    assert all(x["queue_lag"] is None for x in m["stages"])  # Kafka offsets are not read here: shown as unknown
    assert {p["psp"] for p in m["psps"]} >= {"sim-a", "sim-b"}
    assert metrics.payment_trace(s.platform, tid, pid)["status"] == "settled"
