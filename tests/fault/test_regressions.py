"""Bugs the seeded simulation found, pinned as small deterministic scenarios."""
from __future__ import annotations

from collections import Counter

import orjson
import pytest

from chalicelib.domain.states import State
from chalicelib import bootstrap

from .sim_faults import SimCrash, deterministic
from .simulation import Simulation


@pytest.fixture
def sim(tmp_path):
    with deterministic(0):
        s = Simulation(0, str(tmp_path))
        for psp in s.psps.values():
            psp.rates.__init__(**{k: 0.0 for k in vars(psp.rates)})
        s.webhook_fail = 0.0
        bootstrap.set_platform(s.platform)
        yield s
        bootstrap.set_platform(None)


def _pay(sim: Simulation) -> str:
    body = {"amount": 2500, "currency": "EUR", "capture": "automatic", "reference": "order-r1",
            "payment_method": {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12,
                                                        "exp_year": 2030, "cvc": "123"}},
            "customer": {"id": "c1", "country": "DE"}}
    sim.keys["key-r1"] = orjson.dumps(body)
    sim._post("key-r1", sim.keys["key-r1"], "create")
    return next(iter(sim.answers["key-r1"]))


def _pump(sim: Simulation, stages: set[str]) -> None:
    for _ in range(20):
        sim.do_relay()
        for (name, member), worker in list(sim.workers.items()):
            if name in stages:
                worker.step(sim.now())


def test_unavailable_on_a_resumed_attempt_is_not_proof_it_was_not_processed(sim):
    """seeds 33 and 35: sim-a charged attempt 1, the worker died before reading the answer; on
    redelivery sim-a's front door answered 503 and authorization failed over to sim-b: two charges."""
    pid = _pay(sim)
    _pump(sim, {"validation", "risk", "routing"})
    assert sim.raw_store.payments.get_payment(sim.tenant_id, pid).state == State.ROUTED
    auth = [k for k in sim.workers if k[0] == "authorization"]
    sim.crasher.arm_at("psp.authorize:after")  # sim-a approved; the answer never arrived
    with pytest.raises(SimCrash):
        for key in auth:
            sim._victim = key
            sim.workers[key].step(sim.now())
    sim.crasher.disarm()
    sim._start_worker(sim._victim)
    sim.psps["sim-a"].rates.unavailable = 1.0  # the retry of the same key meets a 503
    _pump(sim, {"authorization"})
    sim.psps["sim-a"].rates.unavailable = 0.0
    sim.drain()
    approvals = Counter()
    for psp in sim.psps.values():
        approvals.update(psp.approvals())
    assert approvals[pid] == 1, dict(approvals)
    assert sim.raw_store.payments.get_payment(sim.tenant_id, pid).state == State.SETTLED
