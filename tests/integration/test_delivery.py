"""Delivery semantics: redelivery, poison records, retries and DLQs, the outbox relay.

The runner plays Lambda's MSK event source mapping; these tests capture the
exact batches it hands the app.py handlers, feed them again, publish records
straight onto topics, make PSPs and merchants misbehave, and "crash" the
process between steps. Every check is on stored state, the bus, the DLQ
entries, or the simulator's books.
"""
from __future__ import annotations

import base64
import copy
import json
import threading
import time
import uuid
from collections import Counter
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib import codec
from chalicelib.adapters.sqlite.bus import partition_for
from chalicelib.domain.psp import Outcome, PspResult
from chalicelib.ports import OutRecord
from chalicelib.handlers import dlq as dlq_mod
from chalicelib.handlers.msk import iter_records, parse_item_identifier
from chalicelib.handlers.relay import relay_once
from chalicelib.stages import STAGES

from ..fakes import RecordingPoster
from .conftest import PSPS, assert_ledger_balanced, assert_timeline_chained

TIMEOUT_CHARGED = "4000000000000077"
SOFT_DECLINE_FIRST_PSP = "4000000000000119"


def app_handlers():
    import app as app_module
    return app_module.STAGE_HANDLERS


def ref() -> str:
    return f"order-{uuid.uuid4().hex[:12]}"


def record_batches(stack) -> list[tuple[str, dict[str, Any]]]:
    """Wrap every stage handler the runner calls; returns the (stage, MSK event) list it fills."""
    seen: list[tuple[str, dict[str, Any]]] = []
    for worker in stack.runner.workers:
        def invoke(event, inner=worker.invoke, name=worker.stage.NAME):
            seen.append((name, copy.deepcopy(event)))
            return inner(event)
        worker.invoke = invoke
    return seen


def snapshot(stack, pids: list[str]) -> dict[str, Any]:
    store, bus, tid = stack.platform.store, stack.platform.bus, stack.tenant_id
    return {
        "payments": {p: (store.payments.get_payment(tid, p).version, store.payments.get_payment(tid, p).state.value,
                         store.payments.get_payment(tid, p).to_dict()) for p in pids},
        "timelines": {p: store.payments.timeline(tid, p) for p in pids},
        "outbox": [r.event.event_id for r in store.outbox.pending_outbox(10_000)],
        "postings": {p: store.ledger.postings_for(tid, p) for p in pids},
        "ledger": sorted(store.ledger.ledger_totals(), key=lambda t: t["txn_id"]),
        "topics": {t: len(bus.read_all(t)) for t in bus.topics()},
        "stats": {psp: stack.stats(psp) for psp in PSPS},
    }


def many_kinds_of_payment(stack) -> list[str]:
    """Payments that between them touch all eight stages, and drain them."""
    auto = stack.pay(reference=ref())
    manual = stack.pay(capture="manual", reference=ref())
    cancelled = stack.pay(capture="manual", reference=ref())
    declined = stack.pay("4000000000000002", reference=ref())
    failover = stack.pay(SOFT_DECLINE_FIRST_PSP, reference=ref())
    unknown = stack.pay(TIMEOUT_CHARGED, reference=ref())
    stack.runner.drain()
    assert stack.post(f"/v1/payments/{auto}/refunds", {"amount": 700}).status_code == 202
    assert stack.post(f"/v1/payments/{manual}/capture", {"amount": 1500}).status_code == 202
    assert stack.post(f"/v1/payments/{cancelled}/cancel", {}).status_code == 202
    stack.runner.drain()
    assert stack.payment(auto)["status"] == "partially_refunded"
    assert stack.payment(manual)["status"] == "settled"
    assert stack.payment(cancelled)["status"] == "cancelled"
    assert stack.payment(declined)["status"] == "declined"
    assert stack.payment(failover)["status"] == "settled"
    assert stack.payment(unknown)["status"] == "settled"
    return [auto, manual, cancelled, declined, failover, unknown]


def pays_on_same_partition(stack, pid: str, topic: str, limit: int = 60, **extra: Any) -> str:
    """Create payments until one lands on `pid`'s partition of `topic` (Kafka key = payment id)."""
    n = stack.platform.bus.partitions(topic)
    target = partition_for(pid, n)
    for _ in range(limit):
        other = stack.pay(reference=ref(), **extra)
        if partition_for(other, n) == target:
            return other
    raise AssertionError("no payment id hashed to the same partition")


def offset_of(stack, topic: str, payment_id: str) -> tuple[int, int]:
    records = [r for r in stack.platform.bus.read_all(topic) if r.key == payment_id]
    assert records, (topic, payment_id)
    return records[0].partition, records[0].offset


# -- redelivery ------------------------------------------------------------------------------
def test_redelivering_every_batch_changes_nothing(stack):
    seen = record_batches(stack)
    pids = many_kinds_of_payment(stack)
    assert {name for name, _ in seen} == set(STAGES)  # the replay below covers every stage
    before = snapshot(stack, pids)
    assert before["outbox"] == []
    webhooks_before = len(stack.poster.calls)

    handlers = app_handlers()
    for name, event in seen:
        assert handlers[name](copy.deepcopy(event), None) == {"batchItemFailures": []}, name

    assert snapshot(stack, pids) == before
    assert stack.all_dlq_entries() == []
    # Webhooks are at-least-once: a re-sent one must carry the same Webhook-Id so merchants can drop it.
    first_ids = Counter(h["Webhook-Id"] for _, _, h in stack.poster.calls[:webhooks_before])
    assert all(n == 1 for n in first_ids.values())
    assert {h["Webhook-Id"] for _, _, h in stack.poster.calls[webhooks_before:]} <= set(first_ids)
    stack.runner.drain()
    assert snapshot(stack, pids) == before


def test_replaying_any_recorded_batches_in_any_order_changes_nothing(stack):
    """Hypothesis picks which recorded batches to deliver again, how often and in what order.

    The stack persists across examples on purpose: if any replay changed anything,
    every later example would see the difference too."""
    seen = record_batches(stack)
    pids = many_kinds_of_payment(stack)
    before = snapshot(stack, pids)
    handlers = app_handlers()

    @settings(max_examples=25, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(picks=st.lists(st.integers(0, len(seen) - 1), min_size=1, max_size=12))
    def replay(picks):
        for i in picks:
            name, event = seen[i]
            assert handlers[name](copy.deepcopy(event), None) == {"batchItemFailures": []}, name
        assert snapshot(stack, pids) == before

    replay()
    assert stack.all_dlq_entries() == []


def test_every_batch_delivered_twice_in_a_row_has_the_effect_of_one(stack):
    for worker in stack.runner.workers:
        def twice(event, inner=worker.invoke):
            inner(copy.deepcopy(event))
            return inner(event)
        worker.invoke = twice
    ok = stack.pay(reference=ref())
    failover = stack.pay(SOFT_DECLINE_FIRST_PSP, reference=ref())
    unknown = stack.pay(TIMEOUT_CHARGED, reference=ref())
    stack.runner.drain()
    assert stack.post(f"/v1/payments/{ok}/refunds", {"amount": 999}).status_code == 202
    stack.runner.drain()

    for pid in (ok, failover, unknown):
        actions = [t["action"] for t in assert_timeline_chained(stack, pid)]
        for action in ("validate", "approve_risk", "route", "authorize", "capture", "settle"):
            assert actions.count(action) == 1, (pid, actions)
        txns = {p["txn_id"] for p in stack.platform.store.ledger.postings_for(stack.tenant_id, pid)}
        assert len([t for t in txns if t.endswith("_capture")]) == 1
    assert stack.payment(ok)["status"] == "partially_refunded"
    assert stack.payment(ok)["amount_refunded"] == 999
    assert [t["action"] for t in stack.platform.store.payments.timeline(stack.tenant_id, ok)].count("refund_partial") == 1
    assert stack.payment(failover)["status"] == stack.payment(unknown)["status"] == "settled"
    assert [sum(stack.charges(p).values()) for p in (ok, failover, unknown)] == [1, 1, 1]
    assert_ledger_balanced(stack)
    assert stack.all_dlq_entries() == []


# -- poison records --------------------------------------------------------------------------
def test_poison_records_go_to_the_dlq_without_blocking_the_partition(stack):
    pid = stack.pay(reference=ref())  # committed to the outbox, not yet on the bus
    (genuine,) = [r.event.to_dict() for r in stack.platform.store.outbox.pending_outbox(10)]
    schema_invalid = {**genuine, "event_id": "evt_01ARZ3NDEKTSV4RRFFQ69G5FAV",
                      "data": {**genuine["data"], "amount": "a lot"}}
    unknown_version = {**genuine, "event_id": "evt_01ARZ3NDEKTSV4RRFFQ69G5FAW", "schema_version": 99}
    headers = (("tenant_id", stack.tenant_id.encode()), ("correlation_id", b"corr-poison"))
    poison = {"not-json": b"\x00{not json",
              "not-an-object": b"[1, 2, 3]",
              "schema-invalid": orjson.dumps(schema_invalid),
              "unknown-version": orjson.dumps(unknown_version)}
    # Same key as the good payment: same partition, and ahead of it.
    stack.platform.bus.publish([OutRecord("payments.initiated", pid, v, headers) for v in poison.values()])
    stack.runner.drain()

    assert stack.payment(pid)["status"] == "settled"
    part, good_offset = [(r.partition, r.offset) for r in stack.platform.bus.read_all("payments.initiated")
                         if r.value not in poison.values()][0]
    entries = stack.dlq("payments.initiated")
    assert len(entries) == len(poison)
    by_value = {base64.b64decode(e["value"]): e for e in entries}
    assert set(by_value) == set(poison.values())
    for kind, value in poison.items():
        e = by_value[value]
        assert e["stage"] == "validation", kind
        assert e["topic"] == "payments.initiated" and e["key"] == pid, kind
        assert e["partition"] == part and e["offset"] < good_offset, kind
        assert e["attempts"] == 1, kind  # permanent: no pointless retries
        assert e["error"].startswith("permanent:"), kind
        assert e["tenant_id"] == stack.tenant_id and e["correlation_id"] == "corr-poison"
        assert dlq_mod.original(e) == OutRecord("payments.initiated", pid, value, headers)
    assert "JSON" in by_value[poison["not-json"]]["error"]
    assert "amount" in by_value[poison["schema-invalid"]]["error"]
    assert "99" in by_value[poison["unknown-version"]]["error"]
    # the validation consumer group moved past all of them
    assert stack.platform.bus.consumer("stage.validation", ["payments.initiated"]).lag() == 0
    assert [t["action"] for t in stack.platform.store.payments.timeline(stack.tenant_id, pid)].count("validate") == 1


def test_record_whose_tenant_header_disagrees_with_the_event_goes_to_the_dlq(stack):
    pid = stack.pay(reference=ref())
    (genuine,) = [r.event for r in stack.platform.store.outbox.pending_outbox(10)]
    forged = codec.to_record(genuine)
    forged = OutRecord(forged.topic, forged.key, forged.value,
                       tuple((k, stack.other["tenant_id"].encode() if k == "tenant_id" else v)
                             for k, v in forged.headers))
    stack.platform.bus.publish([forged])
    stack.runner.drain()

    (entry,) = stack.dlq("payments.initiated")
    assert entry["stage"] == "validation" and entry["key"] == pid
    assert "tenant" in entry["error"] and entry["attempts"] == 1
    assert base64.b64decode(entry["value"]) == forged.value
    # the genuine record was processed once; the forged one changed nothing
    assert stack.payment(pid)["status"] == "settled"
    assert [t["action"] for t in stack.platform.store.payments.timeline(stack.tenant_id, pid)].count("validate") == 1


def test_event_naming_another_tenant_cannot_reach_a_payment(stack):
    pid = stack.pay(reference=ref())
    (genuine,) = [r.event.to_dict() for r in stack.platform.store.outbox.pending_outbox(10)]
    stolen = {**genuine, "event_id": "evt_01ARZ3NDEKTSV4RRFFQ69G5FAX", "tenant_id": stack.other["tenant_id"]}
    stack.platform.bus.publish([OutRecord("payments.initiated", pid, orjson.dumps(stolen),
                                          (("tenant_id", stack.other["tenant_id"].encode()),))])
    stack.runner.drain()
    (entry,) = stack.dlq("payments.initiated")
    assert "not found" in entry["error"] and entry["tenant_id"] == stack.other["tenant_id"]
    assert [t["action"] for t in stack.platform.store.payments.timeline(stack.tenant_id, pid)].count("validate") == 1
    assert stack.platform.store.payments.get_payment(stack.other["tenant_id"], pid) is None


# -- transient failures: retry, DLQ, redrive ---------------------------------------------------
class LostCaptureAnswers:
    """Wraps a real connector: captures of one payment reach the PSP, but every answer is lost.

    capture() really captures (the simulator dedupes on the idempotency key) and
    then reports UNKNOWN while `down` is set -- a transient failure the event
    source must retry, dead-letter, and let an operator redrive.
    """

    def __init__(self, real: Any, payment_id: str):
        self.real, self.payment_id, self.name = real, payment_id, real.name
        self.down, self.calls = True, 0

    def capture(self, psp_reference, amount, currency, idempotency_key, **kw):
        result = self.real.capture(psp_reference, amount, currency, idempotency_key, **kw)
        if not idempotency_key.startswith(self.payment_id):
            return result
        self.calls += 1
        return PspResult(Outcome.UNKNOWN, None, "no_response", "read timed out") if self.down else result

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_transient_failure_is_retried_max_attempts_then_dead_lettered_and_redriven(stack, monkeypatch):
    max_attempts = stack.platform.settings.max_attempts
    stuck = stack.pay(reference=ref())
    behind = pays_on_same_partition(stack, stuck, "payments.authorized")
    psp = LostCaptureAnswers(stack.platform.connectors["sim-a"], stuck)
    monkeypatch.setitem(stack.platform.connectors, "sim-a", psp)
    stack.runner.drain()

    (entry,) = stack.all_dlq_entries()
    assert entry["topic"] == "payments.authorized" and entry["stage"] == "capture"
    assert entry["key"] == stuck and entry["attempts"] == max_attempts
    assert "unknown" in entry["error"]
    assert psp.calls == max_attempts
    # Parked, not guessed: still authorized (processing), no money booked.
    assert stack.payment(stuck)["status"] == "processing"
    assert stack.stored(stuck).state.value == "authorized"
    assert stack.platform.store.ledger.postings_for(stack.tenant_id, stuck) == []
    # The partition went on: the payment queued behind it settled.
    p1, o1 = offset_of(stack, "payments.authorized", stuck)
    p2, o2 = offset_of(stack, "payments.authorized", behind)
    assert p1 == p2 and o1 < o2
    assert stack.payment(behind)["status"] == "settled"

    # Redrive once the PSP answers again: captured once (same key), settled, one authorization.
    psp.down = False
    stack.platform.bus.publish([dlq_mod.original(entry)])
    stack.runner.drain()
    p = stack.payment(stuck)
    assert p["status"] == "settled" and p["amount_captured"] == 1999
    assert stack.charges(stuck) == {"sim-a": 1, "sim-b": 0}
    assert len({x["txn_id"] for x in stack.platform.store.ledger.postings_for(stack.tenant_id, stuck)}) == 1
    assert len(stack.all_dlq_entries()) == 1
    assert_ledger_balanced(stack)


class FailingFor(RecordingPoster):
    """A merchant endpoint that answers 500 for webhooks about one payment."""

    def __init__(self, payment_id: str):
        super().__init__()
        self.payment_id = payment_id

    def __call__(self, url, body, headers, timeout):
        self.calls.append((url, body, headers))
        return 500 if self.payment_id and self.payment_id.encode() in body else 200


def test_webhook_500_is_retried_then_dead_lettered_and_the_partition_continues(stack):
    max_attempts = stack.platform.settings.max_attempts
    failing = stack.pay(reference=ref())
    behind = pays_on_same_partition(stack, failing, "payments.settled")
    poster = FailingFor(failing)
    stack.platform.post_webhook = poster
    stack.runner.drain()

    assert stack.payment(failing)["status"] == "settled"  # the money side is unaffected
    tries = [h for _, b, h in poster.calls if failing.encode() in b]
    assert len(tries) == max_attempts
    assert len({h["Webhook-Id"] for h in tries}) == 1
    (entry,) = stack.dlq("payments.settled")
    assert entry["stage"] == "notification" and entry["key"] == failing
    assert entry["attempts"] == max_attempts and "500" in entry["error"]
    assert stack.all_dlq_entries() == [entry]
    p1, o1 = offset_of(stack, "payments.settled", failing)
    p2, o2 = offset_of(stack, "payments.settled", behind)
    assert p1 == p2 and o1 < o2
    assert len([b for _, b, _ in poster.calls if behind.encode() in b]) == 1

    # The merchant is back: a redrive delivers the same webhook (same id) once more.
    poster.payment_id = None
    stack.platform.bus.publish([dlq_mod.original(entry)])
    stack.runner.drain()
    tries = [h for _, b, h in poster.calls if failing.encode() in b]
    assert len(tries) == max_attempts + 1
    assert {h["Webhook-Id"] for h in tries} == {json.loads(base64.b64decode(entry["value"]))["event_id"]}
    assert len(stack.all_dlq_entries()) == 1


def test_connector_exception_is_retried_then_dead_lettered(stack, monkeypatch):
    """An unexpected exception inside a stage is transient by default, never a lost record."""
    real = stack.platform.connectors["sim-a"]
    calls = []

    def broken_capture(*args, **kwargs):
        calls.append(args)
        raise ConnectionResetError("peer reset")
    monkeypatch.setattr(real, "capture", broken_capture)
    pid = stack.pay(reference=ref())
    stack.runner.drain()
    (entry,) = stack.all_dlq_entries()
    assert entry["topic"] == "payments.authorized" and entry["stage"] == "capture" and entry["key"] == pid
    assert entry["attempts"] == len(calls) == stack.platform.settings.max_attempts
    assert "ConnectionResetError" in entry["error"]
    assert stack.stored(pid).state.value == "authorized"
    assert stack.platform.store.ledger.postings_for(stack.tenant_id, pid) == []


# -- the outbox relay ---------------------------------------------------------------------------
def test_relay_publishes_each_committed_event_exactly_once(stack, monkeypatch):
    committed: list[str] = []
    real_commit = stack.platform.store.unit_of_work.commit

    def commit(changes):
        real_commit(changes)
        committed.extend(e.event_id for e in changes.events)
    monkeypatch.setattr(stack.platform.store.unit_of_work, "commit", commit)
    real_commit_many = stack.platform.store.unit_of_work.commit_many

    def commit_many(batch):  # the stages' batched commits
        results = real_commit_many(batch)
        committed.extend(e.event_id for changes, error in zip(batch, results) if error is None
                         for e in changes.events)
        return results
    monkeypatch.setattr(stack.platform.store.unit_of_work, "commit_many", commit_many)
    pids = many_kinds_of_payment(stack)

    published = [(t, r) for t in stack.platform.bus.topics() if not t.endswith(".dlq")
                 for r in stack.platform.bus.read_all(t)]
    ids = [json.loads(r.value)["event_id"] for _, r in published]
    assert len(committed) > 30
    assert Counter(ids) == Counter(committed)  # every committed event, each exactly once
    assert stack.platform.store.outbox.pending_outbox(10_000) == []
    for topic, r in published:
        event = json.loads(r.value)
        assert event["type"] == topic and r.key == event["payment_id"] in pids
        assert dict(r.headers)["tenant_id"] == event["tenant_id"].encode()


def test_unpublished_outbox_survives_a_crash(stack):
    pids = [stack.pay(reference=ref()) for _ in range(2)]
    assert len(stack.platform.store.outbox.pending_outbox(10)) == 2
    assert stack.platform.bus.read_all("payments.initiated") == []
    # crash before the relay ran: only the files remain
    stack.restart().drain()
    for pid in pids:
        assert stack.payment(pid)["status"] == "settled"
        assert sum(stack.charges(pid).values()) == 1
    assert sorted(x.key for x in stack.platform.bus.read_all("payments.initiated")) == sorted(pids)
    assert stack.platform.store.outbox.pending_outbox(10) == []


def test_crash_between_publish_and_outbox_delete_republishes_but_applies_once(stack):
    reference = ref()
    pid = stack.pay(reference=reference)

    class CrashAfterPublish:
        def __init__(self, store):
            self.store = store

        def pending_outbox(self, limit, origin=None):
            return self.store.outbox.pending_outbox(limit, origin=origin)

        def mark_published(self, ids, origin=None):
            raise RuntimeError("process killed")

    with pytest.raises(RuntimeError):
        relay_once(CrashAfterPublish(stack.platform.store), stack.platform.bus)
    assert len(stack.platform.bus.read_all("payments.initiated")) == 1
    assert len(stack.platform.store.outbox.pending_outbox(10)) == 1

    stack.restart().drain()
    initiated = stack.platform.bus.read_all("payments.initiated")
    assert len(initiated) == 2 and len({json.loads(r.value)["event_id"] for r in initiated}) == 1
    assert stack.payment(pid)["status"] == "settled"
    actions = [t["action"] for t in assert_timeline_chained(stack, pid)]
    assert actions.count("validate") == 1 and actions.count("settle") == 1
    assert stack.charges(pid) == {"sim-a": 1, "sim-b": 0}
    assert len([p for p in stack.platform.store.ledger.postings_for(stack.tenant_id, pid)]) == 3
    assert stack.all_dlq_entries() == []


def record_invocations(stack, monkeypatch, stage: str) -> list[tuple[dict[str, tuple[str, int, int]], Any, list]]:
    """Wrap one stage's handler and the store's batched commit; returns a list the drain fills with
    (the batch's records by payment id -> (topic, partition, offset), its answer, the commit_many
    calls made while it ran -- each a list of the units' actors)."""
    commits: list[list[str]] = []
    real_commit_many = stack.platform.store.unit_of_work.commit_many

    def commit_many(batch):
        commits.append([c.actor for c in batch])
        return real_commit_many(batch)
    monkeypatch.setattr(stack.platform.store.unit_of_work, "commit_many", commit_many)
    calls: list[tuple[dict[str, tuple[str, int, int]], Any, list]] = []
    worker = next(w for w in stack.runner.workers if w.stage.NAME == stage)

    def invoke(event, inner=worker.invoke):
        before = len(commits)
        answer = inner(event)
        calls.append(({r.key: (r.topic, r.partition, r.offset) for r in iter_records(event)}, answer,
                      commits[before:]))
        return answer
    worker.invoke = invoke
    return calls


def test_a_stage_without_calls_out_commits_its_partitions_at_once_and_a_failure_holds_back_only_its_own(
        stack, monkeypatch):
    """Risk calls nothing outside the store: a batch's partitions are handled in turn and written in
    one transaction. A record that fails holds back the records after it in its partition only."""
    stuck = stack.pay(reference=ref())
    behind = pays_on_same_partition(stack, stuck, "payments.validated")
    others = [stack.pay(reference=ref()) for _ in range(6)]
    parts = stack.platform.bus.partitions("payments.validated")
    assert len({partition_for(p, parts) for p in [stuck, *others]}) > 1
    risk = STAGES["risk"]
    assert not getattr(risk, "CALLS_OUT", False)
    real_handle, hiccups = risk.handle, []

    def handle(event, ctx):
        if event.payment_id == stuck and not hiccups:
            hiccups.append(event.event_id)
            raise RuntimeError("risk engine hiccup")
        return real_handle(event, ctx)
    monkeypatch.setattr(risk, "handle", handle)
    calls = record_invocations(stack, monkeypatch, "risk")
    stack.runner.drain()

    records, answer, batch_commits = next(c for c in calls if stuck in c[0])
    failed = {parse_item_identifier(f["itemIdentifier"]) for f in answer["batchItemFailures"]}
    _, part, offset = records[stuck]
    held_back = {where for where in records.values() if where[1] == part and where[2] >= offset}
    assert behind in records and records[behind] in held_back
    assert failed == held_back  # stuck and what follows it in its partition; other partitions went on
    assert len({where[1] for where in records.values()}) > 1  # the batch spanned partitions...
    assert len(batch_commits) == 1  # ...and was written in one transaction
    assert len(batch_commits[0]) == len(records) - len(held_back)
    for pid in [stuck, behind, *others]:  # the retry went through: each screened once, all settled
        assert stack.payment(pid)["status"] == "settled"
        actions = [t for t in stack.platform.store.payments.timeline(stack.tenant_id, pid) if t["stage"] == "risk"]
        assert len(actions) == 1, actions


class BlockingAuthorize:
    """Wraps a real connector: the first authorization waits until released (a PSP that hangs)."""

    def __init__(self, real: Any):
        self.real, self.name = real, real.name
        self.entered, self.release = threading.Event(), threading.Event()

    def authorize(self, *args, **kw):
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(20), "the test never released the PSP"
        return self.real.authorize(*args, **kw)

    def __getattr__(self, name):
        return getattr(self.real, name)


def wait_for(check, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_hanging_psp_holds_up_only_the_stage_that_waits_for_it(stack, monkeypatch):
    """The threaded runner (`make local`'s worker): stages that call out poll apart from the shared
    loop of the others, so while authorization waits on a PSP, new payments are still validated,
    screened and routed, and the relay goes on publishing."""
    psp = BlockingAuthorize(stack.platform.connectors["sim-a"])
    monkeypatch.setitem(stack.platform.connectors, "sim-a", psp)
    threads = stack.runner.start()
    try:
        first = stack.pay(reference=ref())
        wait_for(psp.entered.is_set)
        second = stack.pay(reference=ref())
        wait_for(lambda: stack.stored(second).state.value == "routed")
        assert stack.stored(first).state.value == "authorizing"  # still waiting on the PSP
        psp.release.set()
        wait_for(lambda: all(stack.payment(p)["status"] == "settled" for p in (first, second)))
    finally:
        psp.release.set()
        stack.runner.stopping = True
        for t in threads:
            t.join(timeout=30)


def test_a_stage_that_calls_out_works_on_partitions_at_once_and_commits_them_together(stack, monkeypatch):
    """Capture calls a PSP: a batch's partitions run concurrently on the stage's pool (a slow answer
    holds up only its own partition), and what they all did is still written in one transaction."""
    pids = [stack.pay(reference=ref()) for _ in range(12)]
    parts = stack.platform.bus.partitions("payments.authorized")
    assert len({partition_for(p, parts) for p in pids}) > 1
    calls = record_invocations(stack, monkeypatch, "capture")
    stack.runner.drain()

    spanning = [c for c in calls if len({where[1] for where in c[0].values()}) > 1]
    assert spanning, "no capture batch spanned partitions"
    for _, answer, batch_commits in spanning:
        assert answer["batchItemFailures"] == []
        assert len(batch_commits) == 1  # every partition's captures in one transaction
    assert sum(len(c) for _, _, cs in calls for c in cs) == len(pids)
    for pid in pids:
        assert stack.payment(pid)["status"] == "settled"
        assert stack.charges(pid) == {"sim-a": 1, "sim-b": 0}


def test_a_bus_whose_poll_waits_gets_a_thread_per_stage(stack, monkeypatch):
    """Kafka's poll waits and drives the consumer's group protocol: no stage shares a loop on it."""
    def loops() -> set[str]:
        threads = stack.runner.start()
        try:
            return {t.name for t in threads}
        finally:
            stack.runner.stopping = True
            for t in threads:
                t.join(timeout=30)
            stack.runner.stopping = False
    shared = loops()
    assert "runner-shared" in shared and "runner-validation" not in shared and "runner-capture" in shared
    monkeypatch.setattr(stack.platform.bus, "POLL_BLOCKS", True, raising=False)
    assert {f"runner-{name}" for name in STAGES} <= loops()
