"""Refund: send a requested (partial or full) refund to the PSP that captured the payment.

PENDING (Adyen's "received", Stripe's pending refund): the refund stays pending with the PSP's
reference; the PSP's webhook (services/psp_updates.py) says whether it succeeded."""
from __future__ import annotations

from ..domain.events import Event
from ..domain.psp import Outcome
from ..errors import TransientError
from .context import StageContext

NAME = "refund"
CONSUMES = ("payments.refund_requested",)
CALLS_OUT = True  # PSP calls: partitions of a batch run concurrently, a slow answer holds up only its own


def handle(event: Event, ctx: StageContext) -> None:
    payment = ctx.load(event)
    refund_id = event.data["refund_id"]
    refund = payment.find_refund(refund_id)
    if refund.status != "pending" or refund.psp_reference:  # decided, or taken by the PSP (webhook finishes it)
        return ctx.skip(event, payment, f"refund {refund_id} already {refund.status} at the PSP")
    attempt = payment.authorized_attempt
    version = payment.version
    ctx.before_psp(payment, "refund", attempt.psp, refund_id)
    result = ctx.platform.connector(attempt.psp).refund(
        attempt.psp_reference, refund.amount, payment.currency, refund_id)
    if result.outcome in (Outcome.UNKNOWN, Outcome.UNAVAILABLE, Outcome.SOFT_DECLINED):
        raise TransientError(f"refund {refund_id}: {result.outcome.value} ({result.message})")
    if result.outcome == Outcome.PENDING:
        payment.refund_pending(ctx.now(), refund_id, result.psp_reference)
        out = []
    elif result.outcome == Outcome.APPROVED:
        payment.refund_succeeded(ctx.now(), refund_id, result.psp_reference)
        out = [ctx.event(event, payment, "payments.refunded", {
            "refund_id": refund_id, "psp": attempt.psp, "amount": refund.amount, "currency": payment.currency,
            "psp_reference": result.psp_reference})]
    else:
        payment.refund_failed(ctx.now(), refund_id, result.code or "refund_refused")
        out = []
    ctx.commit(event, payment, version, out)
