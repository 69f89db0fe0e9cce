"""Reconciliation: resolve unknown PSP outcomes by asking the same PSP, on a bounded schedule.

Driven by reminders the authorization stage commits with the unknown
attempt (a scheduled Lambda in AWS, a loop in the local worker). Each check
asks the PSP that got the attempt for the status of the attempt's own
idempotency key. If the PSP has no record, the authorization is sent again
to the same PSP with the same key -- safe, the PSP dedupes on it. Only an
answer proving the PSP did not process it lets the payment fail over. When
the schedule runs out the payment goes to requires_review, with the checks
on its timeline as the audit trail.

A payment waiting on the shopper (requires_action) is looked up by the PSP's own
reference where the PSP allows it (ACTION_CHECK_SCHEDULE_S); never replayed, never
failed over. Where the PSP has no lookup, or the schedule is spent, it waits for
the PSP's webhook.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from ..clock import iso
from ..domain.payment import Payment
from ..domain.psp import Outcome, PspResult
from ..domain.states import State
from ..errors import TransientError
from ..services.ownership import NotOwner
from ..observability import context, tracing
from ..ports import Changes, ConcurrencyConflict, Platform, Reminder
from .authorization import action_reminder, apply_result, authorize_request
from .context import StageContext

log = logging.getLogger("payments.reconciliation")
NAME = "reconciliation"


def run_due(platform: Platform, limit: int = 50) -> int:
    """Work every reminder that is due; returns how many were handled."""
    done = 0
    for reminder in platform.store.reminders.due_reminders(iso(platform.clock.now()), limit):
        try:
            reconcile(platform, reminder)
            done += 1
        except (TransientError, ConcurrencyConflict, NotOwner) as e:  # the reminder stays due: next round retries
            log.warning("reconciliation deferred", extra={"payment_id": reminder.payment_id, "error": str(e)})
    return done


def reconcile(platform: Platform, reminder: Reminder) -> str:
    payment = platform.store.payments.get_payment(reminder.tenant_id, reminder.payment_id)
    # A scheduled action joins the payment's trace, so its PSP calls and events sit under the payment.
    with context.bound(stage=NAME, tenant_id=reminder.tenant_id, payment_id=reminder.payment_id,
                       correlation_id=payment.correlation_id if payment else None), \
            tracing.span("reconciliation", parent=payment.trace if payment else None,
                         **{"payments.stage": NAME, "payments.tenant_id": reminder.tenant_id,
                            "payments.payment_id": reminder.payment_id}) as span:
        result = _reconcile(platform, reminder, payment)
        span.set_attribute("payments.outcome", result)
        return result


def _reconcile(platform: Platform, reminder: Reminder, payment: Payment | None) -> str:
    ctx = StageContext(NAME, platform)
    store = platform.store
    clear = Reminder(reminder.tenant_id, reminder.payment_id, None)
    attempt = payment.current_attempt if payment else None
    if payment is not None:
        try:
            payment.epoch = ctx.own(payment)
        except NotOwner:  # its home region's lease holder works it (its reminders are its own)
            return "not ours"
    if payment is not None and payment.state == State.REQUIRES_ACTION and attempt is not None \
            and attempt.status == "requires_action":
        return _check_action(ctx, payment, clear)
    if payment is None or payment.state != State.OUTCOME_UNKNOWN or attempt is None or attempt.status != "unknown":
        store.commit(Changes(reminders=[clear]))
        return "nothing to do"
    version = payment.version
    connector = platform.connector(attempt.psp)
    ctx.before_psp(payment, "status", attempt.psp, attempt.idempotency_key)
    result = connector.status(attempt.idempotency_key)
    if result.outcome == Outcome.NOT_FOUND:  # never reached the PSP, or not yet: same PSP, same key
        ctx.before_psp(payment, "authorize", attempt.psp, attempt.idempotency_key)
        result = connector.authorize(authorize_request(platform, payment, attempt.idempotency_key))
        if result.outcome == Outcome.UNAVAILABLE:
            # Refused at the door (503, connection refused): that proves nothing about the first
            # call, which may still land. Only an answer for this key settles it.
            result = PspResult(Outcome.UNKNOWN, None, result.code, result.message)
    platform.breakers.record(attempt.psp, result.outcome)
    checks = payment.status_checked(ctx.now())
    schedule = platform.settings.unknown_check_schedule_s
    if result.outcome in (Outcome.UNKNOWN, Outcome.NOT_FOUND, Outcome.PENDING):
        if checks >= len(schedule):
            msg = (f"{attempt.psp} gave no definite answer for {attempt.idempotency_key} after {checks} status "
                   "checks; an operator must confirm with the PSP before anything else is done")
            payment.hold_for_review(ctx.now(), NAME, "outcome_unknown", msg)
            out = ctx.event(None, payment, "payments.failed", {
                "status": payment.status, "code": "outcome_unknown", "message": msg, "stage": NAME})
            store.commit(Changes(payment=payment, expected_version=version, events=[out], reminders=[clear]))
            return "requires_review"
        due = iso(platform.clock.now() + timedelta(seconds=schedule[checks]))
        store.commit(Changes(payment=payment, expected_version=version,
                             reminders=[Reminder(payment.tenant_id, payment.payment_id, due)]))
        return "still unknown"
    events = apply_result(ctx, None, payment, result)
    if events is None:  # the PSP proved it did not process it: authorization may fail over
        events = [ctx.event(None, payment, "payments.routed", {"psps": payment.route})]
    reminder = action_reminder(ctx, payment, 0) if result.outcome == Outcome.REQUIRES_ACTION else None
    store.commit(Changes(payment=payment, expected_version=version, events=events, reminders=[reminder or clear]))
    return payment.state.value


def _check_action(ctx: StageContext, payment: Payment, clear: Reminder) -> str:
    """Ask the PSP about a payment waiting on the shopper, by the PSP's own reference."""
    attempt, version = payment.current_attempt, payment.version
    ctx.before_psp(payment, "status", attempt.psp, attempt.idempotency_key)
    result = ctx.platform.connector(attempt.psp).status(attempt.idempotency_key, psp_reference=attempt.psp_reference)
    if result.outcome in (Outcome.APPROVED, Outcome.DECLINED):
        events = apply_result(ctx, None, payment, result)
        ctx.store.commit(Changes(payment=payment, expected_version=version, events=events, reminders=[clear]))
        return payment.state.value
    if result.outcome == Outcome.NOT_FOUND:  # no lookup at this PSP: its webhook is the only source
        ctx.store.commit(Changes(reminders=[clear]))
        return "waits for the webhook"
    checks = payment.status_checked(ctx.now())
    reminder = action_reminder(ctx, payment, checks)
    ctx.store.commit(Changes(payment=payment, expected_version=version, reminders=[reminder or clear]))
    return "still waiting on the shopper" if reminder else "waits for the webhook"
