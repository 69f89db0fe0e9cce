"""The Connector contract, run against every real-PSP connector over its official SDK and a local
fake of that PSP (laptop/psp_fakes/). Adding a PSP = one entry in HARNESSES.

What each PSP answers differently is in the harness (card numbers, what a follow-up returns);
everything the platform relies on is asserted the same way for both.
"""
from __future__ import annotations

import json
import logging
import socket
import uuid
from dataclasses import dataclass, replace
from typing import Any, Callable
from urllib.parse import parse_qsl

import pytest

from chalicelib.connectors import build_connector
from chalicelib.domain.psp import ErrorClass, Outcome
from chalicelib.ports import AuthorizeRequest
from laptop.psp_fakes import GARBAGE, HANG, RESET, SERVER_ERROR, UNAVAILABLE, AdyenFake, StripeFake, serve

TIMEOUT_S = 1.5  # generous: the suite runs on a shared, busy machine; a hang test waits 3x this


@dataclass
class Harness:
    kind: str
    fake: Any
    url: str
    cards: dict[str, str]          # behaviour -> card number, from the PSP's own test cards where it has them
    follow_up: Outcome             # what capture/void/refund answer: Stripe final, Adyen "received"
    auth_path: str                 # where authorize lands on the fake

    def connector(self, **cfg: Any):
        base = {"name": f"{self.kind}-eu", "type": self.kind, "api_key": self.fake.api_key, "base_url": self.url,
                "timeout_s": TIMEOUT_S}
        if self.kind == "adyen":
            base["merchant_account"] = self.fake.merchant_account
        return build_connector({**base, **cfg})

    def state(self, ref: str) -> tuple[str, int, int]:
        """(status, captured, refunded) of a payment as the fake holds it."""
        if self.kind == "stripe":
            pi = self.fake.intents[ref]
            refunded = sum(r["amount"] for r in self.fake.refunds.values() if r["payment_intent"] == ref)
            return pi["status"], pi["amount_received"], refunded
        p = self.fake.payments[ref]
        return p["status"], p["captured"], p["refunded"]


COMMON = {"hard_decline": "4000000000000002", "insufficient_funds": "4000000000009995", "fraud": "4100000000000019",
          "soft_decline": "4000000000000119"}
HARNESSES: dict[str, Callable[[], tuple[Any, dict[str, str], Outcome, str]]] = {
    "stripe": lambda: (StripeFake(), {**COMMON, "approve": "4242424242424242", "three_ds": "4000002760003184"},
                       Outcome.APPROVED, "/v1/payment_intents"),
    "adyen": lambda: (AdyenFake(), {**COMMON, "approve": "4111111145551142", "three_ds": "4917610000000000",
                                    "three_ds_redirect": "4212345678901237"}, Outcome.PENDING, "/v72/payments"),
}
FINAL_STATUS = {("stripe", "manual"): "requires_capture", ("stripe", "auto"): "succeeded",
                ("stripe", "captured"): "succeeded", ("stripe", "voided"): "canceled",
                ("adyen", "manual"): "authorised", ("adyen", "auto"): "captured",
                ("adyen", "captured"): "captured", ("adyen", "voided"): "cancelled"}


@pytest.fixture(params=sorted(HARNESSES))
def psp(request):
    fake, cards, follow_up, auth_path = HARNESSES[request.param]()
    fake.hang_s = TIMEOUT_S * 3
    server, thread = serve(fake)
    yield Harness(request.param, fake, server.url, cards, follow_up, auth_path)
    server.shutdown()
    server.server_close()
    thread.join(2)


def auth(number: str, key: str | None = None, amount: int = 1000, currency: str = "EUR", capture: bool = False,
         exp: tuple[int, int] = (12, 2030)) -> AuthorizeRequest:
    return AuthorizeRequest(key or f"pay_{uuid.uuid4().hex[:20]}-1", amount, currency,
                            {"number": number, "exp_month": exp[0], "exp_year": exp[1]}, f"pay_{uuid.uuid4().hex[:20]}",
                            "corr-" + uuid.uuid4().hex[:12], capture=capture)


def authorized(psp: Harness, **kw: Any) -> str:
    result = psp.connector().authorize(auth(psp.cards["approve"], **kw))
    assert result.outcome is Outcome.APPROVED, result
    return result.psp_reference


# -- flows ------------------------------------------------------------------------------------------
def test_authorize_with_manual_capture_holds_the_amount(psp):
    ref = authorized(psp)
    assert psp.state(ref) == (FINAL_STATUS[psp.kind, "manual"], 0, 0)


def test_authorize_with_automatic_capture_captures_in_the_same_call(psp):
    ref = authorized(psp, capture=True)
    assert psp.state(ref) == (FINAL_STATUS[psp.kind, "auto"], 1000, 0)


@pytest.mark.parametrize("amount", [1000, 600])
def test_capture_full_or_partial(psp, amount):
    ref = authorized(psp)
    result = psp.connector().capture(ref, amount, "EUR", f"cap-{uuid.uuid4().hex}")
    assert result.outcome is psp.follow_up, result
    if psp.follow_up is Outcome.PENDING:  # Adyen: "received", the result comes by webhook
        assert (result.code, result.error_class) == ("received", None) and result.psp_reference
    assert psp.state(ref) == (FINAL_STATUS[psp.kind, "captured"], amount, 0)


def test_void_releases_an_uncaptured_authorization(psp):
    ref = authorized(psp)
    result = psp.connector().void(ref, f"void-{uuid.uuid4().hex}")
    assert result.outcome is psp.follow_up, result
    assert psp.state(ref)[0] == FINAL_STATUS[psp.kind, "voided"]


def test_refund_partial_then_the_rest(psp):
    ref = authorized(psp, capture=True)
    c = psp.connector()
    assert c.refund(ref, 300, "EUR", f"ref-{uuid.uuid4().hex}").outcome is psp.follow_up
    assert psp.state(ref)[2] == 300
    assert c.refund(ref, 700, "EUR", f"ref-{uuid.uuid4().hex}").outcome is psp.follow_up
    assert psp.state(ref)[2] == 1000


def test_a_follow_up_the_psp_refuses_is_final_not_retried(psp):
    # capture of a reference the PSP does not know: refused, not processed; nowhere to cascade
    result = psp.connector().capture("pi_nope" if psp.kind == "stripe" else "ZZZZZZZZZZZZZZZZ", 100, "EUR", "cap-x")
    assert (result.outcome, result.error_class) == (Outcome.DECLINED, ErrorClass.PSP_ERROR), result


def test_status_is_a_replay_of_the_identical_request_with_the_same_key(psp):
    c = psp.connector()
    req = auth(psp.cards["approve"])
    first = c.authorize(req)
    sent = len(psp.fake.received())
    status = c.status(req.idempotency_key)
    assert (status.outcome, status.code) == (Outcome.NOT_FOUND, "replay_required")
    assert len(psp.fake.received()) == sent  # no lookup call: the PSP has none
    # what reconciliation does on NOT_FOUND: the same request, rebuilt, with the same key
    rebuilt = replace(req, card=dict(req.card))
    again = c.authorize(rebuilt)
    assert (again.outcome, again.psp_reference) == (first.outcome, first.psp_reference)
    assert psp.fake.charges() == 1
    sent = [r for r in psp.fake.received(psp.auth_path)]
    assert len(sent) == 2 and sent[0].body == sent[1].body  # byte for byte the identical request
    assert {r.header("Idempotency-Key") for r in sent} == {req.idempotency_key}


def test_status_replay_resolves_a_decline_too(psp):
    c = psp.connector()
    req = auth(psp.cards["insufficient_funds"])
    first = c.authorize(req)
    again = c.authorize(req)
    assert (again.outcome, again.code, again.error_class) == (first.outcome, first.code, first.error_class)


# -- the taxonomy -------------------------------------------------------------------------------------
@pytest.mark.parametrize("behaviour,error,outcome", [
    ("hard_decline", ErrorClass.HARD_DECLINE, Outcome.DECLINED),
    ("insufficient_funds", ErrorClass.INSUFFICIENT_FUNDS, Outcome.DECLINED),
    ("fraud", ErrorClass.FRAUD, Outcome.DECLINED),
    ("soft_decline", ErrorClass.SOFT_DECLINE, Outcome.SOFT_DECLINED),
])
def test_each_decline_maps_into_the_shared_taxonomy(psp, behaviour, error, outcome):
    if behaviour not in psp.cards:
        pytest.skip(f"{psp.kind} has no such test card")
    result = psp.connector().authorize(auth(psp.cards[behaviour]))
    assert (result.outcome, result.error_class) == (outcome, error), result
    assert result.code and result.psp_reference
    assert psp.fake.charges() == 0


@pytest.mark.parametrize("behaviour", ["three_ds", "three_ds_redirect"])
def test_three_d_secure_requires_action_with_a_redirect_back_to_the_return_url(psp, behaviour):
    if behaviour not in psp.cards:
        pytest.skip(f"{psp.kind} has no such test card")
    req = replace(auth(psp.cards[behaviour]), return_url="https://shop.example/back?o=1")
    result = psp.connector().authorize(req)
    assert result.outcome is Outcome.REQUIRES_ACTION and result.error_class is None, result
    assert result.psp_reference and result.next_action["return_url"] == "https://shop.example/back?o=1"
    if result.next_action["type"] == "redirect":  # Stripe with return_url, Adyen RedirectShopper
        assert result.next_action["url"].startswith("https://") and result.next_action["method"] in ("GET", "POST")
    else:  # Adyen IdentifyShopper: a threeDS2 fingerprint only Adyen's client SDK runs
        assert (result.next_action["psp_type"], bool(result.next_action["data"].get("token"))) == ("threeDS2", True)
    assert psp.fake.charges() == 0
    again = psp.connector().authorize(req)  # a replay with the same key: the same waiting answer, no charge
    assert (again.outcome, again.psp_reference) == (Outcome.REQUIRES_ACTION, result.psp_reference)


def test_a_payment_waiting_on_the_shopper_is_looked_up_where_the_psp_allows(psp):
    c = psp.connector()
    req = auth(psp.cards["three_ds"])
    ref = c.authorize(req).psp_reference
    waiting = c.status(req.idempotency_key, psp_reference=ref)
    if psp.kind == "adyen":  # Checkout has no lookup: the AUTHORISATION webhook is the source
        assert (waiting.outcome, waiting.code) == (Outcome.NOT_FOUND, "no_lookup")
        assert psp.fake.received("/v72/payments/") == []
        return
    assert waiting.outcome is Outcome.REQUIRES_ACTION
    psp.fake.complete_action(ref)
    assert c.status(req.idempotency_key, psp_reference=ref).outcome is Outcome.APPROVED
    failed = auth(psp.cards["three_ds"])
    ref2 = c.authorize(failed).psp_reference
    psp.fake.complete_action(ref2, succeed=False)
    result = c.status(failed.idempotency_key, psp_reference=ref2)
    assert (result.outcome, result.error_class) == (Outcome.DECLINED, ErrorClass.AUTHENTICATION_REQUIRED), result


def test_an_expired_card_is_declined_as_issuers_do(psp):
    result = psp.connector().authorize(auth(psp.cards["approve"], exp=(1, 2020)))
    assert (result.outcome, result.error_class, result.code) == (Outcome.DECLINED, ErrorClass.HARD_DECLINE,
                                                                 "expired_card"), result


def test_a_wrong_api_key_is_a_psp_error_that_may_cascade(psp):
    result = psp.connector(api_key="wrong-key").authorize(auth(psp.cards["approve"]))
    assert (result.outcome, result.error_class) == (Outcome.SOFT_DECLINED, ErrorClass.PSP_ERROR), result
    assert psp.fake.charges() == 0


# -- transport faults ---------------------------------------------------------------------------------
def test_connection_refused_is_unavailable(psp):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: the connection is refused
        result = psp.connector(base_url=f"http://127.0.0.1:{port}").authorize(auth(psp.cards["approve"]))
    assert (result.outcome, result.error_class) == (Outcome.UNAVAILABLE, ErrorClass.UNAVAILABLE), result


@pytest.mark.parametrize("fault", [RESET, HANG, GARBAGE])
def test_a_lost_answer_after_sending_is_unknown_and_the_replay_finds_the_charge(psp, fault):
    psp.fake.inject(fault, path_prefix=psp.auth_path)
    c = psp.connector()
    req = auth(psp.cards["approve"])
    lost = c.authorize(req)
    assert (lost.outcome, lost.error_class) == (Outcome.UNKNOWN, ErrorClass.UNKNOWN), lost
    assert psp.fake.charges() == 1  # the PSP did charge
    again = c.authorize(req)  # reconciliation's replay: same key, identical request
    assert again.outcome is Outcome.APPROVED and psp.fake.charges() == 1


@pytest.mark.parametrize("fault", [SERVER_ERROR, UNAVAILABLE])
def test_a_5xx_is_unknown(psp, fault):
    psp.fake.inject(fault, path_prefix=psp.auth_path)
    result = psp.connector().authorize(auth(psp.cards["approve"]))
    assert (result.outcome, result.error_class) == (Outcome.UNKNOWN, ErrorClass.UNKNOWN), result


def test_a_lost_capture_answer_is_retried_with_the_same_key(psp):
    ref = authorized(psp)
    psp.fake.inject(RESET, path_prefix="/v1/payment_intents/" if psp.kind == "stripe" else f"/v72/payments/{ref}")
    c, key = psp.connector(), f"cap-{uuid.uuid4().hex}"
    assert c.capture(ref, 1000, "EUR", key).outcome is Outcome.UNKNOWN
    assert c.capture(ref, 1000, "EUR", key).outcome is psp.follow_up  # replayed, not captured twice
    assert psp.state(ref)[1] == 1000


# -- idempotency ----------------------------------------------------------------------------------------
def replay_charges_once(psp: Harness) -> bool:
    """Authorize twice with one key and identical requests: one charge, the first answer twice?"""
    c = psp.connector()
    req = auth(psp.cards["approve"])
    first, second = c.authorize(req), c.authorize(req)
    return first.psp_reference == second.psp_reference and psp.fake.charges() == 1


def test_a_same_key_replay_returns_the_first_result_and_charges_once(psp):
    assert replay_charges_once(psp)
    if psp.kind == "stripe":  # Stripe marks a replayed answer
        assert len(psp.fake.received(psp.auth_path)) == 2


def test_negative_control_a_psp_ignoring_keys_fails_the_replay_check(psp):
    psp.fake.honor_idempotency = False
    assert not replay_charges_once(psp)  # the check can fail: a second charge is seen


def test_the_same_key_with_other_parameters_is_unknown_never_a_decline_or_failover(psp):
    c = psp.connector()
    req = auth(psp.cards["approve"])
    assert c.authorize(req).outcome is Outcome.APPROVED
    other = c.authorize(replace(req, amount=req.amount + 1))
    assert (other.outcome, other.error_class, other.code) == (Outcome.UNKNOWN, ErrorClass.UNKNOWN,
                                                              "idempotency_conflict"), other
    assert psp.fake.charges() == 1


# -- the request on the wire ---------------------------------------------------------------------------
def test_the_exact_request_shape_the_psp_received(psp):
    req = auth(psp.cards["approve"], amount=1234)
    psp.connector().authorize(req)
    [got] = psp.fake.received(psp.auth_path)
    assert got.method == "POST" and got.header("Idempotency-Key") == req.idempotency_key
    card = req.card
    if psp.kind == "stripe":
        assert got.header("Authorization") == f"Bearer {psp.fake.api_key}"
        assert got.header("Content-Type") == "application/x-www-form-urlencoded"
        assert got.header("Stripe-Version")
        assert sorted(parse_qsl(got.body.decode())) == sorted([
            ("amount", "1234"), ("currency", "eur"), ("confirm", "true"), ("capture_method", "manual"),
            ("payment_method_types[0]", "card"), ("payment_method_data[type]", "card"),
            ("payment_method_data[card][number]", card["number"]), ("payment_method_data[card][exp_month]", "12"),
            ("payment_method_data[card][exp_year]", "2030"), ("metadata[payment_id]", req.reference),
            ("metadata[correlation_id]", req.correlation_id), ("return_url", "https://checkout.invalid/return")])
    else:
        assert got.header("X-API-Key") == psp.fake.api_key and got.header("Authorization") is None
        assert got.header("Content-Type") == "application/json"
        assert json.loads(got.body) == {
            "merchantAccount": psp.fake.merchant_account, "amount": {"value": 1234, "currency": "EUR"},
            "reference": req.reference, "shopperInteraction": "Ecommerce",
            "paymentMethod": {"type": "scheme", "number": card["number"], "expiryMonth": "12", "expiryYear": "2030"},
            "returnUrl": "https://checkout.invalid/return", "metadata": {"correlationId": req.correlation_id},
            "additionalData": {"manualCapture": "true"}}


def test_follow_ups_carry_our_key_too(psp):
    ref = authorized(psp, capture=False)
    c = psp.connector()
    c.capture(ref, 500, "EUR", "cap-key-1")
    c.refund(ref, 100, "EUR", "ref-key-1")
    keys = [r.header("Idempotency-Key") for r in psp.fake.received() if r.path != psp.auth_path]
    assert keys == ["cap-key-1", "ref-key-1"]


# -- secrets and card numbers ------------------------------------------------------------------------------
def test_no_secret_and_no_card_number_in_any_log_line_or_repr(psp, caplog):
    caplog.set_level(logging.DEBUG)
    # the transport's own loggers at DEBUG too; caplog puts every level back afterwards (the "stripe"
    # logger stays where the connector set it: the SDK logs request bodies at DEBUG)
    for name in ("urllib3", "requests", "Adyen", "laptop.psp_fakes"):
        caplog.set_level(logging.DEBUG, logger=name)
    c = psp.connector()
    for behaviour in ("approve", "hard_decline", "three_ds"):
        c.authorize(auth(psp.cards[behaviour]))
    psp.fake.inject(RESET, path_prefix=psp.auth_path)
    c.authorize(auth(psp.cards["approve"]))
    psp.connector(api_key="wrong-key").authorize(auth(psp.cards["approve"]))
    text = "\n".join(f"{r.name} {r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert caplog.records, "the connector logs each call"
    assert "psp=" in text
    for secret in (psp.fake.api_key, *psp.cards.values()):
        assert secret not in text
    assert psp.fake.api_key not in repr(c) and psp.fake.api_key not in str(c)
