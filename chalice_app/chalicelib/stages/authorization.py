"""Authorization: ask the routed PSPs in turn, never charging twice.

Each attempt is written down (pending, with its idempotency key) before the
PSP is called, so a crash mid-call is resumed with the same PSP and key.
A soft decline, or a PSP that provably did not process the request
(connection refused, an explicit error answer), fails over to the next PSP.
A timeout or lost answer makes the outcome unknown: the payment waits in
`outcome_unknown` and reconciliation asks the same PSP about the same key on
a bounded schedule -- it is never charged again elsewhere. A PSP that takes the
request and decides later (PENDING) is treated the same way: its webhook or a
status check says how it ended.

3-D Secure (REQUIRES_ACTION): the payment waits in `requires_action` with the
PSP's next action and the return URL on the attempt; it neither fails over nor
replays. The PSP's webhook (services/psp_updates.py) or a status check where the
PSP can look the payment up (reconciliation) moves it on.
"""
from __future__ import annotations

from datetime import timedelta

from ..clock import iso
from ..domain.events import Event
from ..domain.payment import Payment
from ..domain.psp import FAILOVER_OUTCOMES, Outcome, PspResult
from ..domain.states import State
from ..errors import PermanentError, TransientError
from ..ports import AuthorizeRequest, Reminder
from .context import StageContext

NAME = "authorization"
CONSUMES = ("payments.routed",)
CALLS_OUT = True  # PSP calls: partitions of a batch run concurrently, a slow answer holds up only its own
ACTIVE = (State.ROUTED, State.AUTHORIZING, State.OUTCOME_UNKNOWN)


def authorize_request(platform, payment: Payment, key: str) -> AuthorizeRequest:
    """The PSP request for the current attempt; the secret is decrypted for this call only."""
    method = payment.payment_method
    kind = method["type"]
    try:
        secret = platform.vault.reveal(payment.tenant_id, method[kind]["token"])
    except LookupError as e:
        raise PermanentError(str(e)) from None
    card = bank = None
    if kind == "card":
        card = {"number": secret, "exp_month": method["card"]["exp_month"], "exp_year": method["card"]["exp_year"]}
    else:
        bank = {"iban": secret}
    # The PSP sees our payment id as its reference: one payment, one reference, countable there.
    return AuthorizeRequest(key, payment.amount, payment.currency, card, payment.payment_id,
                            payment.correlation_id, bank, return_url=payment.return_url)


def action_reminder(ctx: StageContext, payment: Payment, checks: int) -> Reminder | None:
    """When to ask the PSP again about a payment waiting on the shopper; None once the schedule is
    spent (it waits for the webhook then) or when the PSP has no lookup."""
    schedule = ctx.settings.action_check_schedule_s
    if checks >= len(schedule):
        return None
    due = ctx.clock.now() + timedelta(seconds=schedule[checks])
    return Reminder(payment.tenant_id, payment.payment_id, iso(due))


def apply_result(ctx: StageContext, cause: Event | None, payment: Payment, result: PspResult) -> list[Event] | None:
    """Record a definite PSP answer on the current attempt. None means: fail over.

    Shared with reconciliation and the PSP webhooks, which resolve unknown outcomes and payments
    waiting on the shopper the same way."""
    attempt = payment.current_attempt
    if result.outcome == Outcome.REQUIRES_ACTION:
        payment.attempt_requires_action(ctx.now(), result.psp_reference, result.next_action)
        return [ctx.event(cause, payment, "payments.requires_action", {
            "psp": attempt.psp, "attempt": attempt.number, "psp_reference": result.psp_reference or "",
            "next_action": result.next_action or {}, "return_url": payment.return_url})]
    if result.outcome == Outcome.APPROVED:
        payment.attempt_authorized(ctx.now(), result.psp_reference or "")
        return [ctx.event(cause, payment, "payments.authorized", {
            "psp": attempt.psp, "attempt": attempt.number, "psp_reference": result.psp_reference or "",
            "capture_mode": payment.capture_mode, "amount": payment.amount, "currency": payment.currency})]
    if result.outcome == Outcome.DECLINED:
        payment.attempt_declined(ctx.now(), result.code or "declined", result.message or "declined by PSP")
        return [ctx.event(cause, payment, "payments.failed", {
            "status": payment.status, "code": result.code or "declined",
            "message": payment.failure["message"], "stage": NAME})]
    if result.outcome in FAILOVER_OUTCOMES:
        payment.attempt_failed(ctx.now(), result.code or result.outcome.value, result.message or "")
        return None
    raise TransientError(f"unexpected PSP outcome {result.outcome.value}")


def prepare(event: Event, ctx: StageContext) -> None:
    """Before a batch calls any PSP: start each fresh payment's first attempt (handle_batch
    writes them in one transaction), instead of one transaction per payment in handle()."""
    payment = ctx.load(event)
    if payment.state != State.ROUTED or payment.attempts or not payment.route:
        return
    version = payment.version
    payment.start_attempt(ctx.now(), payment.route[0])
    ctx.commit_attempt(event, payment, version)


def handle(event: Event, ctx: StageContext) -> None:
    payment = ctx.load(event)
    if payment.state not in ACTIVE:
        return ctx.skip(event, payment, f"already {payment.state.value}")
    while True:
        attempt = payment.current_attempt
        version = payment.version
        if attempt is not None and attempt.status == "unknown":
            return ctx.skip(event, payment, "outcome unknown: reconciliation owns it")
        # Written by prepare() in this very batch and not sent yet: a fresh attempt, not a resumed one.
        resumed = attempt is None or attempt.idempotency_key not in ctx.prepared
        if attempt is not None:
            ctx.prepared.discard(attempt.idempotency_key)
        if attempt is None or attempt.status == "failed":
            remaining = [p for p in payment.route if p not in payment.tried_psps()]
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
            attempt, version = payment.current_attempt, payment.version
            resumed = False
        # attempt is pending: new, or resumed after a crash -- same PSP, same key either way
        ctx.before_psp(payment, "authorize", attempt.psp, attempt.idempotency_key)
        result = ctx.platform.connector(attempt.psp).authorize(
            authorize_request(ctx.platform, payment, attempt.idempotency_key))
        ctx.platform.breakers.record(attempt.psp, result.outcome)
        # A resumed attempt may have reached the PSP before the crash: a refusal at the door now
        # (503, connection refused) says nothing about that earlier call, so it is no proof either.
        # PENDING: the PSP has it and decides later -- like unknown, only the same PSP settles it.
        if result.outcome in (Outcome.UNKNOWN, Outcome.PENDING) or (resumed and result.outcome == Outcome.UNAVAILABLE):
            payment.attempt_unknown(ctx.now(), (result.message or "no answer from PSP")
                                    if result.outcome != Outcome.UNAVAILABLE else
                                    f"{result.message or 'unavailable'} on a resumed attempt; an earlier call "
                                    "may have been processed")
            if result.psp_reference:
                payment.current_attempt.psp_reference = result.psp_reference
            first_check = ctx.clock.now() + timedelta(seconds=ctx.settings.unknown_check_schedule_s[0])
            ctx.commit(event, payment, version,
                       reminders=[Reminder(payment.tenant_id, payment.payment_id, iso(first_check))])
            return
        events = apply_result(ctx, event, payment, result)
        if events is not None:
            reminder = action_reminder(ctx, payment, 0) if result.outcome == Outcome.REQUIRES_ACTION else None
            ctx.commit(event, payment, version, events, reminders=[reminder] if reminder else [])
            return
        # failed over: the next loop turn commits the failed attempt with the next one (or the failure)
