"""Input limits at the API edge, through the real routes: size, strict JSON, no 500 for any body."""
from __future__ import annotations

import json
import uuid

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.strict_json import MAX_BODY_BYTES

from ..integration.conftest import card_body, stack  # noqa: F401 - the in-process platform fixture

POSTS = ["/v1/payments", "/v1/payments/{id}/capture", "/v1/payments/{id}/cancel", "/v1/payments/{id}/refunds"]


def _post(stack, path: str, raw: bytes):
    return stack.post(path.replace("{id}", "pay_01JD0000000000000000000001"), raw,
                      **{"Idempotency-Key": uuid.uuid4().hex})


@pytest.mark.parametrize("path", POSTS)
def test_a_body_over_64_kib_is_a_413_problem(stack, path):
    raw = orjson.dumps({**card_body(), "metadata": {"pad": "x" * MAX_BODY_BYTES}})
    r = _post(stack, path, raw)
    assert r.status_code == 413, r.body
    assert r.headers["Content-Type"] == "application/problem+json"
    doc = json.loads(r.body)
    assert doc["status"] == 413 and doc["reason"] == "too_large" and "65536" in doc["detail"]


def test_a_body_just_under_the_limit_is_not_refused_for_its_size(stack):
    body = card_body()
    base = len(orjson.dumps({**body, "metadata": {"pad": ""}}))
    raw = orjson.dumps({**body, "metadata": {"pad": "x" * (MAX_BODY_BYTES - base)}})
    assert len(raw) == MAX_BODY_BYTES
    assert _post(stack, "/v1/payments", raw).status_code != 413


@pytest.mark.parametrize("raw, reason", [
    (b'{"amount": 1999, "amount": 1, "currency": "EUR"}', "duplicate_key"),
    (b'{"amount": 9007199254740993, "currency": "EUR"}', "number_too_large"),
    (b'{"amount": 1e400, "currency": "EUR"}', "number_too_large"),
    (b'{"amount": NaN, "currency": "EUR"}', "non_finite_number"),
    (b'{"amount": -Infinity, "currency": "EUR"}', "non_finite_number"),
    (b"[" * 40 + b"]" * 40, "too_deep"),
])
@pytest.mark.parametrize("path", POSTS)
def test_ambiguous_json_is_a_400_naming_why(stack, path, raw, reason):
    r = _post(stack, path, raw)
    assert r.status_code == 400, r.body
    doc = json.loads(r.body)
    assert doc["title"] == "Invalid JSON" and doc["reason"] == reason, doc


def test_duplicate_card_number_key_cannot_smuggle_a_second_card(stack):
    # Last-wins parsers would charge the second number; a first-wins validator would check the first.
    raw = (b'{"amount": 1999, "currency": "EUR", "payment_method": {"type": "card", "card": '
           b'{"number": "4242424242424242", "number": "4000000000000002", "exp_month": 12, "exp_year": 2030}}}')
    r = _post(stack, "/v1/payments", raw)
    assert r.status_code == 400 and json.loads(r.body)["reason"] == "duplicate_key"
    assert stack.platform.store.payments.list_payments(stack.tenant_id, None, 10, None)[0] == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["amount", "currency", "payment_method", "type", "card", "number", "exp_month",
                         "exp_year", "cvc", "bank_account", "iban", "capture", "reference", "customer",
                         "metadata", "reason", "x"]), inner, max_size=5), max_leaves=15)


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.sampled_from(POSTS), json_values.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=100))
def test_no_body_gets_a_500(stack, path, raw):
    r = _post(stack, path, raw)
    assert r.status_code < 500, (raw, r.body)
    assert r.status_code in (202, 400, 404, 409, 413, 415, 422), (raw, r.status_code, r.body)


def test_a_problem_detail_never_echoes_a_card_number(stack):
    # An unknown property named like a card number is quoted back in the 400's detail: masked.
    body = {**card_body(), "4000000000000002": 1}
    r = _post(stack, "/v1/payments", json.dumps(body).encode())
    assert r.status_code == 400
    assert b"4000000000000002" not in r.body and b"****0002" in r.body, r.body
