"""The payment's business rules: amount and currency, tenant limits, the instrument's checksum.

The API applies them at the edge (422 there, services/payments.py) and the validation stage
applies them again to what was stored (stages/validation.py), so nothing reaches risk unchecked.
"""
from __future__ import annotations

from datetime import date
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


MAX_CARD_LIFETIME_YEARS = 20  # issuers print at most a few years ahead; 20 leaves room and still catches typos


def check_expiry(exp_month: Any, exp_year: Any, today: date) -> None:
    """A card's expiry that exists and has not passed. A card is good through the last day of its
    expiry month, so 05/2026 is still valid on 31 May 2026 and expired on 1 June. `today` comes from
    the injected clock (UTC), so tests move time instead of waiting for it."""
    if isinstance(exp_month, bool) or not isinstance(exp_month, int) or not 1 <= exp_month <= 12:
        raise RuleViolation("invalid_expiry", f"expiry month {exp_month!r} is not a month (1-12)",
                            "payment_method.card.exp_month")
    if isinstance(exp_year, bool) or not isinstance(exp_year, int) \
            or not 0 < exp_year <= today.year + MAX_CARD_LIFETIME_YEARS:
        raise RuleViolation("invalid_expiry", f"expiry year {exp_year!r} is not a year a card can expire in "
                            f"(at most {MAX_CARD_LIFETIME_YEARS} years ahead)", "payment_method.card.exp_year")
    if (exp_year, exp_month) < (today.year, today.month):
        raise RuleViolation("card_expired", f"the card expired at the end of {exp_month:02d}/{exp_year}",
                            "payment_method.card.exp_year")


def check_instrument(method_type: str, secret: str) -> None:
    """Luhn for a card number, the IBAN checksum for a bank account."""
    if method_type == "card":
        if not is_card_number(secret):
            raise RuleViolation("invalid_card_number", "card number fails the Luhn check",
                                "payment_method.card.number")
    else:
        normalize_iban(secret)
