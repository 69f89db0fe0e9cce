"""Circuit breaker per PSP: closed -> open after N failures -> half-open probe after cooldown."""
from __future__ import annotations

import pytest

from chalicelib.adapters.sqlite.store import open_store
from chalicelib.breaker import Breakers
from chalicelib.domain.psp import Outcome

from ..fakes import FakeClock


@pytest.fixture
def breakers(tmp_path):
    clock = FakeClock()
    return Breakers(open_store(tmp_path / "store.db").controls, clock, threshold=3, cooldown_s=30), clock


def test_opens_after_threshold_consecutive_failures(breakers):
    b, _ = breakers
    for _ in range(2):
        b.record("sim-a", Outcome.UNAVAILABLE)
        assert b.allows("sim-a")
    b.record("sim-a", Outcome.UNKNOWN)
    assert not b.allows("sim-a")
    assert b.state("sim-a")["state"] == "open"
    assert b.allows("sim-b")  # one PSP's breaker is its own


def test_a_success_resets_the_count(breakers):
    b, _ = breakers
    b.record("sim-a", Outcome.UNAVAILABLE)
    b.record("sim-a", Outcome.UNAVAILABLE)
    b.record("sim-a", Outcome.APPROVED)
    b.record("sim-a", Outcome.UNAVAILABLE)
    b.record("sim-a", Outcome.UNAVAILABLE)
    assert b.allows("sim-a")


@pytest.mark.parametrize("outcome", [Outcome.DECLINED, Outcome.SOFT_DECLINED, Outcome.NOT_FOUND])
def test_declines_are_not_failures(breakers, outcome):
    b, _ = breakers
    for _ in range(5):
        b.record("sim-a", outcome)
    assert b.allows("sim-a")


def test_half_open_probe_after_cooldown_then_closes_on_success(breakers):
    b, clock = breakers
    for _ in range(3):
        b.record("sim-a", Outcome.UNAVAILABLE)
    clock.advance(29.9)
    assert not b.allows("sim-a")
    clock.advance(0.1)
    assert b.allows("sim-a")  # half-open: a probe may go through
    b.record("sim-a", Outcome.APPROVED)
    assert b.state("sim-a") == {"state": "closed", "failures": 0, "opened_at": None}


def test_failed_probe_reopens_for_a_full_cooldown(breakers):
    b, clock = breakers
    for _ in range(3):
        b.record("sim-a", Outcome.UNAVAILABLE)
    clock.advance(30)
    assert b.allows("sim-a")
    b.record("sim-a", Outcome.UNKNOWN)
    assert not b.allows("sim-a")
    clock.advance(29)
    assert not b.allows("sim-a")
    clock.advance(1)
    assert b.allows("sim-a")


def test_state_is_shared_through_the_store(breakers, tmp_path):
    b, clock = breakers
    for _ in range(3):
        b.record("sim-a", Outcome.UNAVAILABLE)
    other_worker = Breakers(open_store(tmp_path / "store.db").controls, clock, threshold=3, cooldown_s=30)
    assert not other_worker.allows("sim-a")
