"""An in-process PSP for the simulator: its own records, idempotency keys honoured, seeded faults.

Like a real PSP it remembers every authorization by idempotency key and replays
the first answer for the same key, so its records are the ground truth for I1
("at most one successful authorization per payment", counted here, not in our store).

Faults, drawn from the simulation's seeded Random:
  lose_request   the PSP never saw the call; the caller sees UNKNOWN (a timeout)
  lose_response  the PSP processed (charged) it, the answer is lost: UNKNOWN
  unavailable    an explicit 503: provably not processed (UNAVAILABLE)
  soft_decline   processed and refused; another PSP may try (recorded, replayed)
  hard_decline   processed and refused for good (recorded, replayed)
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from chalicelib.domain.psp import Outcome, PspResult
from chalicelib.ports import AuthorizeRequest


@dataclass
class PspRates:
    lose_request: float = 0.08
    lose_response: float = 0.08
    unavailable: float = 0.06
    soft_decline: float = 0.08
    hard_decline: float = 0.05
    op_fault: float = 0.05  # capture / void / refund / status answers lost (UNKNOWN)


class SimPsp:
    """One PSP. `crash(point)` is the simulation's crash hook (may raise SimCrash)."""

    def __init__(self, name: str, rng: random.Random, rates: PspRates, faults: Counter, crash):
        self.name, self.rng, self.rates, self.faults, self.crash = name, rng, rates, faults, crash
        self.auths: dict[str, dict] = {}      # idempotency key -> {reference, amount, result}
        self.ops: dict[tuple[str, str], PspResult] = {}  # (op, idempotency key) -> first answer
        self.captured: Counter = Counter()     # psp_reference -> successful captures
        self.calls = 0

    def _roll(self, kind: str, rate: float) -> bool:
        if self.rng.random() < rate:
            self.faults[kind] += 1
            return True
        return False

    def authorize(self, request: AuthorizeRequest) -> PspResult:
        self.calls += 1
        self.crash("psp.authorize:before")
        if self._roll("lose_request", self.rates.lose_request):
            return PspResult(Outcome.UNKNOWN, message="timeout: request lost")
        if self._roll("unavailable", self.rates.unavailable):
            return PspResult(Outcome.UNAVAILABLE, code="psp_unavailable", message="503")
        record = self.auths.get(request.idempotency_key)
        if record is None:  # first sight of this key: decide once, remember for good
            if self._roll("hard_decline", self.rates.hard_decline):
                result = PspResult(Outcome.DECLINED, code="do_not_honor", message="hard decline")
            elif self._roll("soft_decline", self.rates.soft_decline):
                result = PspResult(Outcome.SOFT_DECLINED, code="try_again_later", message="soft decline")
            else:
                result = PspResult(Outcome.APPROVED, psp_reference=f"{self.name}:{request.idempotency_key}")
            record = self.auths[request.idempotency_key] = {
                "reference": request.reference, "amount": request.amount, "result": result}
        elif record["reference"] != request.reference or record["amount"] != request.amount:
            return PspResult(Outcome.DECLINED, code="idempotency_mismatch", message="key reused")
        self.crash("psp.authorize:after")
        if self._roll("lose_response", self.rates.lose_response):
            return PspResult(Outcome.UNKNOWN, message="timeout: response lost")
        return record["result"]

    def status(self, idempotency_key: str, psp_reference: str | None = None) -> PspResult:
        self.calls += 1
        self.crash("psp.status:before")
        if self._roll("lose_status", self.rates.op_fault):
            return PspResult(Outcome.UNKNOWN, message="timeout")
        record = self.auths.get(idempotency_key)
        return record["result"] if record else PspResult(Outcome.NOT_FOUND)

    def _op(self, op: str, key: str, psp_reference: str, amount: int | None) -> PspResult:
        self.calls += 1
        self.crash(f"psp.{op}:before")
        if self._roll(f"lose_{op}", self.rates.op_fault):
            return PspResult(Outcome.UNKNOWN, message="timeout")
        result = self.ops.get((op, key))
        if result is None:
            auth = self.auths.get(psp_reference.split(":", 1)[-1])
            if auth is None or auth["result"].outcome != Outcome.APPROVED:
                result = PspResult(Outcome.DECLINED, code="no_such_charge", message=psp_reference)
            else:
                result = PspResult(Outcome.APPROVED, psp_reference=f"{self.name}:{key}")
                if op == "capture":
                    self.captured[psp_reference] += 1
            self.ops[(op, key)] = result
        self.crash(f"psp.{op}:after")
        return result

    def capture(self, psp_reference: str, amount: int, currency: str, idempotency_key: str) -> PspResult:
        return self._op("capture", idempotency_key, psp_reference, amount)

    def void(self, psp_reference: str, idempotency_key: str) -> PspResult:
        return self._op("void", idempotency_key, psp_reference, None)

    def refund(self, psp_reference: str, amount: int, currency: str, idempotency_key: str) -> PspResult:
        return self._op("refund", idempotency_key, psp_reference, amount)

    def approvals(self) -> Counter:
        """Successful authorizations per payment (the reference we send is the payment id)."""
        return Counter(r["reference"] for r in self.auths.values() if r["result"].outcome == Outcome.APPROVED)
