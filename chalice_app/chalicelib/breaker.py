"""Circuit breakers per PSP, shared by every worker through the store's control records.

closed --(threshold consecutive failures)--> open --(cooldown)--> half-open:
one probe is let through; success closes the breaker, failure opens it again.
Only answers that say the PSP itself is unwell (unavailable, timed out)
count as failures; a card decline is a healthy PSP doing its job.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .clock import iso, parse_iso
from .domain.psp import Outcome

if TYPE_CHECKING:  # the ports import Breakers for Platform.breakers
    from .ports import Clock, ControlRecords

UNHEALTHY = frozenset({Outcome.UNAVAILABLE, Outcome.UNKNOWN})


class Breakers:
    def __init__(self, controls: ControlRecords, clock: Clock, threshold: int, cooldown_s: float):
        self.controls, self.clock, self.threshold, self.cooldown_s = controls, clock, threshold, cooldown_s

    def state(self, psp: str) -> dict[str, Any]:
        return self.controls.get_control(f"breaker:{psp}") or {"state": "closed", "failures": 0, "opened_at": None}

    def allows(self, psp: str) -> bool:
        """Closed, or open long enough that a half-open probe may go through."""
        s = self.state(psp)
        if s["state"] == "closed":
            return True
        return (self.clock.now() - parse_iso(s["opened_at"])).total_seconds() >= self.cooldown_s

    def record(self, psp: str, outcome: Outcome) -> None:
        s = self.state(psp)
        if outcome not in UNHEALTHY:
            if s["state"] != "closed" or s["failures"]:
                self.controls.put_control(f"breaker:{psp}", {"state": "closed", "failures": 0, "opened_at": None})
            return
        failures = s["failures"] + 1
        # A failed half-open probe re-opens at once; a closed breaker opens at the threshold.
        opens = s["state"] == "open" or failures >= self.threshold
        self.controls.put_control(f"breaker:{psp}", {
            "state": "open" if opens else "closed", "failures": failures,
            "opened_at": iso(self.clock.now()) if opens else None})
