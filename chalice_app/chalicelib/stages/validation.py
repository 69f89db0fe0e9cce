"""Validation: the payment's rules (domain/rules.py) applied again to what was stored.

The API applies the same rules at the edge (422 there); here they run on the stored
payment and its vaulted instrument, so nothing reaches risk unchecked.
"""
from __future__ import annotations

from ..domain.events import Event
from ..domain.rules import RuleViolation, check_amount, check_instrument
from ..domain.states import State
from ..errors import PermanentError
from .context import StageContext

NAME = "validation"
CONSUMES = ("payments.initiated",)


def handle(event: Event, ctx: StageContext) -> None:
    payment = ctx.load(event)
    if payment.state != State.INITIATED:
        return ctx.skip(event, payment, f"already {payment.state.value}")
    version = payment.version
    tenant = ctx.tenant(payment.tenant_id)
    method = payment.payment_method
    kind = method["type"]
    try:
        check_amount(payment.amount, payment.currency, tenant)
        check_instrument(kind, ctx.platform.vault.reveal(payment.tenant_id, method[kind]["token"]))
    except RuleViolation as v:
        payment.fail(ctx.now(), NAME, v.code, str(v))
        out = ctx.event(event, payment, "payments.failed",
                        {"status": payment.status, "code": v.code, "message": str(v), "stage": NAME})
        ctx.commit(event, payment, version, [out])
        return
    except LookupError as e:  # vault token missing: data loss we must not paper over
        raise PermanentError(str(e)) from None
    payment.validate(ctx.now())
    out = ctx.event(event, payment, "payments.validated", {"amount": payment.amount, "currency": payment.currency})
    ctx.commit(event, payment, version, [out])
