"""The pure decisions of the stages and edges: validation rules, risk, routing, ledger
postings, webhook signatures and API-key authentication."""
from __future__ import annotations

import hashlib
import hmac
from types import SimpleNamespace

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from chalicelib.services import tenants as tenancy
from chalicelib import webhooks
from chalicelib.domain.payment import Payment
from chalicelib.ports import Posting
from chalicelib.stages import risk, routing, settlement
from chalicelib.domain.cards import is_card_number as luhn_valid
from chalicelib.domain.rules import RuleViolation, check_amount, check_instrument, normalize_iban

FAST = settings(max_examples=200, deadline=None, database=None)
AT = "2026-11-25T10:00:00.000000Z"


def payment(amount: int = 1999, currency: str = "EUR", method: str = "card", country: str | None = "DE",
            bin_: str = "424242") -> Payment:
    if method == "card":
        pm = {"type": "card", "card": {"token": "tok_1", "bin": bin_, "last4": "4242", "exp_month": 12,
                                       "exp_year": 2030}}
    else:
        pm = {"type": "bank_account", "bank_account": {"token": "tok_2", "country": "DE", "last4": "3000"}}
    customer = {"id": "c1", **({"country": country} if country else {})}
    return Payment("ten_a", "pay_01JD0000000000000000000001", amount, currency, "automatic", pm, "order-1",
                   customer, "corr-1", AT)


# -- Luhn ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("number", ["4242424242424242", "4000056655665556", "5555555555554444",
                                    "378282246310005", "6011111111111117", "3056930009020004", "4111111111111111",
                                    "4222222222222", "6759649826438453"])
def test_luhn_accepts_known_good_numbers(number):
    assert luhn_valid(number)


@pytest.mark.parametrize("number", ["4242424242424241", "4111111111111112", "1234567812345678",
                                    "79927398710",  # Luhn-valid but only 11 digits
                                    "4242 4242 4242 4242", "4242-4242-4242-4242", "42424242424242424242",
                                    "", "abcdabcdabcdabcd", "+4242424242424242", "4242424242424242\n"])
def test_luhn_refuses_bad_numbers(number):
    assert not luhn_valid(number)


@pytest.mark.parametrize("number", ["４２４２４２４２４２４２４２４２",  # full-width
                                    "٤٢٤٢٤٢٤٢٤٢٤٢٤٢٤٢",  # Arabic-Indic
                                    "424242424242424²"], ids=["fullwidth", "arabic-indic", "superscript"])
def test_luhn_refuses_non_ascii_digits(number):
    assert luhn_valid(number) is False


def _with_check_digit(body: str) -> str:
    for d in "0123456789":
        if luhn_valid(body + d):
            return body + d
    raise AssertionError("no check digit")  # pragma: no cover


digit_bodies = st.text(alphabet="0123456789", min_size=11, max_size=18)


@FAST
@given(digit_bodies)
def test_every_body_has_exactly_one_check_digit(body):
    assert sum(luhn_valid(body + d) for d in "0123456789") == 1


@FAST
@given(digit_bodies, st.data())
def test_changing_any_single_digit_breaks_luhn(body, data):
    number = _with_check_digit(body)
    i = data.draw(st.integers(0, len(number) - 1), label="position")
    new = data.draw(st.sampled_from([d for d in "0123456789" if d != number[i]]), label="digit")
    assert not luhn_valid(number[:i] + new + number[i + 1:])


# -- IBAN --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw", ["DE89370400440532013000", "DE89 3704 0044 0532 0130 00",
                                 "de89 3704 0044 0532 0130 00", "de89370400440532013000",
                                 "  DE89 3704 0044 0532 0130 00 "])
def test_normalize_iban_accepts_spaces_and_lowercase(raw):
    assert normalize_iban(raw) == "DE89370400440532013000"


def test_normalize_iban_other_countries():
    assert normalize_iban("GB82 WEST 1234 5698 7654 32") == "GB82WEST12345698765432"
    assert normalize_iban("fr14 2004 1010 0505 0001 3m02 606") == "FR1420041010050500013M02606"


@pytest.mark.parametrize("raw", ["DE88370400440532013000", "DE89370400440532013001", "DE8937040044053201300",
                                 "XX89370400440532013000", "", "not an iban"],
                         ids=["checksum", "digit", "length", "country", "empty", "garbage"])
def test_normalize_iban_refuses_invalid(raw):
    with pytest.raises(RuleViolation) as info:
        normalize_iban(raw)
    assert info.value.code == "invalid_iban"
    assert info.value.field == "payment_method.bank_account.iban"


def test_check_instrument_dispatches_on_method():
    check_instrument("card", "4242424242424242")
    check_instrument("bank_account", "DE89370400440532013000")
    with pytest.raises(RuleViolation) as info:
        check_instrument("card", "4242424242424241")
    assert (info.value.code, info.value.field) == ("invalid_card_number", "payment_method.card.number")
    with pytest.raises(RuleViolation) as info:
        check_instrument("bank_account", "DE88370400440532013000")
    assert info.value.code == "invalid_iban"


# -- amounts and currencies ---------------------------------------------------------------------------
TENANT = {"currencies": ["EUR", "JPY"], "limits": {"max_amount": 5_000}}


@pytest.mark.parametrize("amount,currency,tenant,code", [
    (0, "EUR", {}, "invalid_amount"),
    (-1, "EUR", {}, "invalid_amount"),
    (5_001, "EUR", TENANT, "amount_over_limit"),
    (10, "ZZZ", {}, "unsupported_currency"),
    (10, "XAU", {}, "unsupported_currency"),
    (10, "eur", {}, "unsupported_currency"),
    (10, "USD", TENANT, "unsupported_currency"),
])
def test_check_amount_refuses(amount, currency, tenant, code):
    with pytest.raises(RuleViolation) as info:
        check_amount(amount, currency, tenant)
    assert info.value.code == code
    assert info.value.field == ("amount" if code in ("invalid_amount", "amount_over_limit") else "currency")


@pytest.mark.parametrize("amount,currency,tenant", [
    (1, "EUR", {}), (5_000, "EUR", TENANT), (5_000, "JPY", TENANT), (10**12, "KWD", {}),
    (10, "USD", {"currencies": [], "limits": {}}), (10, "USD", {"limits": {"max_amount": None}}),
])
def test_check_amount_accepts(amount, currency, tenant):
    check_amount(amount, currency, tenant)


def test_check_amount_message_names_the_limit():
    with pytest.raises(RuleViolation, match="5000"):
        check_amount(5_001, "EUR", TENANT)


# -- risk --------------------------------------------------------------------------------------------
def test_risk_approves_an_ordinary_payment():
    assert risk.assess(payment(), {}, recent_payments=0) == ("approve", 0, [])


def test_risk_reviews_at_the_amount_threshold():
    assert risk.assess(payment(amount=999_999), {}, 0)[0] == "approve"
    decision, score, reasons = risk.assess(payment(amount=1_000_000), {}, 0)
    assert (decision, score) == ("review", 60)
    assert "1000000" in reasons[0]


def test_risk_amount_threshold_is_per_tenant():
    assert risk.assess(payment(amount=500), {"review_amount": 500}, 0)[0] == "review"
    assert risk.assess(payment(amount=2_000_000), {"review_amount": 10_000_000}, 0)[0] == "approve"


def test_risk_reviews_by_velocity():
    assert risk.assess(payment(), {}, recent_payments=30)[0] == "approve"
    decision, score, reasons = risk.assess(payment(), {}, recent_payments=31)
    assert (decision, score) == ("review", 60) and "31" in reasons[0]
    assert risk.assess(payment(), {"velocity_per_hour": 2}, recent_payments=3)[0] == "review"


def test_risk_score_is_capped():
    decision, score, reasons = risk.assess(payment(amount=2_000_000), {}, recent_payments=100)
    assert (decision, score, len(reasons)) == ("review", 100, 2)


@pytest.mark.parametrize("country", ["KP", "IR"])
def test_risk_rejects_blocked_countries(country):
    assert risk.assess(payment(country=country), {}, 0) == ("reject", 100, [f"customer country {country} is blocked"])


def test_risk_country_list_is_per_tenant():
    assert risk.assess(payment(country="RU"), {"blocked_countries": ["RU"]}, 0)[0] == "reject"
    assert risk.assess(payment(country="KP"), {"blocked_countries": []}, 0)[0] == "approve"
    assert risk.assess(payment(country=None), {}, 0)[0] == "approve"


def test_risk_rejects_blocked_bins():
    rules = {"blocked_bins": ["400000"]}
    assert risk.assess(payment(bin_="400000"), rules, 0) == ("reject", 100, ["card BIN 400000 is blocked"])
    assert risk.assess(payment(bin_="424242"), rules, 0)[0] == "approve"
    assert risk.assess(payment(method="bank_account"), rules, 0)[0] == "approve"


def test_risk_reject_wins_over_review():
    assert risk.assess(payment(amount=5_000_000, country="KP"), {}, 99)[0] == "reject"


def test_risk_does_not_mutate_defaults():
    risk.assess(payment(), {"blocked_countries": ["FR"]}, 0)
    assert risk.DEFAULT_RULES["blocked_countries"] == ["KP", "IR"]


# -- routing ---------------------------------------------------------------------------------------
def all_healthy(_: str) -> bool:
    return True


RULES = [
    {"psp": "eu-only", "priority": 1, "currencies": ["EUR"]},
    {"psp": "cards-small", "priority": 2, "methods": ["card"], "max_amount": 10_000},
    {"psp": "anything", "priority": 3},
    {"psp": "bank-only", "priority": 4, "methods": ["bank_account"], "currencies": ["*"]},
]


def test_routing_filters_by_currency():
    assert routing.choose(payment(currency="EUR"), RULES, all_healthy) == ["eu-only", "cards-small", "anything"]
    assert routing.choose(payment(currency="USD"), RULES, all_healthy) == ["cards-small", "anything"]


def test_routing_respects_amount_limits():
    assert "cards-small" in routing.choose(payment(amount=10_000), RULES, all_healthy)
    assert "cards-small" not in routing.choose(payment(amount=10_001), RULES, all_healthy)


def test_routing_filters_by_method():
    assert routing.choose(payment(method="bank_account", currency="USD"), RULES, all_healthy) == [
        "anything", "bank-only"]


def test_routing_skips_unhealthy_psps():
    sick = {"eu-only", "anything"}
    asked = []

    def healthy(psp):
        asked.append(psp)
        return psp not in sick

    assert routing.choose(payment(), RULES, healthy) == ["cards-small"]
    assert set(asked) <= {r["psp"] for r in RULES}


def test_routing_orders_by_priority_not_list_order():
    rules = [{"psp": "c", "priority": 30}, {"psp": "a", "priority": 10}, {"psp": "default"},
             {"psp": "b", "priority": 20}]
    assert routing.choose(payment(), rules, all_healthy) == ["a", "b", "c", "default"]


def test_routing_has_no_duplicates():
    rules = [{"psp": "a", "priority": 1, "currencies": ["EUR"]}, {"psp": "b", "priority": 2},
             {"psp": "a", "priority": 3}]
    assert routing.choose(payment(), rules, all_healthy) == ["a", "b"]
    assert routing.choose(payment(currency="USD"), rules, all_healthy) == ["b", "a"]


def test_routing_with_nothing_suitable_is_empty():
    assert routing.choose(payment(), [], all_healthy) == []
    assert routing.choose(payment(), RULES, lambda psp: False) == []


psp_rules = st.lists(st.fixed_dictionaries(
    {"psp": st.sampled_from(["a", "b", "c", "d"])},
    optional={"priority": st.integers(0, 5), "currencies": st.lists(st.sampled_from(["EUR", "USD", "*"]), max_size=2),
              "methods": st.lists(st.sampled_from(["card", "bank_account"]), max_size=2),
              "max_amount": st.integers(1, 5_000)}), max_size=8)


@FAST
@given(psp_rules, st.sampled_from(["EUR", "USD", "JPY"]), st.sampled_from(["card", "bank_account"]),
       st.integers(1, 6_000), st.sets(st.sampled_from(["a", "b", "c", "d"])))
def test_routing_properties(rules, currency, method, amount, down):
    p = payment(amount=amount, currency=currency, method=method)
    chosen = routing.choose(p, rules, lambda psp: psp not in down)
    assert len(chosen) == len(set(chosen))
    assert not set(chosen) & down
    for psp in chosen:  # each chosen PSP has at least one rule that admits the payment
        assert any(r["psp"] == psp
                   and (not r.get("currencies") or "*" in r["currencies"] or currency in r["currencies"])
                   and method in (r.get("methods") or ["card", "bank_account"])
                   and (r.get("max_amount") is None or amount <= r["max_amount"]) for r in rules)


# -- settlement -------------------------------------------------------------------------------------
def _sums(postings: list[Posting]) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in postings:
        out[p.currency] = out.get(p.currency, 0) + p.amount
    return out


@pytest.mark.parametrize("amount,bps,fee", [
    (10_000, 140, 140), (1999, 140, 28), (1, 140, 0), (36, 140, 1), (35, 140, 0),  # 0.504 -> 1, 0.49 -> 0
    (25, 200, 1), (24, 200, 0),  # exactly half rounds up
    (1_000_000, 0, 0), (1234, 10_000, 1234),
])
def test_fee_rounds_half_up_in_minor_units(amount, bps, fee):
    assert settlement.fee_for(amount, {"fees": {"bps": bps}}) == fee


def test_fee_defaults_when_tenant_has_none():
    assert settlement.fee_for(10_000, {}) == 140
    assert settlement.fee_for(10_000, {"fees": None}) == 140
    assert settlement.fee_for(10_000, {"fees": {}}) == 140


@FAST
@given(st.integers(1, 10**12), st.integers(0, 10_000), st.sampled_from(["EUR", "JPY", "KWD"]))
def test_capture_postings_balance(amount, bps, currency):
    p = payment(amount=amount, currency=currency)
    fee = settlement.fee_for(amount, {"fees": {"bps": bps}})
    assert abs(fee * 10_000 - amount * bps) <= 5_000  # within half a minor unit of the exact fee
    postings = settlement.postings_for_capture(p, "sim-a", amount, fee, "2026-11-25", AT)
    assert _sums(postings) == {currency: 0}
    by_account = {x.account: x.amount for x in postings}
    assert by_account == {"psp_receivable:sim-a": amount, "merchant_payable": -(amount - fee), "platform_fees": -fee}
    assert len({x.txn_id for x in postings}) == 1 and all(x.currency == currency for x in postings)


@FAST
@given(st.integers(1, 10**12))
def test_refund_postings_balance(amount):
    p = payment(currency="JPY")
    postings = settlement.postings_for_refund(p, "sim-b", "re_1", amount, "2026-11-25", AT)
    assert _sums(postings) == {"JPY": 0}
    assert {x.account: x.amount for x in postings} == {"merchant_payable": amount, "psp_receivable:sim-b": -amount}
    assert {x.txn_id for x in postings} == {"txn_re_1"}


def _posting(currency: str, amount: int) -> Posting:
    return Posting("txn_1", "ten_a", "pay_1", "acct", currency, amount, "b", AT)


def test_unbalanced_postings_are_refused():
    with pytest.raises(AssertionError, match="unbalanced"):
        settlement._balanced([_posting("EUR", 10), _posting("EUR", -9)])


def test_balance_is_checked_per_currency():
    # Zero in total but not per currency: +10 EUR against -10 USD is not a balanced transaction.
    with pytest.raises(AssertionError, match="unbalanced"):
        settlement._balanced([_posting("EUR", 10), _posting("USD", -10)])
    ok = [_posting("EUR", 10), _posting("EUR", -10), _posting("USD", 3), _posting("USD", -3)]
    assert settlement._balanced(ok) == ok


# -- webhook signatures ------------------------------------------------------------------------------
SECRET = b"whsec_test"
BODY = b'{"type":"payments.captured","id":"evt_1"}'
NOW = 1_790_000_000


def test_sign_is_hmac_sha256_over_timestamp_and_body():
    header = webhooks.sign(SECRET, NOW, BODY)
    expected = hmac.new(SECRET, f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert header == f"t={NOW},v1={expected}"


def test_verify_accepts_a_fresh_valid_signature():
    header = webhooks.sign(SECRET, NOW, BODY)
    assert webhooks.verify(SECRET, header, BODY, NOW)
    assert webhooks.verify(SECRET, header, BODY, NOW + webhooks.TOLERANCE_S)
    assert webhooks.verify(SECRET, header, BODY, NOW - webhooks.TOLERANCE_S)


def test_verify_refuses_a_tampered_body():
    header = webhooks.sign(SECRET, NOW, BODY)
    assert not webhooks.verify(SECRET, header, BODY.replace(b"captured", b"refunded"), NOW)
    assert not webhooks.verify(SECRET, header, BODY + b" ", NOW)


def test_verify_refuses_the_wrong_secret():
    assert not webhooks.verify(b"whsec_other", webhooks.sign(SECRET, NOW, BODY), BODY, NOW)


def test_verify_refuses_stale_and_future_timestamps():
    header = webhooks.sign(SECRET, NOW, BODY)
    assert not webhooks.verify(SECRET, header, BODY, NOW + webhooks.TOLERANCE_S + 1)
    assert not webhooks.verify(SECRET, header, BODY, NOW - webhooks.TOLERANCE_S - 1)
    assert not webhooks.verify(SECRET, header, BODY, NOW + 10, tolerance_s=5)


def test_verify_refuses_a_timestamp_swapped_into_a_valid_header():
    digest = webhooks.sign(SECRET, NOW, BODY).split("v1=")[1]
    assert not webhooks.verify(SECRET, f"t={NOW + 1},v1={digest}", BODY, NOW)


@pytest.mark.parametrize("header", ["", "garbage", f"t={NOW}", f"v1={'0' * 64}", f"t=abc,v1={'0' * 64}",
                                    f"t={NOW},v1=", f"t={NOW},v1", f"t={NOW},v1={'0' * 64}"])
def test_verify_refuses_malformed_headers(header):
    assert webhooks.verify(SECRET, header, BODY, NOW) is False


@FAST
@given(st.binary(max_size=300), st.binary(min_size=1, max_size=40), st.integers(0, 2**33))
def test_sign_verify_round_trip(body, secret, ts):
    header = webhooks.sign(secret, ts, body)
    assert webhooks.verify(secret, header, body, ts)
    assert not webhooks.verify(secret, header, body + b"x", ts)


def test_verify_refuses_non_ascii_signature():
    assert webhooks.verify(SECRET, f"t={NOW},v1=é", BODY, NOW) is False


# -- API keys ---------------------------------------------------------------------------------------
def test_hash_key_is_keyed_by_the_pepper():
    key = "pk_test_abcdef0123456789"
    a, b = tenancy.hash_key(b"pepper-one", key), tenancy.hash_key(b"pepper-two", key)
    assert a != b
    assert a == tenancy.hash_key(b"pepper-one", key)
    assert a != hashlib.sha256(key.encode()).hexdigest()  # not a plain (unkeyed) digest
    assert a == hmac.new(b"pepper-one", key.encode(), hashlib.sha256).hexdigest()
    assert len(a) == 64 and key not in a


@FAST
@given(st.text(min_size=1, max_size=60), st.text(min_size=1, max_size=60))
def test_hash_key_separates_keys(k1, k2):
    assume(k1 != k2)
    assert tenancy.hash_key(b"p", k1) != tenancy.hash_key(b"p", k2)


def test_new_api_keys_are_prefixed_and_unique():
    keys = {tenancy.new_api_key("test") for _ in range(20)}
    assert len(keys) == 20 and all(k.startswith("pk_test_") for k in keys)
    assert tenancy.new_api_key("live").startswith("pk_live_")
    with pytest.raises(tenancy.TenantError):
        tenancy.new_api_key("prod")


class FakeTenants:
    def __init__(self, by_hash: dict[str, str]):
        self.by_hash, self.lookups = by_hash, []

    def tenant_for_key(self, key_hash: str) -> str | None:
        self.lookups.append(key_hash)
        return self.by_hash.get(key_hash)


PEPPER = b"unit-test-pepper"
GOOD_KEY = "pk_test_Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5"


@pytest.fixture
def platform():
    tenants = FakeTenants({tenancy.hash_key(PEPPER, GOOD_KEY): "ten_a",
                           tenancy.hash_key(PEPPER, "pk_live_" + "x" * 120): "ten_b"})
    return SimpleNamespace(store=SimpleNamespace(tenants=tenants), settings=SimpleNamespace(api_key_pepper=PEPPER))


def test_authenticate_finds_the_tenant(platform):
    assert tenancy.authenticate(platform, f"Bearer {GOOD_KEY}") == "ten_a"
    assert tenancy.authenticate(platform, f"Bearer {GOOD_KEY}  ") == "ten_a"
    assert tenancy.authenticate(platform, "Bearer pk_live_" + "x" * 120) == "ten_b"  # exactly 128 chars
    assert platform.store.tenants.lookups[0] == tenancy.hash_key(PEPPER, GOOD_KEY)


def test_authenticate_unknown_key(platform):
    assert tenancy.authenticate(platform, "Bearer pk_test_unknown") is None
    assert platform.store.tenants.lookups == [tenancy.hash_key(PEPPER, "pk_test_unknown")]


def test_authenticate_needs_the_platform_pepper(platform):
    platform.settings.api_key_pepper = b"another-pepper"
    assert tenancy.authenticate(platform, f"Bearer {GOOD_KEY}") is None


@pytest.mark.parametrize("header", [
    None, "", "Bearer", "Bearer ", "bearer " + GOOD_KEY, "Basic " + GOOD_KEY, GOOD_KEY, "Token " + GOOD_KEY,
    "Bearer sk_test_abc", "Bearer pk_prod_abc", "Bearer PK_TEST_ABC", "Bearer " + GOOD_KEY[1:],
    "Bearer pk_live_" + "x" * 121,
])
def test_authenticate_refuses_malformed_headers_without_a_lookup(platform, header):
    assert tenancy.authenticate(platform, header) is None
    assert platform.store.tenants.lookups == []
