"""Authorization: ask the routed PSPs in turn, never charging twice.

Each attempt is written down (pending, with its idempotency key) before the
PSP is called, so a crash mid-call is resumed with the same PSP and key.
A soft decline or a PSP that provably did not process the request fails over
to the next PSP; a timeout makes the outcome unknown, resolved by asking the
same PSP for the status, never by charging elsewhere.
"""
from __future__ import annotations

from ..domain.events import Event
from ..domain.payment import Payment
from ..domain.psp import FAILOVER_OUTCOMES, Outcome, PspResult
from ..domain.states import State
from ..errors import PermanentError, TransientError
from ..ports import AuthorizeRequest
from .base import StageContext

NAME = "authorization"
CONSUMES = ("payments.routed",)
ACTIVE = (State.ROUTED, State.AUTHORIZING, State.OUTCOME_UNKNOWN)


def _request(ctx: StageContext, payment: Payment, key: str) -> AuthorizeRequest:
    method = payment.payment_method
    kind = method["type"]
    try:
        secret = ctx.platform.vault.reveal(payment.tenant_id, method[kind]["token"])
    except LookupError as e:
        raise PermanentError(str(e)) from None
    card = bank = None
    if kind == "card":
        card = {"number": secret, "exp_month": method["card"]["exp_month"], "exp_year": method["card"]["exp_year"]}
    else:
        bank = {"iban": secret}
    return AuthorizeRequest(key, payment.amount, payment.currency, card, payment.reference,
                            payment.correlation_id, bank)


def _call(ctx: StageContext, event: Event, payment: Payment) -> PspResult:
    """Drive the current attempt to a definite PSP answer (or raise TransientError)."""
    attempt = payment.current_attempt
    connector = ctx.platform.connector(attempt.psp)
    if attempt.status == "pending":
        result = connector.authorize(_request(ctx, payment, attempt.idempotency_key))
        if result.outcome != Outcome.UNKNOWN:
            return result
        version = payment.version
        payment.attempt_unknown(ctx.now(), result.message or "no answer from PSP")
        ctx.commit(event, payment, version, final=False)
    # Outcome unknown: only the same PSP, asked about the same key, can tell.
    status = connector.status(attempt.idempotency_key)
    if status.outcome == Outcome.NOT_FOUND:
        return PspResult(Outcome.UNAVAILABLE, None, "not_processed", f"{attempt.psp} has no record of the attempt")
    if status.outcome in (Outcome.UNKNOWN, Outcome.UNAVAILABLE):
        raise TransientError(f"outcome of {attempt.idempotency_key} at {attempt.psp} still unknown")
    return status


def handle(event: Event, ctx: StageContext) -> None:
    payment = ctx.load(event)
    if payment.state not in ACTIVE:
        return ctx.skip(event, payment, f"already {payment.state.value}")
    while True:
        attempt = payment.current_attempt
        if attempt is None or attempt.status == "failed":
            remaining = [p for p in payment.route if p not in payment.tried_psps()]
            version = payment.version
            if not remaining:
                last = attempt.code if attempt else "no_psp"
                msg = f"every routed PSP refused or was unavailable (last: {last})"
                payment.fail(ctx.now(), NAME, "psp_unavailable", msg)
                out = ctx.event(event, payment, "payments.failed",
                                {"status": payment.status, "code": "psp_unavailable", "message": msg, "stage": NAME})
                ctx.commit(event, payment, version, [out])
                return
            payment.start_attempt(ctx.now(), remaining[0])
            ctx.commit(event, payment, version, final=False)  # durable before the PSP hears of it
            attempt = payment.current_attempt
        result = _call(ctx, event, payment)
        version = payment.version
        if result.outcome == Outcome.APPROVED:
            payment.attempt_authorized(ctx.now(), result.psp_reference or "")
            out = ctx.event(event, payment, "payments.authorized", {
                "psp": attempt.psp, "attempt": attempt.number, "psp_reference": result.psp_reference or "",
                "capture_mode": payment.capture_mode, "amount": payment.amount, "currency": payment.currency})
            ctx.commit(event, payment, version, [out])
            return
        if result.outcome == Outcome.DECLINED:
            payment.attempt_declined(ctx.now(), result.code or "declined", result.message or "declined by PSP")
            out = ctx.event(event, payment, "payments.failed", {
                "status": payment.status, "code": result.code or "declined",
                "message": payment.failure["message"], "stage": NAME})
            ctx.commit(event, payment, version, [out])
            return
        if result.outcome in FAILOVER_OUTCOMES:
            payment.attempt_failed(ctx.now(), result.code or result.outcome.value, result.message or "")
            continue  # the next loop turn commits the failed attempt with the next one (or the failure)
        raise TransientError(f"unexpected PSP outcome {result.outcome.value}")
