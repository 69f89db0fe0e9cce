"""Capture: capture automatically after authorization, or on the merchant's request
(partial allowed); void an authorization the merchant cancelled.

A PSP that takes a capture or void and decides later (PENDING, Adyen's "received") leaves the
payment where it is, with the PSP's reference noted (`payment.pending`): the PSP's webhook
(services/psp_updates.py) finishes it. Neither PSP can look a modification up, so there is no
status schedule for these; the same key replays the same "received" anyway."""
from __future__ import annotations

from ..domain.events import Event
from ..domain.payment import Payment
from ..domain.psp import Outcome, PspResult
from ..domain.states import State
from ..errors import TransientError
from .context import StageContext

NAME = "capture"
CONSUMES = ("payments.authorized", "payments.capture_requested", "payments.cancel_requested")
CALLS_OUT = True  # PSP calls: partitions of a batch run concurrently, a slow answer holds up only its own


def _definite(result: PspResult, what: str, payment: Payment) -> PspResult:
    # Capture and void carry idempotency keys: retrying an unclear answer is safe.
    if result.outcome in (Outcome.UNKNOWN, Outcome.UNAVAILABLE, Outcome.SOFT_DECLINED):
        raise TransientError(f"{what} of {payment.payment_id}: {result.outcome.value} ({result.message})")
    return result


def _capture(event: Event, ctx: StageContext, payment: Payment, amount: int) -> None:
    attempt = payment.authorized_attempt
    version = payment.version
    ctx.before_psp(payment, "capture", attempt.psp, f"{payment.payment_id}-capture")
    result = _definite(ctx.platform.connector(attempt.psp).capture(
        attempt.psp_reference, amount, payment.currency, f"{payment.payment_id}-capture"), "capture", payment)
    if result.outcome == Outcome.PENDING:
        payment.follow_up_pending(ctx.now(), "capture", amount, result.psp_reference)
        ctx.commit(event, payment, version)
        return
    if result.outcome == Outcome.APPROVED:
        payment.captured(ctx.now(), amount, result.psp_reference)
        out = ctx.event(event, payment, "payments.captured", {
            "psp": attempt.psp, "amount": amount, "currency": payment.currency,
            "psp_reference": result.psp_reference or attempt.psp_reference})
    else:
        out = _refused(event, ctx, payment, "capture", result)
    ctx.commit(event, payment, version, [out])


def _refused(event: Event, ctx: StageContext, payment: Payment, action: str, result: PspResult) -> Event:
    """The PSP refused a capture or a void: the payment fails, with the PSP's reason."""
    msg = f"{payment.authorized_attempt.psp} refused the {action}: {result.message or result.code}"
    code = result.code or f"{action}_refused"
    payment.fail(ctx.now(), NAME, code, msg)
    return ctx.event(event, payment, "payments.failed",
                     {"status": payment.status, "code": code, "message": msg, "stage": NAME})


def handle(event: Event, ctx: StageContext) -> None:
    payment = ctx.load(event)
    if event.type == "payments.authorized":
        if payment.state != State.AUTHORIZED:
            return ctx.skip(event, payment, f"already {payment.state.value}")
        if payment.pending is not None:
            return ctx.skip(event, payment, f"{payment.pending['op']} pending at the PSP")
        if payment.capture_mode == "automatic":
            return _capture(event, ctx, payment, payment.amount)
        version = payment.version
        payment.await_capture(ctx.now())
        ctx.commit(event, payment, version)
    elif event.type == "payments.capture_requested":
        if payment.state != State.CAPTURING or payment.pending is not None:
            return ctx.skip(event, payment, f"already {payment.state.value}")
        _capture(event, ctx, payment, event.data["amount"])
    else:  # payments.cancel_requested
        if payment.state != State.CANCELLING or payment.pending is not None:
            return ctx.skip(event, payment, f"already {payment.state.value}")
        attempt = payment.authorized_attempt
        version = payment.version
        ctx.before_psp(payment, "void", attempt.psp, f"{payment.payment_id}-void")
        result = _definite(ctx.platform.connector(attempt.psp).void(
            attempt.psp_reference, f"{payment.payment_id}-void"), "void", payment)
        if result.outcome == Outcome.PENDING:
            payment.follow_up_pending(ctx.now(), "void", None, result.psp_reference)
            ctx.commit(event, payment, version)
            return
        if result.outcome == Outcome.APPROVED:
            payment.voided(ctx.now())
            out = ctx.event(event, payment, "payments.cancelled",
                            {"reason": event.data.get("reason"), "status": "cancelled"})
        else:
            out = _refused(event, ctx, payment, "void", result)
        ctx.commit(event, payment, version, [out])
