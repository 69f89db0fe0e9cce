"""End to end over HTTP against the real local stack: API, stage worker and PSP simulator as processes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
import uuid

import pytest

from ..runs import mark_run

pytestmark = pytest.mark.e2e
STAGES = ["validation", "risk", "routing", "authorization", "capture", "settlement", "notification"]


def test_health_is_public(local_stack):
    with urllib.request.urlopen(local_stack.base + "/health", timeout=5) as r:
        assert json.loads(r.read())["status"] == "ok"


def test_happy_path_reaches_settled_through_all_seven_stages(local_stack):
    started = time.monotonic()
    status, headers, body = local_stack.pay("4242424242424242")
    assert status == 202, body
    payment_id = json.loads(body)["id"]
    assert headers["Location"] == f"/v1/payments/{payment_id}"
    doc = local_stack.wait_status(payment_id)
    elapsed_ms = (time.monotonic() - started) * 1000
    print(f"\nPOST -> settled over HTTP: {elapsed_ms:.0f} ms")
    assert doc["status"] == "settled"
    deadline = time.monotonic() + 15  # the webhook goes out just after settlement
    while "notification" not in {t["stage"] for t in doc["timeline"]} and time.monotonic() < deadline:
        time.sleep(0.05)
        doc = json.loads(local_stack.call("GET", f"/v1/payments/{payment_id}")[2])
    assert [s for s in STAGES if s in {t["stage"] for t in doc["timeline"]}] == STAGES
    trace = local_stack.payctl("trace", payment_id)
    assert [s["stage"] for s in trace["steps"]][0] == "validation"
    assert all(s["since_previous_ms"] >= 0 for s in trace["steps"])


def test_hard_decline(local_stack):
    status, _, body = local_stack.pay("4000000000000002")
    assert status == 202
    doc = local_stack.wait_status(json.loads(body)["id"])
    assert doc["status"] == "declined"
    assert doc["failure"]["code"] == "card_declined"
    assert len(doc["attempts"]) == 1


def test_soft_decline_fails_over_to_second_psp(local_stack):
    status, _, body = local_stack.pay("4000000000000119")
    doc = local_stack.wait_status(json.loads(body)["id"])
    assert doc["status"] == "settled"
    assert [(a["psp"], a["status"]) for a in doc["attempts"]] == [("sim-a", "failed"), ("sim-b", "captured")]


def test_idempotent_replay_and_mismatch(local_stack):
    first = local_stack.pay("4242424242424242", idem="e2e-replay")
    again = local_stack.pay("4242424242424242", idem="e2e-replay")
    assert first[0] == again[0] == 202
    assert first[2] == again[2]
    assert again[1]["Location"] == first[1]["Location"]
    status, headers, body = local_stack.pay("4242424242424242", idem="e2e-replay", amount=2999)
    assert status == 409
    assert headers["Content-Type"] == "application/problem+json"
    assert "different request body" in json.loads(body)["detail"]


@pytest.mark.parametrize("raw, field", [
    (b"{not json", None),
    (json.dumps({"amount": "12", "currency": "EUR", "payment_method": {"type": "card"}}).encode(), "amount"),
    (json.dumps({"amount": 100, "currency": "EUR"}).encode(), None),
])
def test_bad_bodies_get_400_problems(local_stack, raw, field):
    status, headers, body = local_stack.call("POST", "/v1/payments", raw, headers={"Idempotency-Key": "bad"})
    problem = json.loads(body)
    assert status == 400, problem
    assert headers["Content-Type"] == "application/problem+json"
    assert problem["status"] == 400 and problem["detail"]
    if field:
        assert field in problem["invalid_fields"]
    assert "Traceback" not in body.decode()


def test_missing_key_is_401(local_stack):
    status, headers, body = local_stack.call("GET", "/v1/payments", key="pk_test_nope")
    assert status == 401
    assert headers["Content-Type"] == "application/problem+json"


def test_tenant_b_cannot_see_tenant_a_payment(local_stack):
    _, _, body = local_stack.pay("4242424242424242")
    payment_id = json.loads(body)["id"]
    other = local_stack.payctl("tenant", "create", "tenant-b")
    status, _, body = local_stack.call("GET", f"/v1/payments/{payment_id}", key=other["api_key"])
    assert status == 404
    assert payment_id in json.loads(body)["detail"] and b"4242" not in body
    status, _, body = local_stack.call("GET", "/v1/payments", key=other["api_key"])
    assert status == 200 and json.loads(body)["data"] == []


def test_payctl_demo_reports_outcomes(local_stack):
    report = local_stack.payctl("demo", "--count", "20", "--timeout", "90")
    mark_run(local_stack.data, "demo")  # the PAN scan (tests/security) then knows the demo's data is here
    assert report["accepted"] == 20
    assert sum(report["outcomes"].values()) == 20
    assert report["outcomes"].get("still processing", 0) == 0
    assert report["outcomes"]["settled"] >= 15
    assert local_stack.payctl("ledger", "check")["balanced"] is True
    assert local_stack.payctl("dlq", "list") == []



def test_payctl_demo_at_a_fixed_rate_reports_throughput_and_percentiles(local_stack):
    report = local_stack.payctl("demo", "--rate", "10", "--duration", "1", "--timeout", "90")
    assert report["mode"] == "rate" and report["rate"] == 10 and report["count"] == 10
    assert report["sent"] == report["accepted"] == report["final"] == 10 and report["still_processing"] == 0
    lat = report["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert report["payments_per_s"] > 0 and report["end_to_end_s"] > 0
    assert 0.5 <= report["send_s"] <= 30  # paced: ten sends spread over about a second

def test_one_id_follows_a_payment_across_processes_in_traces_logs_and_metrics(local_stack):
    """The real stack's own files: spans in traces.jsonl, JSON lines in logs/, EMF in metrics.emf.jsonl."""
    corr = f"corr-e2e-{uuid.uuid4().hex}"  # not a bare digit run: 1 in 10 is Luhn-valid
    status, headers, body = local_stack.call("POST", "/v1/payments", {
        "amount": 1234, "currency": "EUR", "capture": "automatic", "reference": corr,
        "payment_method": {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12,
                                                    "exp_year": 2030, "cvc": "123"}}},
        headers={"Idempotency-Key": corr, "X-Correlation-Id": corr})
    assert status == 202 and headers["X-Correlation-Id"] == corr, body
    payment_id = json.loads(body)["id"]
    assert local_stack.wait_status(payment_id)["status"] == "settled"
    (report,) = local_stack.payctl("trace", "--correlation-id", corr)
    assert report["payment_id"] == payment_id and report["trace_id"]
    deadline = time.monotonic() + 20
    while True:  # spans are exported in batches (every 0.5 s) by each process
        spans = [json.loads(line) for line in (local_stack.data / "traces.jsonl").read_text().splitlines()
                 if report["trace_id"] in line]
        names = {s["name"] for s in spans}
        if {f"stage {s}" for s in STAGES} | {"POST /v1/payments", "webhook"} <= names or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert {f"stage {s}" for s in STAGES} | {"POST /v1/payments", "psp authorize", "webhook"} <= names, names
    logged = [json.loads(line) for f in (local_stack.data / "logs").glob("*.log")
              for line in f.read_text().splitlines() if line.startswith("{") and payment_id in line]
    assert {d["stage"] for d in logged if d.get("message") == "record handled"} == set(STAGES)
    assert {d["correlation_id"] for d in logged} == {corr}
    assert {d["trace_id"] for d in logged if "trace_id" in d} == {report["trace_id"]}
    m = local_stack.payctl("metrics")
    assert set(STAGES) <= set(m["stages"]) and m["health"]["dlq_depth"] >= 0


def test_the_running_stack_says_where_it_is_for_payctl(local_stack):
    doc = json.loads((local_stack.data / "stack.json").read_text())
    assert doc["pid"] == local_stack.proc.pid and doc["env"]["PLATFORM_MODE"] == "embedded"
    assert doc["env"]["PORT"] == local_stack.env["PORT"]


def test_ctrl_c_stops_everything(local_stack):
    children = subprocess.run(["pgrep", "-P", str(local_stack.proc.pid)], capture_output=True, text=True)
    pids = [int(p) for p in children.stdout.split()]
    assert len(pids) == 4, "expected simulator, worker, API and dashboard processes"
    local_stack.proc.send_signal(signal.SIGINT)
    assert local_stack.proc.wait(30) == 0
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read().lower()
    with pytest.raises(OSError):
        urllib.request.urlopen(local_stack.base + "/health", timeout=2)
    assert not (local_stack.data / "stack.json").exists()  # payctl no longer follows a stopped stack


def test_a_second_ctrl_c_stops_at_once_quietly_and_leaves_nothing_running(runs_root):
    from ..stack import start_local
    stack = start_local(runs_root / "double-ctrl-c")
    children = [int(p) for p in subprocess.run(["pgrep", "-P", str(stack.proc.pid)], capture_output=True,
                                                 text=True).stdout.split()]
    stack.proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    stack.proc.send_signal(signal.SIGINT)  # while the first stop is under way
    assert stack.proc.wait(15) in (0, 130)
    time.sleep(0.5)  # the stack's output thread drains the pipe
    out = "".join(stack.output)
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out[-2000:]
    for pid in children:
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read().lower()
