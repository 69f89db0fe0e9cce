"""Every parser at the edge, fuzzed: strict JSON, card numbers, IBANs, amounts, headers.

Each property states what the parser must do for *any* input: refuse with its own
error (never crash with another one), and never accept a body two parsers could
read differently.
"""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import orjson
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from chalicelib.services import tenants as tenancy
from chalicelib import webhooks
from chalicelib.api.routes import _correlation_id
from chalicelib import strict_json
from chalicelib.domain.cards import holds_pan
from chalicelib.strict_json import MAX_SAFE_INTEGER, StrictJsonError
from chalicelib.domain.cards import is_card_number as luhn_valid
from chalicelib.domain.rules import RuleViolation, check_amount, check_instrument, normalize_iban

FUZZ = settings(max_examples=300, deadline=None, database=None)

safe_ints = st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
scalars = st.none() | st.booleans() | safe_ints | st.text(max_size=20) | \
    st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=False, min_value=-1e15, max_value=1e15)
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                         | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)


# -- strict JSON ----------------------------------------------------------------------------------
@FUZZ
@given(documents)
def test_strict_json_reads_every_plain_document_as_orjson_does(doc):
    raw = orjson.dumps(doc)
    assert strict_json.loads(raw) == orjson.loads(raw)


@FUZZ
@given(st.dictionaries(st.text(max_size=8), scalars, min_size=1, max_size=4), st.data())
def test_strict_json_refuses_any_duplicate_key(obj, data):
    key = data.draw(st.sampled_from(sorted(obj)), label="repeated key")
    value = data.draw(scalars, label="second value")
    raw = orjson.dumps(obj)[:-1] + b"," + orjson.dumps(key) + b":" + orjson.dumps(value) + b"}"
    with pytest.raises(StrictJsonError) as info:
        strict_json.loads(raw)
    assert info.value.reason == "duplicate_key"


@FUZZ
@given((st.integers(MAX_SAFE_INTEGER + 1, 10 ** 39) | st.integers(-10 ** 39, -MAX_SAFE_INTEGER - 1)))
@example(MAX_SAFE_INTEGER + 1)
@example(-MAX_SAFE_INTEGER - 1)
def test_strict_json_refuses_integers_beyond_2_53(n):
    with pytest.raises(StrictJsonError) as info:
        strict_json.loads(f'{{"amount": {n}}}'.encode())
    assert info.value.reason == "number_too_large"


@pytest.mark.parametrize("n", [MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, 0, 1999])
def test_strict_json_accepts_integers_up_to_2_53(n):
    assert strict_json.loads(f'{{"amount": {n}}}'.encode()) == {"amount": n}


@pytest.mark.parametrize("raw", [b'{"amount": 1e400}', b'{"amount": -1e309}', b'{"amount": 1e999999999}',
                                 b'{"amount": 1e16}', b'{"amount": 1.0e300}', b'[0.1e-99999]',
                                 b"[" + b"9" * 500 + b"]"])
def test_strict_json_refuses_huge_numbers(raw):
    with pytest.raises(StrictJsonError) as info:
        strict_json.loads(raw)
    assert info.value.reason == "number_too_large"


@pytest.mark.parametrize("raw", [b'{"amount": NaN}', b'{"amount": Infinity}', b'{"amount": -Infinity}', b"NaN"])
def test_strict_json_refuses_nan_and_infinity(raw):
    with pytest.raises(StrictJsonError) as info:
        strict_json.loads(raw)
    assert info.value.reason == "non_finite_number"


@pytest.mark.parametrize("raw, reason", [
    (b"[" * 33 + b"]" * 33, "too_deep"), (b"[" * 10000, "too_deep"),
    (b'{"a": 1} x', "invalid_json"), (b"\xef\xbb\xbf{}", "invalid_json"), (b'"\\ud800"', "invalid_json"),
    (b"\xff\xfe", "not_utf8"), (b" " * (strict_json.MAX_BODY_BYTES + 1), "too_large"),
    (b'{"a": "x\ny"}', "invalid_json")])
def test_strict_json_refusals_name_their_reason(raw, reason):
    with pytest.raises(StrictJsonError) as info:
        strict_json.loads(raw)
    assert info.value.reason == reason


@FUZZ
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_strict_json_never_fails_with_anything_but_its_own_error(raw):
    try:
        value = strict_json.loads(raw)
    except StrictJsonError:
        return
    # Accepted: the stdlib reads the same document the same way, and it re-encodes.
    assert value == json.loads(raw)
    orjson.dumps(value)


# -- card numbers ---------------------------------------------------------------------------------
@FUZZ
@given(st.text(max_size=25))
def test_check_instrument_card_accepts_only_ascii_luhn_digits(raw):
    try:
        check_instrument("card", raw)
    except RuleViolation as v:
        assert v.code == "invalid_card_number"
        return
    assert raw.isascii() and raw.isdigit() and 12 <= len(raw) <= 19 and luhn_valid(raw)


# -- IBAN -----------------------------------------------------------------------------------------
@FUZZ
@given(st.text(max_size=40) | st.from_regex(r"[A-Z]{2}[0-9]{2}[A-Z0-9 ]{10,30}", fullmatch=True))
def test_normalize_iban_refuses_with_rule_violation_only(raw):
    try:
        iban = normalize_iban(raw)
    except RuleViolation as v:
        assert v.code == "invalid_iban"
        return
    # Accepted: electronic form, and the ISO 7064 mod-97 check holds.
    assert iban.isascii() and iban.isalnum() and iban == iban.upper()
    assert int("".join(str(int(c, 36)) for c in iban[4:] + iban[:4])) % 97 == 1


@FUZZ
@given(st.integers(4, 21), st.sampled_from("0123456789"))
def test_any_single_digit_change_to_an_iban_is_refused(position, digit):
    good = "DE89370400440532013000"
    assume(good[position] != digit)
    with pytest.raises(RuleViolation):
        normalize_iban(good[:position] + digit + good[position + 1:])


# -- amounts --------------------------------------------------------------------------------------
TENANT = {"currencies": [], "limits": {"max_amount": 5_000_000}}


@FUZZ
@given(st.integers(-2 ** 63, 2 ** 63), st.text(max_size=5) | st.sampled_from(["EUR", "USD", "JPY", "XXX", "BHD"]))
def test_check_amount_accepts_only_positive_amounts_within_the_limit(amount, currency):
    try:
        check_amount(amount, currency, TENANT)
    except RuleViolation as v:
        assert v.code in {"unsupported_currency", "invalid_amount", "amount_over_limit"}
        return
    assert 0 < amount <= 5_000_000 and len(currency) == 3


# -- headers --------------------------------------------------------------------------------------
class _Tenants:
    def __init__(self, known: dict[str, str]):
        self.known, self.asked = known, []

    def tenant_for_key(self, key_hash: str):
        self.asked.append(key_hash)
        return self.known.get(key_hash)


PEPPER = b"test-pepper"
GOOD_KEY = "pk_test_" + "a" * 32


def _platform() -> SimpleNamespace:
    return SimpleNamespace(settings=SimpleNamespace(api_key_pepper=PEPPER),
                           store=SimpleNamespace(tenants=_Tenants({tenancy.hash_key(PEPPER, GOOD_KEY): "ten_a"})))


@FUZZ
@given(st.none() | st.text(max_size=200))
@example("Bearer " + GOOD_KEY)
def test_authorization_header_yields_a_tenant_only_for_a_registered_key(header):
    platform = _platform()
    tenant = tenancy.authenticate(platform, header)
    assert tenant in (None, "ten_a")
    if tenant is not None:
        assert header.startswith("Bearer ") and header[7:].strip() == GOOD_KEY
    # The raw key is never what the directory sees: only its keyed hash.
    assert all(len(h) == 64 and GOOD_KEY not in h for h in platform.store.tenants.asked)


@FUZZ
@given(st.none() | st.text(max_size=300))
def test_correlation_id_header_is_echoed_only_when_short_and_printable(given_id):
    request = SimpleNamespace(headers={"x-correlation-id": given_id} if given_id is not None else {})
    corr = _correlation_id(request)
    if given_id and 0 < len(given_id) <= 128 and given_id.isascii() and given_id.isprintable() and not holds_pan(given_id):
        assert corr == given_id
    else:
        assert corr.startswith("corr_") and len(corr) == 37


@FUZZ
@given(st.text(max_size=120), st.binary(max_size=64))
def test_webhook_signature_header_never_crashes_and_rejects_forgeries(header, body):
    assert webhooks.verify(b"secret", header, body, now=1_700_000_000) is False or \
        header == webhooks.sign(b"secret", int(dict(p.split("=", 1) for p in header.split(","))["t"]), body)


@FUZZ
@given(st.binary(max_size=64), st.integers(1_699_999_000, 1_700_001_000))
def test_webhook_signature_round_trips_within_tolerance(body, t):
    header = webhooks.sign(b"secret", t, body)
    assert webhooks.verify(b"secret", header, body, now=1_700_000_000) == (abs(t - 1_700_000_000) <= 300)
    assert not webhooks.verify(b"other", header, body, now=1_700_000_000)


def test_fuzz_profile_is_not_trivial():
    assert FUZZ.max_examples >= 300 and not math.isnan(0.0)
