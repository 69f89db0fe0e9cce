"""Validation: amount and currency rules, tenant limits, Luhn for cards, IBAN for bank accounts.

`check_request` is the same rule set the API applies at the edge (422 there);
here it runs again on what was stored, so nothing reaches risk unchecked.
"""
from __future__ import annotations

from typing import Any

from schwifty import IBAN
from schwifty.exceptions import SchwiftyException

from ..domain.events import Event
from ..domain.money import is_currency
from ..domain.states import State
from ..errors import PermanentError
from ..observability.logmask import luhn_ok
from .context import StageContext

NAME = "validation"
CONSUMES = ("payments.initiated",)


class RuleViolation(ValueError):
    def __init__(self, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.code, self.field = code, field


def luhn_valid(number: str) -> bool:
    """A card number: 12-19 ASCII digits passing the Luhn check (the log mask's own check)."""
    return number.isascii() and number.isdigit() and 12 <= len(number) <= 19 and luhn_ok(number)


def normalize_iban(raw: str) -> str:
    """The IBAN in electronic form, or RuleViolation (checksum, length, country)."""
    try:
        return IBAN(raw).compact
    except SchwiftyException as e:
        raise RuleViolation("invalid_iban", f"bank_account.iban is not a valid IBAN: {e}",
                            "payment_method.bank_account.iban") from None


def check_amount(amount: int, currency: str, tenant: dict[str, Any]) -> None:
    if not is_currency(currency):
        raise RuleViolation("unsupported_currency", f"{currency} is not an ISO 4217 currency with minor units",
                            "currency")
    allowed = tenant.get("currencies") or []
    if allowed and currency not in allowed:
        raise RuleViolation("unsupported_currency", f"currency {currency} is not enabled for this tenant",
                            "currency")
    if amount <= 0:
        raise RuleViolation("invalid_amount", "amount must be greater than 0", "amount")
    limit = (tenant.get("limits") or {}).get("max_amount")
    if limit is not None and amount > limit:
        raise RuleViolation("amount_over_limit", f"amount {amount} exceeds this tenant's limit of {limit}",
                            "amount")


def check_instrument(method_type: str, secret: str) -> None:
    """Luhn for a card number, the IBAN checksum for a bank account."""
    if method_type == "card":
        if not luhn_valid(secret):
            raise RuleViolation("invalid_card_number", "card number fails the Luhn check",
                                "payment_method.card.number")
    else:
        normalize_iban(secret)


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
