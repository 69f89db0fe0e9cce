"""Routing: pick the PSPs that may take this payment, in the tenant's order of preference.

A PSP qualifies when it supports the currency and payment method, the amount
is within its limit, and it is healthy. The authorization stage walks the
list, failing over on soft declines.
"""
from __future__ import annotations

from typing import Any, Callable

from ..domain.events import Event
from ..domain.payment import Payment
from ..domain.states import State
from .context import StageContext

NAME = "routing"
CONSUMES = ("payments.screened",)


def choose(payment: Payment, rules: list[dict[str, Any]], healthy: Callable[[str], bool]) -> list[str]:
    """Pure decision: the PSP names to try, best first."""
    method = payment.payment_method["type"]
    chosen = []
    for rule in sorted(rules, key=lambda r: r.get("priority", 100)):
        currencies = rule.get("currencies") or ["*"]
        if "*" not in currencies and payment.currency not in currencies:
            continue
        if method not in (rule.get("methods") or ["card", "bank_account"]):
            continue
        if rule.get("max_amount") is not None and payment.amount > rule["max_amount"]:
            continue
        if not healthy(rule["psp"]):
            continue
        if rule["psp"] not in chosen:
            chosen.append(rule["psp"])
    return chosen


def handle(event: Event, ctx: StageContext) -> None:
    payment = ctx.load(event)
    if payment.state != State.SCREENED:
        return ctx.skip(event, payment, f"already {payment.state.value}")
    version = payment.version
    tenant = ctx.tenant(payment.tenant_id)
    psps = choose(payment, tenant.get("routing") or [], ctx.platform.psp_healthy)
    if psps:
        payment.set_route(ctx.now(), psps)
        out = ctx.event(event, payment, "payments.routed", {"psps": psps})
    else:
        msg = f"no healthy PSP takes {payment.payment_method['type']} in {payment.currency} for {payment.amount}"
        payment.fail(ctx.now(), NAME, "no_route", msg)
        out = ctx.event(event, payment, "payments.failed",
                        {"status": payment.status, "code": "no_route", "message": msg, "stage": NAME})
    ctx.commit(event, payment, version, [out])
