"""Real-time reporting: the change-feed consumer's per-tenant aggregates and GET /v1/reports/summary."""
from __future__ import annotations

import json

from chalicelib.services import reporting
from chalicelib.schemas import schemas_dir

from .conftest import body_of


def summary(stack, tenant=None) -> dict:
    r = stack.get("/v1/reports/summary", tenant)
    assert r.status_code == 200, r.body
    return body_of(r)


def test_summary_counts_volume_approvals_currencies_and_psp_outcomes(stack):
    stack.pay()                                   # sim-a approves
    stack.pay(amount=500, currency="USD")         # another currency
    stack.pay("4000000000000002")                 # hard decline at sim-a
    stack.pay("4000000000000119")                 # sim-a soft-declines, sim-b approves
    stack.runner.drain()
    s = summary(stack)
    assert s["payments"] == {"count": 4, "authorized": 3, "declined": 1, "failed": 0, "requires_review": 0,
                             "cancelled": 0, "captured": 3, "settled": 3, "refunds": 0}
    assert s["approval_rate"] == 0.75
    eur, usd = s["currencies"]
    assert eur == {"currency": "EUR", "count": 3, "amount": 3 * 1999, "authorized_amount": 2 * 1999,
                   "captured_amount": 2 * 1999, "settled_amount": 2 * 1999, "refunded_amount": 0}
    assert (usd["currency"], usd["count"], usd["amount"], usd["settled_amount"]) == ("USD", 1, 500, 500)
    psps = {p["psp"]: p for p in s["psps"]}
    assert (psps["sim-a"]["attempts"], psps["sim-a"]["authorized"], psps["sim-a"]["declined"]) == (4, 2, 1)
    assert psps["sim-a"]["attempts"] - psps["sim-a"]["authorized"] - psps["sim-a"]["declined"] == 1  # the soft one
    assert (psps["sim-b"]["attempts"], psps["sim-b"]["authorized"]) == (1, 1)
    assert psps["sim-b"]["success_rate"] == 1.0 and psps["sim-a"]["avg_latency_ms"] >= 0
    # The other tenant sees only its own (empty) report.
    assert summary(stack, stack.other)["payments"]["count"] == 0 and summary(stack, stack.other)["psps"] == []


def test_redelivered_changes_are_counted_once(stack):
    store = stack.platform.store
    store.feed.register("replay-probe")  # a second reader: the feed keeps every change for it
    for _ in range(3):
        stack.pay()
    stack.runner.drain()
    before = summary(stack)
    # Redeliver every change the feed ever held (as a stream retry or a crash before the position moved).
    events = [r.event for r in store.feed.read("replay-probe", 10_000)]
    assert len(events) >= 3 * 7
    assert reporting.report_events(events, store) == 0
    assert reporting.report_events(events[::-1], store) == 0
    assert summary(stack) == before and before["payments"]["settled"] == 3


def test_crash_before_the_feed_position_moves_counts_nothing_twice(stack):
    stack.pay()
    store = stack.platform.store
    def crash(*_):
        raise RuntimeError("crash")
    store.feed.advance = crash  # the counts commit, then the process dies before the position moves
    try:
        stack.runner.drain()
    except RuntimeError:
        pass
    del store.feed.advance
    assert store.reports.report_counters(stack.tenant_id)["payments"] == 1
    stack.restart()
    stack.runner.drain()
    s = summary(stack)
    assert (s["payments"]["count"], s["payments"]["settled"]) == (1, 1)
    assert store.feed.read(reporting.CONSUMER, 10) == []


def test_the_feed_keeps_changes_until_the_reporter_read_them(stack):
    stack.pay()
    store = stack.platform.store
    stack.runner.relay_step()  # published, but the reporter has not read it yet
    assert store.outbox.pending_outbox(10) == [] and len(store.feed.read(reporting.CONSUMER, 10)) == 1
    stack.runner.report_step()
    assert store.feed.read(reporting.CONSUMER, 10) == []
    (n,) = store.unit_of_work.db.conn().execute("SELECT COUNT(*) FROM outbox").fetchone()
    assert n == 0  # published and reported: pruned


def test_summary_matches_its_published_schema(stack):
    import fastjsonschema
    stack.pay()
    stack.pay("4000000000000002")
    stack.runner.drain()
    schema = json.loads((schemas_dir() / "api" / "report_summary.v1.json").read_text())
    check = fastjsonschema.compile(schema)
    check(summary(stack))
    for example in schema["examples"]:
        check(example)
    doc = json.loads((schemas_dir() / "openapi.json").read_text())
    published = {k: v for k, v in schema.items() if k not in ("$schema", "$id", "title", "examples")}
    assert doc["components"]["schemas"]["ReportSummary"] == published
