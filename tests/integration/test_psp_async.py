"""3-D Secure (requires_action) and PSP answers that come later (PENDING), through the whole stack:
the API, the real stage Lambdas, and the Stripe and Adyen connectors on their SDKs against the fakes.

A payment that needs 3-D Secure waits in `requires_action` with the next action and the return URL
on GET /v1/payments/{id}; it resumes when a status check (Stripe: the PaymentIntent looked up) or
the PSP's update (services/psp_updates.py, what the webhooks feed) says authorized or failed. A
capture, void or refund Adyen answers "received" leaves the payment waiting for Adyen's update.
"""
from __future__ import annotations

import json
import time
import uuid

import pytest

from chalicelib.services.psp_updates import APPLIED, DEFERRED, DUPLICATE, PspUpdate, apply_update
from laptop.psp_fakes import AdyenFake, StripeFake, serve

from .conftest import assert_ledger_balanced, assert_timeline_chained, card_body

STRIPE_3DS, ADYEN_3DS, ADYEN_OK = "4000002760003184", "4212345678901237", "4111111145551142"
RETURN = "https://shop.example/checkout/return?order=7"


@pytest.fixture(scope="module")
def fakes():
    stripe, adyen = StripeFake(), AdyenFake()
    servers = [serve(stripe), serve(adyen)]
    yield stripe, adyen, servers[0][0].url, servers[1][0].url
    for server, thread in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def stack_env(fakes):
    stripe, adyen, stripe_url, adyen_url = fakes
    config = [{"name": "stripe-eu", "type": "stripe", "api_key": stripe.api_key, "base_url": stripe_url,
               "timeout_s": 1.0},
              {"name": "adyen-eu", "type": "adyen", "api_key": adyen.api_key, "base_url": adyen_url,
               "merchant_account": adyen.merchant_account, "timeout_s": 1.0}]
    return {"PSP_CONFIG": json.dumps(config), "ACTION_CHECK_SCHEDULE_S": "0.05,0.1,0.2"}


def route_to(stack, *psps: str) -> None:
    stack.update_tenant(routing=[{"psp": p, "priority": i + 1, "currencies": ["*"], "methods": ["card"]}
                                for i, p in enumerate(psps)])


def pay(stack, number: str, **extra) -> str:
    r = stack.post("/v1/payments", card_body(number, **extra), **{"Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code == 202, r.body
    return json.loads(r.body)["id"]


def step_until(stack, payment_id: str, wanted: str, timeout_s: float = 10.0) -> dict:
    """Move the pipeline a step at a time (drain() would also run out the status-check schedule)."""
    deadline = time.monotonic() + timeout_s
    while True:
        stack.runner.step()
        view = stack.payment(payment_id)
        if view["status"] == wanted or time.monotonic() > deadline:
            return view


def settle_until(stack, payment_id: str, wanted: str, timeout_s: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        stack.runner.drain()
        view = stack.payment(payment_id)
        if view["status"] == wanted or time.monotonic() > deadline:
            return view
        time.sleep(0.05)


def test_stripe_3ds_waits_in_requires_action_then_a_status_check_resumes_it(stack, fakes):
    stripe = fakes[0]
    route_to(stack, "stripe-eu", "adyen-eu")
    pid = pay(stack, STRIPE_3DS, return_url=RETURN)
    view = step_until(stack, pid, "requires_action")
    assert view["status"] == "requires_action", view
    assert view["return_url"] == RETURN
    assert view["next_action"]["type"] == "redirect" and view["next_action"]["return_url"] == RETURN
    assert view["next_action"]["url"].startswith("https://hooks.stripe.com/")
    assert [a["psp"] for a in view["attempts"]] == ["stripe-eu"]  # no failover, no replay elsewhere
    pi = view["attempts"][0]["psp_reference"]
    stripe.complete_action(pi)  # the shopper passes 3-D Secure on the issuer's page
    view = settle_until(stack, pid, "settled")
    assert view["status"] == "settled" and view["amount_captured"] == view["amount"]
    assert any(json.loads(c[1])["type"] == "payments.requires_action" for c in stack.poster.calls), \
        "the merchant was told by webhook where to send the shopper"

    assert "next_action" not in view
    assert stripe.charges() >= 1 and stripe.intents[pi]["status"] == "succeeded"
    assert_timeline_chained(stack, pid)
    assert_ledger_balanced(stack)


def test_stripe_3ds_failed_by_the_shopper_is_declined_not_failed_over(stack, fakes):
    stripe = fakes[0]
    route_to(stack, "stripe-eu", "adyen-eu")
    pid = pay(stack, STRIPE_3DS)
    view = step_until(stack, pid, "requires_action")
    assert view["status"] == "requires_action"
    assert view["next_action"]["return_url"] == "https://checkout.invalid/return"  # the connector's default
    stripe.complete_action(view["attempts"][0]["psp_reference"], succeed=False)
    view = settle_until(stack, pid, "declined")
    assert view["status"] == "declined", view
    assert [a["psp"] for a in view["attempts"]] == ["stripe-eu"]
    assert view["failure"]["code"] == "payment_intent_authentication_failure"


def test_adyen_3ds_has_no_lookup_and_resumes_only_by_the_psp_update(stack, fakes):
    adyen = fakes[1]
    route_to(stack, "adyen-eu", "stripe-eu")
    pid = pay(stack, ADYEN_3DS, return_url=RETURN)
    stack.runner.drain()
    time.sleep(0.3)
    stack.runner.drain()  # the status checks found no lookup: it still waits
    view = stack.payment(pid)
    assert view["status"] == "requires_action" and view["next_action"]["type"] == "redirect"
    ref = view["attempts"][0]["psp_reference"]
    adyen.complete_action(ref)
    update = PspUpdate("adyen-eu", f"AUTHORISATION-{ref}", "authorisation", True, pid, ref)
    assert apply_update(stack.platform, stack.tenant_id, update) == APPLIED
    assert apply_update(stack.platform, stack.tenant_id, update) == DUPLICATE
    stack.runner.drain()
    view = stack.payment(pid)
    # capture went out and Adyen answered "received": the payment waits for the CAPTURE update
    assert view["status"] == "processing", view
    stored = stack.stored(pid)
    assert stored.state.value == "authorized" and stored.pending["op"] == "capture"
    capture_ref = stored.pending["psp_reference"]
    assert "capture_pending" in stack.actions(pid)
    stack.runner.drain()
    assert len(adyen.received(f"/v72/payments/{ref}/captures")) == 1  # waiting is not retrying
    done = PspUpdate("adyen-eu", f"CAPTURE-{capture_ref}", "capture", True, pid, ref, capture_ref,
                     amount=view["amount"])
    assert apply_update(stack.platform, stack.tenant_id, done) == APPLIED
    view = settle_until(stack, pid, "settled")
    assert view["status"] == "settled"
    assert_timeline_chained(stack, pid)


def test_adyen_capture_update_before_the_authorisation_is_deferred(stack, fakes):
    adyen = fakes[1]
    route_to(stack, "adyen-eu")
    pid = pay(stack, ADYEN_3DS)
    stack.runner.drain()
    ref = stack.payment(pid)["attempts"][0]["psp_reference"]
    early = PspUpdate("adyen-eu", "CAPTURE-X1", "capture", True, pid, ref, "X1", amount=1999)
    assert apply_update(stack.platform, stack.tenant_id, early) == DEFERRED
    assert stack.payment(pid)["status"] == "requires_action"
    adyen.complete_action(ref)
    auth = PspUpdate("adyen-eu", f"AUTHORISATION-{ref}", "authorisation", True, pid, ref)
    assert apply_update(stack.platform, stack.tenant_id, auth) == APPLIED
    assert apply_update(stack.platform, stack.tenant_id, early) == APPLIED  # the redelivery now applies
    view = settle_until(stack, pid, "settled")
    assert view["status"] == "settled"
    assert_timeline_chained(stack, pid)


def test_adyen_manual_capture_void_and_refund_wait_for_their_updates(stack, fakes):
    route_to(stack, "adyen-eu")
    pid = pay(stack, ADYEN_OK, capture="manual")
    stack.runner.drain()
    assert stack.payment(pid)["status"] == "requires_capture"
    r = stack.post(f"/v1/payments/{pid}/cancel", {})
    assert r.status_code in (200, 202), r.body
    stack.runner.drain()
    stored = stack.stored(pid)
    assert stored.state.value == "cancelling" and stored.pending["op"] == "void"
    assert not stack.all_dlq_entries()
    ref = stored.authorized_attempt.psp_reference
    assert apply_update(stack.platform, stack.tenant_id, PspUpdate(
        "adyen-eu", "CANCELLATION-1", "cancel", True, pid, ref, stored.pending["psp_reference"])) == APPLIED
    assert stack.payment(pid)["status"] == "cancelled"

    pid = pay(stack, ADYEN_OK)  # automatic capture, then a refund
    stack.runner.drain()
    stored = stack.stored(pid)
    ref = stored.authorized_attempt.psp_reference
    apply_update(stack.platform, stack.tenant_id, PspUpdate(
        "adyen-eu", "CAPTURE-2", "capture", True, pid, ref, stored.pending["psp_reference"], amount=stored.amount))
    assert settle_until(stack, pid, "settled")["status"] == "settled"
    r = stack.post(f"/v1/payments/{pid}/refunds", {"amount": 500}, **{"Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code == 202, r.body
    stack.runner.drain()
    view = stack.payment(pid)
    assert view["status"] == "settled" and view["refunds"][0]["status"] == "pending"
    refund = stack.stored(pid).refunds[0]
    assert refund.psp_reference  # Adyen's reference for the refund, kept to match its update
    assert apply_update(stack.platform, stack.tenant_id, PspUpdate(
        "adyen-eu", "REFUND-3", "refund", True, pid, ref, refund.psp_reference, amount=500)) == APPLIED
    stack.runner.drain()
    view = stack.payment(pid)
    assert view["status"] == "partially_refunded" and view["amount_refunded"] == 500
    assert_ledger_balanced(stack)


def test_an_update_commits_only_in_the_region_holding_the_home_lease(stack, fakes, monkeypatch):
    from chalicelib.services.ownership import NotOwner
    adyen = fakes[1]
    route_to(stack, "adyen-eu")
    pid = pay(stack, ADYEN_3DS)
    stack.runner.drain()
    ref = stack.payment(pid)["attempts"][0]["psp_reference"]
    adyen.complete_action(ref)
    update = PspUpdate("adyen-eu", f"AUTHORISATION-{ref}", "authorisation", True, pid, ref)

    def not_ours(home):
        raise NotOwner(f"home {home} is driven by another region")
    with monkeypatch.context() as m:
        m.setattr(stack.platform.ownership, "require", not_ours)
        with pytest.raises(NotOwner):  # the webhook answers "retry later"; nothing is written here
            apply_update(stack.platform, stack.tenant_id, update)
    assert stack.payment(pid)["status"] == "requires_action"
    assert apply_update(stack.platform, stack.tenant_id, update) == APPLIED  # no marker was left behind
