"""What a PSP tells us after the fact (its webhooks), applied to the payment through the same state
machine, outbox and ownership fence as the stages.

A connector's webhook parser turns the PSP's notification into `PspUpdate`s; `apply_update` finds
the payment (tenant-scoped), checks this region holds its home lease (NotOwner: the caller answers
so the PSP retries later), applies what the update proves, and commits the state, the outgoing
event and the delivery's processed marker in one unit of work: a repeated delivery changes nothing.

Out of order: an update the payment is not ready for (a capture while the authorization is still
unresolved here) is `DEFERRED`: nothing is written, no marker, and the PSP is asked to send it again
(both PSPs retry a delivery that is not acknowledged). An update about something already decided
(a second AUTHORISATION, a capture already applied) is acknowledged and recorded as done.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from ..domain.payment import Payment
from ..domain.psp import Outcome, PspResult
from ..domain.states import State
from ..ports import AlreadyProcessed, Changes, ConcurrencyConflict, Platform, Reminder
from ..stages.authorization import apply_result
from ..stages.context import StageContext

log = logging.getLogger("payments.psp_updates")
NAME = "psp-webhook"
APPLIED, DUPLICATE, IGNORED, DEFERRED = "applied", "duplicate", "ignored", "deferred"
KINDS = ("authorisation", "capture", "cancel", "refund")


@dataclass(frozen=True)
class PspUpdate:
    """One thing a PSP says happened, in our words."""
    psp: str                 # our name of the PSP (the connector's name)
    delivery_id: str         # the PSP's id of this notification (dedupe key)
    kind: str                # authorisation | capture | cancel | refund
    success: bool
    payment_id: str          # ours (the reference we sent)
    psp_reference: str | None = None       # the PSP's id of the payment
    modification_reference: str | None = None  # the PSP's id of a capture / cancel / refund
    refund_id: str | None = None           # ours, for a refund
    amount: int | None = None
    code: str | None = None
    message: str | None = None


def apply_update(platform: Platform, tenant_id: str, update: PspUpdate) -> str:
    """Apply one update; returns APPLIED, DUPLICATE, IGNORED or DEFERRED. Raises NotOwner / StaleEpoch
    when another region drives the payment, TransientError-like ConcurrencyConflict when a stage
    wrote it meanwhile (the caller answers "retry")."""
    if update.kind not in KINDS:
        raise ValueError(f"unknown update kind {update.kind!r}")
    ctx = StageContext(NAME, platform)
    payment = platform.store.payments.get_payment(tenant_id, update.payment_id)
    marker = (NAME, f"{tenant_id}:{update.psp}:{update.delivery_id}")
    if payment is None:
        log.warning("psp update for an unknown payment", extra={"payment_id": update.payment_id, "psp": update.psp})
        return IGNORED
    payment.epoch = ctx.own(payment)  # NotOwner / StaleEpoch: the home lease holder applies it
    version = payment.version
    decided = _decide(ctx, payment, update)
    if decided == DEFERRED:
        return DEFERRED
    events, reminders = decided if isinstance(decided, tuple) else ([], [])
    changed = bool(payment.pending_timeline)
    changes = Changes(payment=payment if changed else None, expected_version=version if changed else None,
                      events=events, reminders=reminders, actor=f"psp:{update.psp}",
                      correlation_id=payment.correlation_id, processed=marker)
    try:
        platform.store.commit(changes)
    except AlreadyProcessed:
        return DUPLICATE
    return APPLIED if changed else IGNORED


def _attempt_of(payment: Payment, update: PspUpdate):
    for attempt in payment.attempts:
        if attempt.psp == update.psp and (update.psp_reference is None or attempt.psp_reference in
                                          (None, update.psp_reference)):
            return attempt
    return None


def _decide(ctx: StageContext, payment: Payment, update: PspUpdate):
    """(events, reminders) to commit, or DEFERRED, or None (nothing to change: acknowledged)."""
    now = ctx.now()
    if update.kind == "authorisation":
        attempt = payment.current_attempt
        if attempt is None or attempt.psp != update.psp or (
                attempt.psp_reference and update.psp_reference and attempt.psp_reference != update.psp_reference):
            return None  # about an attempt we no longer drive (or never made): nothing to change
        if payment.state == State.AUTHORIZING:  # our own call is in flight: its answer or a replay decides
            return DEFERRED
        if payment.state not in (State.REQUIRES_ACTION, State.OUTCOME_UNKNOWN):
            return None  # already decided here
        result = PspResult(Outcome.APPROVED, update.psp_reference) if update.success else \
            PspResult(Outcome.DECLINED, update.psp_reference, update.code or "refused", update.message or "refused")
        events = apply_result(ctx, None, payment, result)
        return events, [Reminder(payment.tenant_id, payment.payment_id, None)]  # no more status checks
    if update.kind in ("capture", "cancel"):
        wanted = State.CAPTURING if update.kind == "capture" else State.CANCELLING
        if payment.state in (State.INITIATED, State.VALIDATED, State.SCREENED, State.ROUTED, State.AUTHORIZING,
                             State.OUTCOME_UNKNOWN, State.REQUIRES_ACTION):
            return DEFERRED  # the capture came before we learned of the authorisation: later
        attempt = payment.authorized_attempt
        in_flight = payment.state == wanted or (update.kind == "capture" and payment.state == State.AUTHORIZED)
        if attempt is None or not in_flight:
            return None  # decided already (a repeat, or our own answer got there first)
        if update.kind == "capture" and update.success:
            amount = update.amount or (payment.pending or {}).get("amount") or payment.amount
            payment.captured(now, amount, update.modification_reference)
            return [ctx.event(None, payment, "payments.captured", {
                "psp": attempt.psp, "amount": amount, "currency": payment.currency,
                "psp_reference": update.modification_reference or attempt.psp_reference})], []
        if update.kind == "cancel" and update.success:
            payment.voided(now)
            return [ctx.event(None, payment, "payments.cancelled",
                              {"reason": "cancelled", "status": "cancelled"})], []
        code = update.code or f"{update.kind}_refused"
        msg = f"{update.psp} refused the {'void' if update.kind == 'cancel' else 'capture'}: {update.message or code}"
        if payment.state == State.AUTHORIZED and payment.pending is None:
            return None  # a failed capture we never asked for
        payment.fail(now, "capture", code, msg)
        return [ctx.event(None, payment, "payments.failed",
                          {"status": payment.status, "code": code, "message": msg, "stage": "capture"})], []
    # refund
    refund = next((r for r in payment.refunds if r.refund_id == update.refund_id or (
        update.modification_reference and r.psp_reference == update.modification_reference)), None)
    if refund is None:
        return DEFERRED if payment.state not in (State.SETTLED, State.PARTIALLY_REFUNDED, State.REFUNDED) else None
    if refund.status != "pending":
        return None
    attempt = payment.authorized_attempt
    if update.success:
        payment.refund_succeeded(now, refund.refund_id, update.modification_reference or refund.psp_reference)
        return [ctx.event(None, payment, "payments.refunded", {
            "refund_id": refund.refund_id, "psp": attempt.psp if attempt else update.psp, "amount": refund.amount,
            "currency": payment.currency, "psp_reference": update.modification_reference or refund.psp_reference})], []
    payment.refund_failed(now, refund.refund_id, update.code or "refund_refused")
    return [], []


__all__ = ["APPLIED", "DEFERRED", "DUPLICATE", "IGNORED", "PspUpdate", "apply_update", "ConcurrencyConflict"]
