"""Money: integer minor units, exponents from ISO 4217 (iso4217 package), one currency at a time."""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.domain.money import Money, UnknownCurrency, currency_exponent, is_currency

FAST = settings(max_examples=200, deadline=None, database=None)
CURRENCIES = ("EUR", "USD", "JPY", "KWD", "BHD", "CLF", "GBP", "ISK")


@pytest.mark.parametrize("code,exponent", [("EUR", 2), ("USD", 2), ("JPY", 0), ("KRW", 0), ("ISK", 0),
                                           ("KWD", 3), ("BHD", 3), ("TND", 3), ("CLF", 4)])
def test_exponent_comes_from_iso_4217(code, exponent):
    assert currency_exponent(code) == exponent


@pytest.mark.parametrize("code", ["ZZZ", "EURO", "eur", "", "E", None, 978])
def test_unknown_currency_is_refused(code):
    with pytest.raises(UnknownCurrency):
        currency_exponent(code)
    assert is_currency(code) is False


@pytest.mark.parametrize("code", ["XAU", "XAG", "XDR", "XTS", "XXX"])
def test_currencies_without_minor_unit_are_refused(code):
    with pytest.raises(UnknownCurrency, match="no minor unit"):
        currency_exponent(code)
    with pytest.raises(UnknownCurrency):
        Money(1, code)


def test_unknown_currency_is_a_value_error():
    # Callers that map ValueError to 422 keep working.
    assert issubclass(UnknownCurrency, ValueError)


@pytest.mark.parametrize("amount", [1.5, "100", Decimal("1"), True, None])
def test_amount_must_be_integer_minor_units(amount):
    with pytest.raises(TypeError):
        Money(amount, "EUR")


def test_money_rejects_unknown_currency_at_construction():
    with pytest.raises(UnknownCurrency):
        Money(100, "ABC")


@pytest.mark.parametrize("money,text", [
    (Money(1999, "EUR"), "19.99 EUR"),
    (Money(5, "EUR"), "0.05 EUR"),
    (Money(0, "USD"), "0.00 USD"),
    (Money(-250, "EUR"), "-2.50 EUR"),
    (Money(1999, "JPY"), "1999 JPY"),
    (Money(1, "KWD"), "0.001 KWD"),
    (Money(123456, "BHD"), "123.456 BHD"),
    (Money(10**15 + 1, "EUR"), "10000000000000.01 EUR"),
])
def test_str_uses_the_currency_exponent(money, text):
    assert str(money) == text


def test_decimal_value():
    assert Money(1999, "EUR").decimal == Decimal("19.99")
    assert Money(7, "KWD").decimal == Decimal("0.007")
    assert Money(7, "JPY").decimal == Decimal(7)


def test_arithmetic_in_one_currency():
    assert Money(1000, "EUR") + Money(999, "EUR") == Money(1999, "EUR")
    assert Money(1000, "EUR") - Money(1999, "EUR") == Money(-999, "EUR")
    assert -Money(5, "JPY") == Money(-5, "JPY")


@pytest.mark.parametrize("op", [lambda a, b: a + b, lambda a, b: a - b], ids=["add", "sub"])
@pytest.mark.parametrize("other", ["USD", "JPY"])
def test_arithmetic_refuses_mixed_currencies(op, other):
    with pytest.raises(ValueError, match="currency mismatch"):
        op(Money(100, "EUR"), Money(100, other))


def test_money_is_immutable():
    m = Money(1, "EUR")
    with pytest.raises(AttributeError):
        m.amount = 2  # type: ignore[misc]


amounts = st.integers(min_value=-(10**15), max_value=10**15)


@FAST
@given(amounts, amounts, st.sampled_from(CURRENCIES))
def test_add_then_sub_round_trips(a, b, currency):
    x, y = Money(a, currency), Money(b, currency)
    assert (x + y) - y == x
    assert (x - y) + y == x
    assert x + y == y + x
    assert (x + y).currency == currency


@FAST
@given(amounts, st.sampled_from(CURRENCIES))
def test_str_parses_back_to_the_same_minor_units(a, currency):
    text, code = str(Money(a, currency)).split(" ")
    assert code == currency
    assert Decimal(text).scaleb(currency_exponent(currency)) == a
    decimals = text.split(".")[1] if "." in text else ""
    assert len(decimals) == currency_exponent(currency)
