"""The payment's business rules: amount and currency, tenant limits, the instrument's checksum.

The API applies them at the edge (422 there, services/payments.py) and the validation stage
applies them again to what was stored (stages/validation.py), so nothing reaches risk unchecked.
"""
from __future__ import annotations

from typing import Any

from schwifty import IBAN
from schwifty.exceptions import SchwiftyException

from .cards import is_card_number
from .money import is_currency


class RuleViolation(ValueError):
    """A rule the payment breaks: `code` for machines, the message for people, `field` where."""

    def __init__(self, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.code, self.field = code, field


def normalize_iban(raw: str) -> str:
    """The IBAN in electronic form, or RuleViolation (checksum, length, country)."""
    try:
        return IBAN(raw).compact
    except SchwiftyException as e:
        raise RuleViolation("invalid_iban", f"bank_account.iban is not a valid IBAN: {e}",
                            "payment_method.bank_account.iban") from None


def check_amount(amount: int, currency: str, tenant: dict[str, Any]) -> None:
    """An ISO 4217 currency the tenant accepts, and an amount above 0 and within its limit."""
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
        if not is_card_number(secret):
            raise RuleViolation("invalid_card_number", "card number fails the Luhn check",
                                "payment_method.card.number")
    else:
        normalize_iban(secret)
