"""PSP faults: 10% of authorization calls lose the request, 10% lose the response
after charging, and the pipeline still charges nobody twice.

In process, like tests/integration: the real app.py handlers over the SQLite
adapters, the PSP simulator in a thread with injected faults, the runner
drained until nothing moves (reconciliation included, on a short schedule).
Every unknown outcome must end authorized exactly once at the PSP, or in
requires_review; the simulator's own records are the judge.

PSP_FAULT_PAYMENTS and PSP_FAULT_SEED override the defaults (400, 3).
"""
from __future__ import annotations

import json
import os
import random
import time
import urllib.request
import uuid
from collections import Counter

import pytest
from chalice.test import Client

from chalicelib.services import tenants as tenancy
from chalicelib.config import Settings
from laptop.psp_simulator import serve
from chalicelib import bootstrap
from laptop.runner import Runner
from chalicelib.stages import STAGES

from ..fakes import RecordingPoster
from ..stack import PSPS, card_body

PAYMENTS = int(os.environ.get("PSP_FAULT_PAYMENTS", "400"))
SEED = int(os.environ.get("PSP_FAULT_SEED", "3"))
LOSE_REQUEST = LOSE_RESPONSE = 0.10
CARDS = [("4242424242424242", 80), ("4000000000000002", 10), ("4000000000000119", 10)]
SCHEDULE = "0.02,0.05,0.1,0.2,0.4"  # five status checks before requires_review


@pytest.fixture
def pipeline(tmp_path, monkeypatch):
    server, _ = serve("127.0.0.1", 0, str(tmp_path / "sim.db"), 0.3, lose_request=LOSE_REQUEST,
                      lose_response=LOSE_RESPONSE, fault_seed=SEED, poll_interval=0.02)
    sim_url = f"http://127.0.0.1:{server.server_address[1]}"
    env = {"DATA_DIR": str(tmp_path / "data"), "SIMULATOR_URL": sim_url, "PSP_TIMEOUT_S": "1.0",
           "UNKNOWN_CHECK_SCHEDULE_S": SCHEDULE, "RETRY_BASE_MS": "1", "RETRY_MAX_MS": "5",
           "LOG_LEVEL": "WARNING"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    platform = bootstrap.build(Settings.from_env())
    platform.post_webhook = RecordingPoster()
    bootstrap.set_platform(platform)
    import app as app_module
    handlers = {n: (STAGES[n], (lambda fn: lambda ev: fn(ev, None))(app_module.STAGE_HANDLERS[n])) for n in STAGES}
    tenant = tenancy.create_tenant(platform, "psp-faults", webhook_url="https://merchant.example/hooks")
    with Client(app_module.app) as client:
        yield platform, Runner(platform, handlers), client, tenant, server
    bootstrap.set_platform(None)
    server.shutdown()
    server.server_close()


def stats(server, psp: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}/psp/{psp}/stats", timeout=10) as r:
        return json.loads(r.read())


def test_lost_requests_and_responses_never_charge_twice(pipeline):
    platform, runner, client, tenant, server = pipeline
    rng = random.Random(SEED)
    headers = {"Authorization": f"Bearer {tenant['api_key']}", "Content-Type": "application/json"}
    started = time.monotonic()
    ids = []
    for i in range(PAYMENTS):
        number = rng.choices([c for c, _ in CARDS], [w for _, w in CARDS])[0]
        body = card_body(number, reference=f"psp-fault-{i}", customer={"id": f"cust-{i}", "country": "DE"})
        r = client.http.post("/v1/payments", headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
                             body=json.dumps(body))
        assert r.status_code == 202, r.body
        ids.append(json.loads(r.body)["id"])
        if i % 50 == 49:
            runner.drain(timeout_s=60)
    runner.drain(timeout_s=90)
    wall = time.monotonic() - started

    store, tid = platform.store, tenant["tenant_id"]
    payments = {p: store.payments.get_payment(tid, p) for p in ids}
    status = {p: pay.status for p, pay in payments.items()}
    timelines = {p: store.payments.timeline(tid, p) for p in ids}
    # Which payments met an unknown outcome, and how each one left it.
    unknown, exits, checks = set(), Counter(), 0
    for p, tl in timelines.items():
        for before, after in zip(tl, tl[1:] + [None]):
            if before["to"] != "outcome_unknown":
                continue
            unknown.add(p)
            if after is not None and after["to"] == "outcome_unknown":
                checks += 1  # a status check that got no definite answer yet
            else:
                exits[after["action"] if after else "still unknown"] += 1
    sim = {psp: stats(server, psp) for psp in PSPS}
    faults = Counter()
    for s in sim.values():
        faults.update(s["faults"])
    charged = Counter()
    for s in sim.values():
        charged.update(s["by_reference"])
    doubles = {p: n for p, n in charged.items() if n > 1}
    review = [p for p in ids if status[p] == "requires_review"]
    resolved = [p for p in unknown if status[p] not in ("requires_review", "processing")]
    settled_not_once = [p for p in ids if status[p] in ("settled", "requires_capture") and charged[p] != 1]
    refused_yet_charged = [p for p in ids if status[p] in ("declined", "failed") and charged[p] != 0]
    outcomes = Counter(status.values())

    print(f"\nPSP faults (seed {SEED}; lose request {LOSE_REQUEST:.0%}, lose response {LOSE_RESPONSE:.0%} of "
          f"authorization calls): {PAYMENTS} payments in {wall:.1f} s\n"
          f"  faults injected {dict(faults)}; payments with an unknown outcome {len(unknown)} "
          f"(status checks still unknown {checks}; left it by {dict(exits)}); resolved {len(resolved)}, requires_review {len(review)}; "
          f"outcomes {dict(sorted(outcomes.items()))}; double charges {len(doubles)}; "
          f"settled without exactly one charge {len(settled_not_once)}; declined/failed yet charged "
          f"{len(refused_yet_charged)}")

    assert faults["lose_request"] > 0 and faults["lose_response"] > 0
    assert unknown, "no fault reached a payment: the test proves nothing"
    assert doubles == {}
    assert outcomes.get("processing", 0) == 0, [p for p in ids if status[p] == "processing"][:5]
    assert set(resolved) | set(review) >= unknown
    assert settled_not_once == [] and refused_yet_charged == []
    for p in review:  # held for an operator with the PSP's record unknown to us: at most one charge
        assert charged[p] <= 1
    ledger = store.ledger.ledger_totals()
    assert all(t["sum"] == 0 for t in ledger)
