"""The payment intent aggregate: one intent, many attempts (one per PSP try).

Every state change goes through `_apply`, which consults the transition table
and records a timeline entry. The aggregate guards I1: at most one successful
authorization, whatever happens around it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .money import Money
from .states import FINAL, PUBLIC_STATUS, RESTING, Action, IllegalTransition, State, next_state


class DomainError(Exception):
    """A business rule refused the action (HTTP 409/422, never a crash)."""


class DoubleAuthorization(DomainError):
    pass


@dataclass
class Attempt:
    number: int
    psp: str
    idempotency_key: str
    status: str = "pending"  # pending|authorized|declined|failed|unknown|captured|voided
    psp_reference: str | None = None
    code: str | None = None
    message: str | None = None
    started_at: str = ""
    updated_at: str = ""
    status_checks: int = 0  # PSP status queries made while the outcome was unknown (or the shopper's action)
    next_action: dict[str, Any] | None = None  # while the PSP waits for the shopper (requires_action)


@dataclass
class Refund:
    refund_id: str
    amount: int
    status: str = "pending"  # pending|succeeded|failed
    reason: str | None = None
    psp_reference: str | None = None
    created_at: str = ""


@dataclass
class TimelineEntry:
    at: str
    action: str
    from_state: str
    to_state: str
    stage: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Payment:
    tenant_id: str
    payment_id: str
    amount: int
    currency: str
    capture_mode: str  # automatic|manual
    payment_method: dict[str, Any]  # tokenized: never a PAN or an IBAN in clear
    reference: str | None
    customer: dict[str, Any]
    correlation_id: str
    created_at: str
    state: State = State.INITIATED
    version: int = 0
    updated_at: str = ""
    region: str = ""  # home region: the region that accepted it (its lease holder drives it)
    epoch: int = 0  # the home region's lease epoch under which it was last written
    route: list[str] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    refunds: list[Refund] = field(default_factory=list)
    captured_amount: int = 0
    risk: dict[str, Any] = field(default_factory=dict)
    failure: dict[str, Any] | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    return_url: str | None = None  # where the shopper comes back to after 3-D Secure (merchant's page)
    # A capture or void the PSP took but decides later (Adyen "received"): {"op", "amount",
    # "psp_reference", "since"}, until its webhook says how it ended.
    pending: dict[str, Any] | None = None
    trace: str | None = None  # X-Ray header of the request that created it: later work joins this trace
    # New timeline entries since load; the store appends them with the state.
    pending_timeline: list[TimelineEntry] = field(default_factory=list, repr=False)

    # -- queries -------------------------------------------------------------
    @property
    def money(self) -> Money:
        return Money(self.amount, self.currency)

    @property
    def status(self) -> str:
        return PUBLIC_STATUS[self.state]

    @property
    def is_resting(self) -> bool:
        return self.state in RESTING

    @property
    def is_final(self) -> bool:
        return self.state in FINAL

    @property
    def current_attempt(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def authorized_attempt(self) -> Attempt | None:
        for a in self.attempts:
            if a.status in ("authorized", "captured", "voided"):
                return a
        return None

    @property
    def refunded_amount(self) -> int:
        return sum(r.amount for r in self.refunds if r.status == "succeeded")

    @property
    def refundable_amount(self) -> int:
        reserved = sum(r.amount for r in self.refunds if r.status in ("pending", "succeeded"))
        return self.captured_amount - reserved

    def tried_psps(self) -> list[str]:
        return [a.psp for a in self.attempts]

    # -- transitions -----------------------------------------------------------
    def _require(self, action: Action) -> None:
        """Refuse before changing anything, so a refused action leaves no partial state behind."""
        next_state(self.payment_id, self.state, action)

    def _apply(self, action: Action, at: str, stage: str, **detail: Any) -> None:
        to = next_state(self.payment_id, self.state, action)
        self.pending_timeline.append(TimelineEntry(at, action.value, self.state.value, to.value, stage, detail))
        self.state, self.updated_at = to, at

    def validate(self, at: str) -> None:
        self._apply(Action.VALIDATE, at, "validation")

    def fail(self, at: str, stage: str, code: str, message: str) -> None:
        self._require(Action.FAIL)
        self.failure = {"code": code, "message": message, "stage": stage}
        self.pending = None
        self._apply(Action.FAIL, at, stage, code=code)

    def decline(self, at: str, stage: str, code: str, message: str) -> None:
        self._require(Action.DECLINE)
        self.failure = {"code": code, "message": message, "stage": stage}
        self._apply(Action.DECLINE, at, stage, code=code)

    def screen(self, at: str, decision: str, score: int, reasons: list[str]) -> None:
        self._require({"approve": Action.APPROVE_RISK, "review": Action.HOLD_FOR_REVIEW}.get(decision, Action.DECLINE))
        self.risk = {"decision": decision, "score": score, "reasons": reasons}
        if decision == "approve":
            self._apply(Action.APPROVE_RISK, at, "risk", score=score)
        elif decision == "review":
            self.failure = {"code": "risk_review", "message": "; ".join(reasons), "stage": "risk"}
            self._apply(Action.HOLD_FOR_REVIEW, at, "risk", score=score, reasons=reasons)
        else:
            self.decline(at, "risk", "risk_rejected", "; ".join(reasons))

    def set_route(self, at: str, psps: list[str]) -> None:
        self._require(Action.ROUTE)
        self.route = list(psps)
        self._apply(Action.ROUTE, at, "routing", psps=psps)

    def start_attempt(self, at: str, psp: str) -> Attempt:
        if self.authorized_attempt:
            raise DoubleAuthorization(f"payment {self.payment_id} is already authorized")
        current = self.current_attempt
        if current is not None and current.status != "failed":
            # Failing over while the PSP may still authorize the current attempt risks charging twice.
            raise DomainError(f"payment {self.payment_id}: attempt {current.number} at {current.psp} is "
                              f"'{current.status}', not failed; resolve it before trying another PSP")
        number = len(self.attempts) + 1
        attempt = Attempt(number, psp, f"{self.payment_id}-a{number}", started_at=at, updated_at=at)
        self._apply(Action.START_ATTEMPT, at, "authorization", psp=psp, attempt=number)
        self.attempts.append(attempt)
        return attempt

    def _settle_attempt(self, at: str, status: str, ref: str | None, code: str | None, msg: str | None) -> Attempt:
        attempt = self.current_attempt
        if attempt is None:
            raise DomainError(f"payment {self.payment_id} has no attempt")
        attempt.status, attempt.updated_at = status, at
        attempt.psp_reference = ref or attempt.psp_reference
        attempt.code, attempt.message = code, msg
        return attempt

    def attempt_authorized(self, at: str, psp_reference: str) -> None:
        if self.authorized_attempt:
            raise DoubleAuthorization(f"payment {self.payment_id} has a successful authorization already")
        self._require(Action.AUTHORIZE)
        attempt = self._settle_attempt(at, "authorized", psp_reference, None, None)
        attempt.next_action = None
        self._apply(Action.AUTHORIZE, at, "authorization", psp=attempt.psp, attempt=attempt.number)

    def attempt_declined(self, at: str, code: str, message: str) -> None:
        self._require(Action.DECLINE)
        attempt = self._settle_attempt(at, "declined", None, code, message)
        attempt.next_action = None
        self.decline(at, "authorization", code, f"{attempt.psp}: {message}")

    def attempt_failed(self, at: str, code: str, message: str) -> None:
        """The PSP provably did not process the attempt; the caller may fail over."""
        attempt = self.current_attempt
        if self.state not in (State.AUTHORIZING, State.OUTCOME_UNKNOWN) or (
                attempt is not None and attempt.status not in ("pending", "unknown")):
            raise DomainError(f"payment {self.payment_id}: no unresolved attempt to fail in state "
                              f"'{self.state.value}'")
        self._settle_attempt(at, "failed", None, code, message)

    def status_checked(self, at: str) -> int:
        """Count one more status query of the unknown (or waiting-on-the-shopper) attempt; returns the count."""
        attempt = self.current_attempt
        if (self.state, attempt.status if attempt else None) not in (
                (State.OUTCOME_UNKNOWN, "unknown"), (State.REQUIRES_ACTION, "requires_action")):
            raise DomainError(f"payment {self.payment_id} has no unknown outcome to check")
        attempt.status_checks += 1
        attempt.updated_at = at
        self.pending_timeline.append(TimelineEntry(at, "status_check", self.state.value, self.state.value,
                                                   "reconciliation", {"attempt": attempt.number,
                                                                      "checks": attempt.status_checks}))
        return attempt.status_checks

    def attempt_unknown(self, at: str, message: str) -> None:
        self._require(Action.MARK_UNKNOWN)
        attempt = self._settle_attempt(at, "unknown", None, "outcome_unknown", message)
        self._apply(Action.MARK_UNKNOWN, at, "authorization", psp=attempt.psp, attempt=attempt.number)

    def attempt_requires_action(self, at: str, psp_reference: str | None, next_action: dict[str, Any] | None) -> None:
        """The PSP holds the attempt until the shopper acts (3-D Secure). Neither a failure (no other
        PSP may try: this one may still authorize) nor unknown (the PSP said where it stands)."""
        self._require(Action.AWAIT_ACTION)
        attempt = self._settle_attempt(at, "requires_action", psp_reference, "requires_action",
                                       "waiting for the shopper (3-D Secure)")
        attempt.next_action = next_action
        self._apply(Action.AWAIT_ACTION, at, "authorization", psp=attempt.psp, attempt=attempt.number)

    def follow_up_pending(self, at: str, op: str, amount: int | None, psp_reference: str | None) -> None:
        """The PSP took a capture or void and decides later: the payment waits in capturing /
        cancelling for its webhook (no state change, a timeline entry)."""
        expected = {"capture": State.CAPTURING, "void": State.CANCELLING}[op]
        if self.state != expected and not (op == "capture" and self.state == State.AUTHORIZED):
            raise DomainError(f"payment {self.payment_id}: no {op} in flight in state '{self.state.value}'")
        self.pending = {"op": op, "amount": amount, "psp_reference": psp_reference, "since": at}
        self.pending_timeline.append(TimelineEntry(at, f"{op}_pending", self.state.value, self.state.value,
                                                   "capture", {"psp_reference": psp_reference, "amount": amount}))

    def refund_pending(self, at: str, refund_id: str, psp_reference: str | None) -> Refund:
        """The PSP took the refund and decides later (webhook); it stays pending, with the PSP's reference."""
        refund = self._pending_refund(refund_id)
        refund.psp_reference = psp_reference or refund.psp_reference
        self.pending_timeline.append(TimelineEntry(at, "refund_pending", self.state.value, self.state.value,
                                                   "refund", {"refund_id": refund_id, "psp_reference": psp_reference}))
        return refund

    def hold_for_review(self, at: str, stage: str, code: str, message: str) -> None:
        self._require(Action.HOLD_FOR_REVIEW)
        self.failure = {"code": code, "message": message, "stage": stage}
        self._apply(Action.HOLD_FOR_REVIEW, at, stage, code=code)

    def await_capture(self, at: str) -> None:
        self._apply(Action.AWAIT_CAPTURE, at, "capture")

    def request_capture(self, at: str, amount: int) -> None:
        if not 0 < amount <= self.amount:
            raise DomainError(f"capture amount must be between 1 and {self.amount}")
        self._apply(Action.REQUEST_CAPTURE, at, "api", amount=amount)

    def captured(self, at: str, amount: int, psp_reference: str | None) -> None:
        self._require(Action.CAPTURE)
        attempt = self.authorized_attempt
        if attempt is None or attempt.status != "authorized":
            raise IllegalTransition(self.payment_id, self.state, Action.CAPTURE)
        attempt.status, attempt.updated_at = "captured", at
        self.captured_amount, self.pending = amount, None
        self._apply(Action.CAPTURE, at, "capture", amount=amount, psp_reference=psp_reference)

    def request_cancel(self, at: str) -> bool:
        """Cancel now if nothing was authorized yet; True when a PSP void is needed."""
        if self.state == State.REQUIRES_CAPTURE:
            self._apply(Action.REQUEST_CANCEL, at, "api")
            return True
        if self.authorized_attempt is not None:  # a hold exists at the PSP: only a void may cancel it
            raise IllegalTransition(self.payment_id, self.state, Action.CANCEL)
        self._apply(Action.CANCEL, at, "api")
        return False

    def voided(self, at: str) -> None:
        self._require(Action.VOID)
        attempt = self.authorized_attempt
        if attempt:
            attempt.status, attempt.updated_at = "voided", at
        self.pending = None
        self._apply(Action.VOID, at, "capture")

    def settle(self, at: str, batch: str) -> None:
        self._apply(Action.SETTLE, at, "settlement", batch=batch)

    def request_refund(self, at: str, refund_id: str, amount: int, reason: str | None) -> Refund:
        # Which states take a refund is the state machine's to say (an illegal transition, as for
        # capture and cancel); how much is a business rule.
        self._require(Action.REFUND_PARTIAL)
        if not 0 < amount <= self.refundable_amount:
            raise DomainError(f"refund amount must be between 1 and {self.refundable_amount}")
        refund = Refund(refund_id, amount, "pending", reason, None, at)
        self.refunds.append(refund)
        self.pending_timeline.append(TimelineEntry(at, "request_refund", self.state.value, self.state.value,
                                                   "api", {"refund_id": refund_id, "amount": amount}))
        return refund

    def refund_succeeded(self, at: str, refund_id: str, psp_reference: str | None) -> Refund:
        refund = self._pending_refund(refund_id)
        full = self.refunded_amount + refund.amount >= self.captured_amount
        self._require(Action.REFUND_FULL if full else Action.REFUND_PARTIAL)
        refund.status, refund.psp_reference = "succeeded", psp_reference
        self._apply(Action.REFUND_FULL if full else Action.REFUND_PARTIAL, at, "refund",
                    refund_id=refund_id, amount=refund.amount)
        return refund

    def refund_failed(self, at: str, refund_id: str, code: str) -> Refund:
        refund = self._pending_refund(refund_id)
        refund.status = "failed"
        self.pending_timeline.append(TimelineEntry(at, "refund_failed", self.state.value, self.state.value,
                                                   "refund", {"refund_id": refund_id, "code": code}))
        return refund

    def _pending_refund(self, refund_id: str) -> Refund:
        refund = self.find_refund(refund_id)
        if refund.status != "pending":
            raise DomainError(f"payment {self.payment_id}: refund {refund_id} is already {refund.status}")
        return refund

    def find_refund(self, refund_id: str) -> Refund:
        for r in self.refunds:
            if r.refund_id == refund_id:
                return r
        raise DomainError(f"payment {self.payment_id} has no refund {refund_id}")

    # -- persistence shape ----------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("pending_timeline")
        d["state"] = self.state.value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Payment:
        d = dict(d)
        d["state"] = State(d["state"])
        d["attempts"] = [Attempt(**a) for a in d.get("attempts", [])]
        d["refunds"] = [Refund(**r) for r in d.get("refunds", [])]
        return cls(**d)
