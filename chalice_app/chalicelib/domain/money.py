"""Money as integer minor units with the currency's ISO 4217 exponent."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from iso4217 import Currency


class UnknownCurrency(ValueError):
    pass


def currency_exponent(code: str) -> int:
    """Minor-unit exponent of an ISO 4217 currency (EUR 2, JPY 0, KWD 3)."""
    try:
        exponent = Currency(code).exponent
    except ValueError:
        raise UnknownCurrency(f"unknown currency {code!r}") from None
    if exponent is None:  # funds and metals (XAU, XDR...) have no minor unit
        raise UnknownCurrency(f"currency {code!r} has no minor unit")
    return exponent


def is_currency(code: str) -> bool:
    try:
        currency_exponent(code)
    except UnknownCurrency:
        return False
    return True


@dataclass(frozen=True, order=True)
class Money:
    amount: int  # minor units: 1999 EUR = 19.99
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, int) or isinstance(self.amount, bool):
            raise TypeError("Money.amount must be an int of minor units")
        currency_exponent(self.currency)

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"currency mismatch: {self.currency} vs {other.currency}")

    @property
    def decimal(self) -> Decimal:
        return Decimal(self.amount).scaleb(-currency_exponent(self.currency))

    def __str__(self) -> str:
        exp = currency_exponent(self.currency)
        return f"{self.decimal:.{exp}f} {self.currency}"
