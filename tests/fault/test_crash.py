"""Crash test: payments through the real local stack while stage workers are SIGKILLed.

The simulator, the API and two stage worker processes (`--member 0/1 --members 2`;
member 0 also runs the outbox relay and reconciliation) run as separate processes.
While payments are posted concurrently over HTTP, a seeded schedule SIGKILLs a
worker at CRASH_KILLS random moments and restarts it at once. Afterwards, once
nothing moves: every payment rests or is named in a DLQ entry (I2), the PSP
simulator's own records show no payment authorized twice (I1), each settled
payment has one ledger posting set and the ledger is balanced (I4).

CRASH_PAYMENTS, CRASH_KILLS and CRASH_SEED override the defaults (2,000, 100, 1).
"""
from __future__ import annotations

import json
import os
import random
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from ..runs import new_run
from ..stack import card_body, start_processes

PAYMENTS = int(os.environ.get("CRASH_PAYMENTS", "2000"))
KILLS = int(os.environ.get("CRASH_KILLS", "100"))
SEED = int(os.environ.get("CRASH_SEED", "1"))
POSTERS = 8
MEMBERS = 2
# Card mix: mostly approvals, some hard declines, some soft declines that fail over sim-a -> sim-b.
CARDS = [("4242424242424242", 85), ("4000000000000002", 5), ("4000000000009995", 5), ("4000000000000119", 5)]
AUTHORIZED = {"settled", "requires_capture"}   # resting statuses that hold exactly one authorization
UNAUTHORIZED = {"declined", "failed"}           # resting statuses that hold none


@pytest.fixture
def stack(runs_root, request):
    """Its data dir and logs stay under the session's runs root for the PAN scan (tests/runs.py)."""
    stack = start_processes(new_run(runs_root, "crash", request.node.name), members=MEMBERS, LOG_LEVEL="WARNING",
                            UNKNOWN_CHECK_SCHEDULE_S="0.5,1,2,4", RETRY_BASE_MS="50", RETRY_MAX_MS="1000")
    yield stack
    stack.stop()


class Killer(threading.Thread):
    """SIGKILLs a random worker at seeded random moments and restarts it at once."""

    def __init__(self, stack, rng: random.Random, kills: int, mean_gap_s: float):
        super().__init__(name="killer", daemon=True)
        self.stack, self.rng, self.kills, self.mean_gap_s = stack, rng, kills, mean_gap_s
        self.done = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for _ in range(self.kills):
                member = self.rng.randrange(MEMBERS)
                time.sleep(self.rng.uniform(0, 2 * self.mean_gap_s))
                deadline = time.monotonic() + 30
                while not self.stack.worker_ready(member):  # kill it where it works, not while it imports
                    assert time.monotonic() < deadline, f"worker {member} did not come back"
                    time.sleep(0.02)
                proc = self.stack.procs[f"worker-{member}"]
                assert proc.poll() is None, f"worker {member} died on its own (exit {proc.returncode})"
                self.stack.kill_worker(member)
                self.stack.start_worker(member)
                self.done += 1
        except BaseException as e:  # noqa: BLE001 - reported by the test thread
            self.error = e


def post_payment(stack, i: int, rng: random.Random) -> str:
    number = rng.choices([c for c, _ in CARDS], [w for _, w in CARDS])[0]
    body = card_body(number, reference=f"crash-{i}", customer={"id": f"cust-{i}", "country": "DE"},
                     capture="manual" if i % 10 == 0 else "automatic")
    key = uuid.uuid4().hex
    tries, limited = 0, 0
    while tries < 5:  # a client retries with the same key until it hears an answer
        try:
            status, _, raw = stack.call("POST", "/v1/payments", body, headers={"Idempotency-Key": key}, timeout=30)
        except OSError:
            tries += 1
            time.sleep(0.2)
            continue
        if status == 409:  # our own earlier try is still in flight
            tries += 1
            time.sleep(0.2)
            continue
        if status == 429 and limited < 30:  # over the tenant's rate limit: wait as told, as a client does
            limited += 1
            time.sleep(float(json.loads(raw).get("retry_after_s", 1)))
            continue
        assert status == 202, raw
        return json.loads(raw)["id"]
    raise AssertionError(f"payment {i} got no answer")


def wait_quiescent(stack, ids: set[str], timeout_s: float) -> tuple[dict[str, str], set[str]]:
    """Until every payment rests or sits in a DLQ entry, and that holds twice in a row."""
    deadline = time.monotonic() + timeout_s
    settled_rounds = 0
    while True:
        statuses = dict(stack.query("SELECT payment_id, status FROM payments WHERE tenant_id=?", stack.tenant_id))
        moving = {p for p in ids if statuses.get(p, "processing") == "processing"}
        dead = {e["key"] for e in stack.payctl("dlq", "list")} if moving else set()
        settled_rounds = settled_rounds + 1 if not moving - dead else 0
        if settled_rounds >= 2:
            return statuses, dead
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(moving - dead)} payments still processing after {timeout_s} s, e.g. "
                                 f"{sorted(moving - dead)[:5]}")
        time.sleep(1.0)


def test_sigkilled_workers_lose_nothing_and_never_charge_twice(stack):
    rng = random.Random(SEED)
    started = time.monotonic()
    # Spread the kills over roughly the time the payments take to post and flow through.
    killer = Killer(stack, random.Random(SEED + 1), KILLS, mean_gap_s=float(os.environ.get("CRASH_GAP_S", "0.35")))
    killer.start()
    rngs = [random.Random(SEED * 1000 + i) for i in range(PAYMENTS)]
    with ThreadPoolExecutor(POSTERS) as pool:
        ids = list(pool.map(lambda i: post_payment(stack, i, rngs[i]), range(PAYMENTS)))
    posted = time.monotonic() - started
    killer.join(timeout=600)
    assert killer.error is None, killer.error
    assert killer.done == KILLS
    kills_over = time.monotonic() - started
    statuses, dead = wait_quiescent(stack, set(ids), timeout_s=180)
    wall = time.monotonic() - started

    assert len(set(ids)) == PAYMENTS
    stored = {p for p, in stack.query("SELECT payment_id FROM payments WHERE tenant_id=?", stack.tenant_id)}
    assert stored == set(ids), "the store holds other payments than the 202s named"
    outcomes = Counter(statuses[p] for p in ids)
    lost = [p for p in ids if statuses[p] == "processing" and p not in dead]
    auths = stack.authorizations_by_payment()
    doubles = {p: n for p, n in auths.items() if n > 1}
    missing = [p for p in ids if statuses[p] in AUTHORIZED and auths.get(p, 0) != 1]
    orphans = [p for p in ids if statuses[p] in UNAUTHORIZED and auths.get(p, 0) != 0]
    ledger = stack.payctl("ledger", "check")
    settled = [p for p in ids if statuses[p] == "settled"]
    sets = dict(stack.query("SELECT payment_id, COUNT(DISTINCT txn_id) FROM postings GROUP BY payment_id"))
    posting_sets_off = {p: sets.get(p, 0) for p in settled if sets.get(p, 0) != 1}
    dlq_entries = stack.payctl("dlq", "list")

    print(f"\ncrash test (seed {SEED}): {PAYMENTS} payments, {killer.done} SIGKILLs of {MEMBERS} stage workers; "
          f"posted in {posted:.1f} s, kills over at {kills_over:.1f} s, quiescent at {wall:.1f} s\n"
          f"  outcomes {dict(sorted(outcomes.items()))}; DLQ entries {len(dlq_entries)} "
          f"(naming {len(dead)} payments); lost {len(lost)}; double authorizations {len(doubles)}; "
          f"authorized without exactly one PSP authorization {len(missing)}; declined/failed yet charged "
          f"{len(orphans)}; settled with other than one posting set {len(posting_sets_off)}; "
          f"ledger {ledger['transactions']} transactions, balanced {ledger['balanced']}")

    assert lost == []
    assert doubles == {}
    assert missing == [] and orphans == []
    assert ledger["balanced"] is True
    assert posting_sets_off == {}, "settled payments with other than one ledger posting set"
