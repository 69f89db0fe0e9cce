"""One id from API call to webhook: correlation id, X-Ray trace id, JSON logs, spans, EMF metrics.

The stack runs with TRACE_EXPORTER=memory and METRICS_SINK=memory, and its JSON
log lines are read back from stderr: what is asserted is the output itself.
"""
from __future__ import annotations

import json
import sqlite3
import time
import uuid
from urllib.parse import quote

import pytest

from chalicelib.observability.timeline import trace_id_of
from chalicelib.stages import STAGES
from chalicelib.observability import metrics, tracing

from .conftest import card_body

SEVEN = ["validation", "risk", "routing", "authorization", "capture", "settlement", "notification"]
XRAY_ID = r"^1-[0-9a-f]{8}-[0-9a-f]{24}$"


@pytest.fixture
def stack_env():
    return {"LOG_LEVEL": "INFO", "LOG_FORMAT": "json", "TRACE_EXPORTER": "memory", "METRICS_SINK": "memory"}


@pytest.fixture
def traced(capfd, stack):
    tracing.clear_spans()
    metrics.METRICS.emitted.clear()
    capfd.readouterr()
    return stack


def json_lines(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def pay(stack, corr: str, number: str = "4242424242424242") -> str:
    r = stack.post("/v1/payments", card_body(number, reference=uuid.uuid4().hex),
                   **{"Idempotency-Key": uuid.uuid4().hex, "X-Correlation-Id": corr})
    assert r.status_code == 202, r.body
    assert r.headers["X-Correlation-Id"] == corr
    return json.loads(r.body)["id"]


def test_one_payment_carries_one_correlation_and_one_trace_id_through_every_stage(traced, capfd):
    stack, corr = traced, "corr-obs-" + uuid.uuid4().hex[:8]
    pid = pay(stack, corr)
    stack.runner.drain()
    assert stack.payment(pid)["status"] == "settled"
    stored = stack.stored(pid)
    trace_id = trace_id_of(stored.trace)
    assert trace_id and __import__("re").match(XRAY_ID, trace_id)

    # Events and Kafka headers: the same correlation id and the same X-Ray root on every record.
    records = [r for t in stack.platform.bus.topics() for r in stack.platform.bus.read_all(t) if r.key == pid]
    assert {r.topic for r in records} >= {"payments.initiated", "payments.validated", "payments.screened",
                                          "payments.routed", "payments.authorized", "payments.captured",
                                          "payments.settled"}
    for r in records:
        headers = dict(r.headers)
        assert headers["correlation_id"] == corr.encode()
        assert json.loads(r.value)["correlation_id"] == corr
        assert "trace" not in json.loads(r.value)  # the envelope is unchanged; the header carries it
        assert trace_id_of(headers[tracing.HEADER].decode()) == trace_id

    # Spans: one trace holds the API request, all seven stages, PSP calls, ledger writes and the webhook.
    spans = [s for s in tracing.finished_spans() if tracing.xray_id(s.context.trace_id) == trace_id]
    names = [s.name for s in spans]
    assert "POST /v1/payments" in names
    for stage in SEVEN:
        assert f"stage {stage}" in names, names
    assert {"psp authorize", "psp capture", "ledger.commit", "webhook"} <= set(names), names
    by_id = {s.context.span_id: s for s in spans}
    for s in spans:
        if s.name != "POST /v1/payments":
            assert s.parent is not None and s.parent.span_id in by_id, (s.name, "parent outside the trace")
    stage_spans = [s for s in spans if s.name.startswith("stage ")]
    for s in stage_spans:
        assert s.attributes["payments.correlation_id"] == corr
        assert s.attributes["payments.payment_id"] == pid
        assert s.attributes["payments.tenant_id"] == stack.tenant_id
        assert s.attributes["payments.outcome"] == "ok"
    psp = next(s for s in spans if s.name == "psp authorize")
    assert psp.attributes["payments.psp"] == "sim-a" and psp.attributes["payments.outcome"] == "approved"
    # never card data in any attribute of any span
    for s in spans:
        assert "4242424242424242" not in json.dumps(dict(s.attributes), default=str)

    # Logs: JSON lines about this payment carry its correlation id and trace id, from every stage.
    lines = [doc for doc in json_lines(capfd.readouterr().err) if doc.get("payment_id") == pid]
    assert lines, "no JSON log line names the payment"
    for doc in lines:
        assert doc["correlation_id"] == corr, doc
        assert doc["trace_id"] == trace_id, doc
        assert doc["tenant_id"] == stack.tenant_id and doc["level"] and doc["time"]
    assert {doc.get("stage") for doc in lines if doc["message"] == "record handled"} == set(SEVEN)

    # The webhook and the PSP request carried the correlation id (and the webhook the trace header).
    (url, body, headers), = [c for c in stack.poster.calls if json.loads(c[1])["data"]["payment_id"] == pid]
    assert headers["X-Correlation-Id"] == corr and trace_id_of(headers[tracing.HEADER]) == trace_id
    sim_db = stack.platform.settings.data_dir.parent / "sim.db"
    with sqlite3.connect(sim_db) as db:
        assert db.execute("SELECT correlation_id FROM charges WHERE reference=?", (pid,)).fetchone() == (corr,)


def test_metrics_are_emf_documents_per_stage_and_psp(traced):
    stack = traced
    pid = pay(stack, "corr-metrics")
    stack.runner.drain()
    assert stack.payment(pid)["status"] == "settled"
    docs = metrics.METRICS.emitted
    for d in docs:  # the shape CloudWatch needs to extract metrics from a log line
        directive = d["_aws"]["CloudWatchMetrics"][0]
        assert directive["Namespace"] == metrics.NAMESPACE and isinstance(d["_aws"]["Timestamp"], int)
        for m in directive["Metrics"]:
            assert m["Name"] in d
        for dim in directive["Dimensions"][0]:
            assert dim in d
    summary = metrics.summarize(docs)
    assert set(SEVEN) <= set(summary["stages"])
    for stage in SEVEN:
        s = summary["stages"][stage]
        assert s["records"] >= 1 and s["errors"] == 0 and s["p50_ms"] is not None and s["p99_ms"] >= s["p50_ms"]
        assert s["queue_wait_p50_ms"] is not None and s["queue_wait_p50_ms"] >= 0
    assert summary["psps"]["sim-a authorize"]["calls"] >= 1
    assert summary["psps"]["sim-a authorize"]["success_rate"] == 1.0


def test_a_dead_lettered_record_keeps_its_correlation_id_and_its_span_is_an_error(traced):
    from chalicelib.ports import OutRecord
    stack = traced
    pid = pay(stack, "corr-poison")
    stack.runner.drain()
    stack.platform.bus.publish([OutRecord("payments.initiated", pid, b"{broken",
                                          (("tenant_id", stack.tenant_id.encode()),
                                           ("correlation_id", b"corr-poison")))])
    stack.runner.drain()
    (entry,) = stack.dlq("payments.initiated")
    assert entry["correlation_id"] == "corr-poison"
    dead = [s for s in tracing.finished_spans() if s.attributes.get("payments.outcome") == "dead"]
    assert dead and dead[0].status.status_code.name == "ERROR"
    assert dead[0].attributes["payments.correlation_id"] == "corr-poison"
    summary = metrics.summarize(metrics.METRICS.emitted)
    assert summary["stages"]["validation"]["dead_lettered"] == 1


def test_a_stage_span_ends_with_the_batch_commit_of_its_record_and_carries_its_outcome(traced, monkeypatch):
    """Batched stages write a batch's commits after the records: each record's stage span stays open
    until then, ends after the commit returned and names the status written; a commit that fails
    makes the span an error (outcome retry), and the redelivered record succeeds in a new span."""
    from chalicelib.ports import ConcurrencyConflict
    stack = traced
    pid = pay(stack, "corr-held")
    real = stack.platform.store.unit_of_work.commit_many
    returned: list[int] = []
    failed_once: list[bool] = []

    def commit_many(batch):
        if not failed_once and any(c.processed and c.processed[0] == "risk" for c in batch):
            failed_once.append(True)
            return [ConcurrencyConflict("injected") for _ in batch]
        results = real(batch)
        returned.append(time.time_ns())
        return results
    monkeypatch.setattr(stack.platform.store.unit_of_work, "commit_many", commit_many)
    stack.runner.drain()
    assert stack.payment(pid)["status"] == "settled"
    spans = [s for s in tracing.finished_spans() if s.attributes.get("payments.payment_id") == pid]
    assert not [s for s in spans if s.name == "store.commit"]  # the stage span holds the commit
    validation = next(s for s in spans if s.name == "stage validation")
    assert validation.attributes["payments.status"] == "processing"
    assert validation.attributes["payments.batch_units"] >= 1
    assert validation.end_time >= min(returned)  # ended once its commit had returned
    risk = [s for s in spans if s.name == "stage risk"]
    assert [s.attributes["payments.outcome"] for s in risk] == ["retry", "ok"]
    assert risk[0].status.status_code.name == "ERROR" and "commit failed" in risk[0].status.description
    assert "payments.status" not in risk[0].attributes and risk[1].attributes["payments.status"] == "processing"
    prepare = next(s for s in spans if s.name == "authorization.prepare")  # the attempt, before the PSP call
    assert prepare.attributes["payments.status"] == "processing" and prepare.attributes["payments.batch_units"] >= 1
    psp = next(s for s in tracing.finished_spans() if s.name == "psp authorize"
               and s.context.trace_id == prepare.context.trace_id)
    assert prepare.end_time <= psp.start_time
    settlement = next(s for s in spans if s.name == "stage settlement")
    assert settlement.attributes["payments.status"] == "settled"
    ledger = [s for s in tracing.finished_spans() if s.name == "ledger.commit"
              and s.context.trace_id == settlement.context.trace_id]
    assert ledger and ledger[0].parent.span_id == settlement.context.span_id


def test_capture_requested_later_joins_the_payments_trace(traced):
    stack = traced
    r = stack.post("/v1/payments", card_body(capture="manual", reference=uuid.uuid4().hex),
                   **{"Idempotency-Key": uuid.uuid4().hex, "X-Correlation-Id": "corr-manual"})
    pid = json.loads(r.body)["id"]
    stack.runner.drain()
    trace_id = trace_id_of(stack.stored(pid).trace)
    r = stack.post(f"/v1/payments/{pid}/capture", {"amount": 1000}, **{"X-Correlation-Id": "corr-capture"})
    assert r.status_code in (200, 202), r.body
    stack.runner.drain()
    spans = tracing.finished_spans()
    update = next(s for s in spans if s.name == "payment.update")
    assert tracing.xray_id(update.context.trace_id) == trace_id  # the payment's trace...
    request = next(s for s in spans if s.name.startswith("POST /v1/payments/{payment_id}/capture"))
    assert update.links and update.links[0].context.trace_id == request.context.trace_id  # ...linked to the call
    captured = [s for s in spans if s.name == "stage capture" and s.attributes.get("payments.payment_id") == pid]
    assert captured and all(tracing.xray_id(s.context.trace_id) == trace_id for s in captured)


def test_payctl_trace_by_correlation_id_shows_seven_stages_in_order(traced, capfd):
    capsys = capfd
    from payctl import cli
    stack = traced
    first, second = pay(stack, "corr-shared"), pay(stack, "corr-shared")
    pay(stack, "corr-unrelated")
    stack.runner.drain()
    capsys.readouterr()
    assert cli.main(["trace", "--correlation-id", "corr-shared", "--json"]) == 0
    reports = json.loads(capsys.readouterr().out)
    assert sorted(r["payment_id"] for r in reports) == sorted([first, second])
    for r in reports:
        assert [s["stage"] for s in r["stages"]] == SEVEN
        assert r["trace_id"] and r["webhooks"] and r["webhooks"][0]["delivered"] is True
        assert [a["psp"] for a in r["attempts"]] == ["sim-a"]
        times = [s["first_at"] for s in r["stages"]]
        assert times == sorted(times)
        for step in r["steps"]:
            assert step["queued_ms"] >= 0 and step["in_stage_ms"] >= 0
            if step["stage"] in STAGES:
                assert step["received_at"] and step["caused_by"], step
        assert r["total_ms"] >= sum(s["in_stage_ms"] for s in r["stages"]) * 0.999
    # the human views render without error, table and tree
    assert cli.main(["trace", "--correlation-id", "corr-shared"]) == 0
    assert cli.main(["trace", first, "--tree"]) == 0
    out = capsys.readouterr().out
    assert "notification" in out and "webhook" in out
    assert cli.main(["trace", "--correlation-id", "corr-nobody", "--json"]) == 2


def test_a_card_number_in_the_url_reaches_no_span_and_no_log_line(traced, capfd):
    """The path's id is the caller's text: GET /v1/payments/<a PAN> is a 404 whose span and log
    lines carry the id masked."""
    stack = traced
    for method, path in (("get", "/v1/payments/4242424242424242"),
                         ("post", "/v1/payments/4242 4242 4242 4242/capture")):
        headers = {"Authorization": f"Bearer {stack.tenant['api_key']}", "Content-Type": "application/json"}
        r = getattr(stack.client.http, method)(quote(path), headers=headers, **({"body": "{}"} if method == "post" else {}))
        assert r.status_code == 404 and b"4242424242424242" not in r.body and b"4242 4242" not in r.body
    spans = [s for s in tracing.finished_spans() if s.kind.name == "SERVER"]
    assert len(spans) == 2
    for s in spans:
        attributes = json.dumps(dict(s.attributes))
        assert "4242424242424242" not in attributes and "4242 4242" not in attributes, attributes
        assert "[PAN ****4242]" in s.attributes["payments.payment_id"]
    out = capfd.readouterr()
    assert "4242424242424242" not in out.out + out.err and "4242 4242 4242" not in out.out + out.err
