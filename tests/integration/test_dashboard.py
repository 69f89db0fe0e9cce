"""The dashboard's numbers (laptop/dashboard/metrics.py) and its server, on the in-process stack."""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

from laptop.dashboard import metrics, server
from chalicelib.ports import OutRecord
from chalicelib.stages import FLOW


@pytest.fixture
def dashboard(stack):
    srv = server.serve(stack.platform, "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def get(url: str) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert (metrics.percentile(values, 50), metrics.percentile(values, 95), metrics.percentile(values, 99)) == (50, 95, 99)
    assert metrics.percentile([], 50) is None and metrics.percentile([7.0], 99) == 7.0


def test_snapshot_shows_every_stage_psp_report_and_payment(stack):
    ids = [stack.pay() for _ in range(4)] + [stack.pay("4000000000000002")]
    other = stack.post("/v1/payments", {"amount": 700, "currency": "USD", "payment_method": {"type": "card", "card": {
        "number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}}, "capture": "automatic",
        "reference": "o-2", "customer": {"id": "c9", "country": "DE"}}, stack.other, **{"Idempotency-Key": "k-other"})
    assert other.status_code == 202
    stack.runner.drain()
    m = metrics.snapshot(stack.platform)
    assert m["sample"]["payments"] == 6  # across both tenants
    assert sum(m["throughput"]["accepted"]) == 6 and sum(m["throughput"]["settled"]) == 5
    assert sum(m["throughput"]["failed"]) == 1
    stages = {s["stage"]: s for s in m["stages"]}
    for name in FLOW:
        s = stages[name]
        assert s["steps"] >= 5 or name in ("capture", "settlement"), s
        lat, wait = s["latency_ms"], s["wait_ms"]
        assert 0 <= lat["p50"] <= lat["p95"] <= lat["p99"], s
        assert 0 <= wait["p50"] <= wait["p95"] <= wait["p99"], s
        assert s["queue_lag"] == 0  # drained: every stage's group has committed everything
        assert s["per_s"] == round(s["steps"] / 120, 3)  # all of them inside the 2-minute window
    assert stages["authorization"]["failed"] == 1 and stages["authorization"]["errors"] == 1
    psps = {p["psp"]: p for p in m["psps"]}
    assert psps["sim-a"]["breaker"] == "closed" and psps["sim-a"]["attempts"] == 6
    assert psps["sim-a"]["success_rate"] == round(5 / 6, 4) and psps["sim-b"]["attempts"] == 0
    assert m["reports"]["all"]["payments"]["count"] == 6 and m["reports"]["all"]["payments"]["declined"] == 1
    assert {t["tenant"]: t["payments"]["count"] for t in m["reports"]["tenants"]} == {"acme": 5, "globex": 1}
    recent = {r["payment_id"]: r for r in m["recent"]}
    assert set(ids) <= set(recent) and recent[ids[-1]]["status"] == "declined"
    assert m["dlq"]["depth"] == 0


def test_dlq_entries_are_listed_with_their_record_and_no_card_number(stack):
    poison = b'{"note": "card 4242424242424242", "broken": '
    stack.platform.bus.publish([OutRecord("payments.initiated", "pay_poison", poison,
                                          (("tenant_id", stack.tenant_id.encode()),))])
    stack.runner.drain()
    m = metrics.snapshot(stack.platform)
    assert m["dlq"]["depth"] == 1
    (entry,) = m["dlq"]["entries"]
    assert (entry["stage"], entry["key"], entry["topic"]) == ("validation", "pay_poison", "payments.initiated")
    assert entry["error"] and "4242424242424242" not in json.dumps(m)
    assert "broken" in entry["record"]  # not JSON: shown as text, masked
    assert {s["stage"]: s["dlq"] for s in m["stages"]}["validation"] == 1


def test_server_serves_page_metrics_and_timelines(stack, dashboard):
    pid = stack.pay()
    stack.runner.drain()
    status, headers, page = get(dashboard + "/")
    assert status == 200 and b'id="throughput-chart"' in page and b"<script src=\"/dashboard.js\">" in page
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert get(dashboard + "/dashboard.js")[0] == 200 and get(dashboard + "/dashboard.css")[0] == 200
    status, _, body = get(dashboard + "/api/metrics")
    assert status == 200 and json.loads(body)["recent"][0]["payment_id"] == pid
    status, _, body = get(f"{dashboard}/api/payments/{stack.tenant_id}/{pid}")
    trace = json.loads(body)
    assert status == 200 and trace["status"] == "settled" and trace["attempts"][0]["psp"] == "sim-a"
    assert list(dict.fromkeys(s["stage"] for s in trace["steps"])) == list(FLOW)  # all seven, in order
    # Another tenant's id for the payment finds nothing; unknown paths are 404 JSON, not a trace.
    assert get(f"{dashboard}/api/payments/{stack.other['tenant_id']}/{pid}")[0] == 404
    status, _, body = get(dashboard + "/nope")
    assert status == 404 and json.loads(body)["error"]
