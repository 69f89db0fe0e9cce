"""The seeded simulation (tests/fault/simulation.py) as a test: I1-I4 hold for every seed.

SIM_SEEDS (default 500) seeds from SIM_SEED_START (default 0). A failing seed's
message ends with the one command that replays it exactly.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import replace
from types import SimpleNamespace

import pytest

from chalicelib.adapters.sqlite import unit_of_work as sqlite_unit_of_work
from chalicelib.adapters.sqlite.reports import SqliteReports
from chalicelib.domain.psp import FAILOVER_OUTCOMES, Outcome
from chalicelib.stages import authorization

from .simulation import REPLAY, run_seed

SEEDS = int(os.environ.get("SIM_SEEDS", "500"))
START = int(os.environ.get("SIM_SEED_START", "0"))


@pytest.mark.parametrize("seed", range(START, START + SEEDS))
def test_invariants_hold(seed):
    result = run_seed(seed)
    assert not result.violations, "\n".join(result.violations + [f"replay: {REPLAY.format(seed=seed)}"])


def test_a_seed_replays_exactly():
    first, again = run_seed(33), run_seed(33)
    assert first.digest == again.digest and first.stats == again.stats and first.crashes == again.crashes


def _first_failing_seed(limit: int) -> tuple[int, list[str]] | None:
    for seed in range(limit):
        result = run_seed(seed)
        if result.violations:
            return seed, result.violations
    return None


def test_a_store_that_forgets_processed_markers_is_caught(monkeypatch):
    """Drop the dedupe marker from every unit of work: duplicate deliveries must show up in I3/I4."""
    prepare = sqlite_unit_of_work._prepare  # under commit and the stages' batched commit_many alike

    def forgetful(changes, region):
        changes.processed = None
        return prepare(changes, region)
    monkeypatch.setattr(sqlite_unit_of_work, "_prepare", forgetful)
    found = _first_failing_seed(20)
    assert found is not None, "the simulator did not notice missing processed markers in 20 seeds"


def test_a_reporter_that_counts_redeliveries_is_caught(monkeypatch):
    """Apply report deltas without their processed markers: crashes before the feed position
    moves re-read changes, and the recount of the final state must disagree."""
    apply = SqliteReports.apply_report

    def forgetful(self, consumer, deltas):
        return apply(self, consumer, [replace(d, change_id=f"{d.change_id}-{next(fresh)}") for d in deltas])
    fresh = itertools.count()
    monkeypatch.setattr(SqliteReports, "apply_report", forgetful)
    found = _first_failing_seed(40)
    assert found is not None, "the simulator did not notice double-counted report changes in 40 seeds"
    assert any(v.startswith("reports:") for v in found[1]), found


def test_failing_over_on_an_unknown_outcome_is_caught(monkeypatch):
    """The classic double charge: treat a PSP timeout as 'not processed' and try the next PSP."""
    blind = SimpleNamespace(**{o.name: o for o in Outcome})
    blind.UNKNOWN = object()  # the stage no longer recognises an unknown outcome...
    monkeypatch.setattr(authorization, "Outcome", blind)
    monkeypatch.setattr(authorization, "FAILOVER_OUTCOMES", FAILOVER_OUTCOMES | {Outcome.UNKNOWN})  # ...fails over
    found = _first_failing_seed(40)
    assert found is not None, "the simulator did not notice failover on unknown outcomes in 40 seeds"
    assert any(v.startswith("I1") for v in found[1]), found
