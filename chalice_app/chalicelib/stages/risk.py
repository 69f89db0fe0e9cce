"""Risk: velocity per customer, amount threshold, country and BIN blocklists -> approve / review / reject."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from ..clock import iso
from ..domain.events import Event
from ..domain.payment import Payment
from ..domain.states import State
from .context import StageContext

NAME = "risk"
CONSUMES = ("payments.validated",)

DEFAULT_RULES = {
    "velocity_per_hour": 30,        # payments per customer per hour before review
    "review_amount": 1_000_000,     # minor units at or above which a human looks
    "blocked_countries": ["KP", "IR"],
    "blocked_bins": [],
}


def assess(payment: Payment, rules: dict[str, Any], recent_payments: int) -> tuple[str, int, list[str]]:
    """Pure decision: (approve|review|reject, score 0-100, reasons)."""
    rules = {**DEFAULT_RULES, **rules}
    reasons: list[str] = []
    score = 0
    country = (payment.customer or {}).get("country")
    if country and country in rules["blocked_countries"]:
        return "reject", 100, [f"customer country {country} is blocked"]
    card = payment.payment_method.get("card") or {}
    if card.get("bin") and card["bin"] in rules["blocked_bins"]:
        return "reject", 100, [f"card BIN {card['bin']} is blocked"]
    if payment.amount >= rules["review_amount"]:
        score += 60
        reasons.append(f"amount {payment.amount} at or above review threshold {rules['review_amount']}")
    if recent_payments > rules["velocity_per_hour"]:
        score += 60
        reasons.append(f"{recent_payments} payments by this customer in the last hour")
    score = min(score, 100)
    return ("review" if score >= 60 else "approve"), score, reasons


def handle(event: Event, ctx: StageContext) -> None:
    payment = ctx.load(event)
    if payment.state != State.VALIDATED:
        return ctx.skip(event, payment, f"already {payment.state.value}")
    version = payment.version
    tenant = ctx.tenant(payment.tenant_id)
    customer_id = (payment.customer or {}).get("id")
    recent = 0
    if customer_id:
        since = iso(ctx.clock.now() - timedelta(hours=1))
        recent = ctx.store.payments.count_recent_payments(payment.tenant_id, customer_id, since)
    decision, score, reasons = assess(payment, tenant.get("risk") or {}, recent)
    payment.screen(ctx.now(), decision, score, reasons)
    if decision == "approve":
        out = ctx.event(event, payment, "payments.screened", {"decision": decision, "score": score})
    else:
        out = ctx.event(event, payment, "payments.failed", {
            "status": payment.status, "code": payment.failure["code"], "message": payment.failure["message"],
            "stage": NAME})
    ctx.commit(event, payment, version, [out])
