"""A local Stripe: PaymentIntents (create + confirm, capture, cancel), Refunds, and Stripe's
idempotency, enough for the official `stripe` SDK to be the client.

Follows Stripe's public API reference: PaymentIntents (create, capture, cancel, the PaymentIntent
object and its statuses), Refunds (create, the Refund object), Errors (the error object: type,
code, decline_code, message, param, payment_intent; HTTP 400/401/402/404/409/429/500), Idempotent
requests (a saved first answer replayed with `Idempotent-Replayed: true`; parameters compared;
`idempotency_error` on reuse with others; validation failures and concurrent conflicts not saved),
and the testing page's card numbers and their declines. Bodies are form-encoded as Stripe takes
them; answers are JSON with a `Request-Id` header.
"""
from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl

from .base import Answer, FakePsp, Received, expired, luhn_valid

# Stripe's documented test cards: number -> (error code, decline code) or a behaviour.
DECLINES: dict[str, tuple[str, str | None]] = {
    "4000000000000002": ("card_declined", "generic_decline"),
    "4000000000009995": ("card_declined", "insufficient_funds"),
    "4000000000009987": ("card_declined", "lost_card"),
    "4000000000009979": ("card_declined", "stolen_card"),
    "4100000000000019": ("card_declined", "fraudulent"),     # blocked by Radar
    "4000000000000069": ("expired_card", None),
    "4000000000000127": ("incorrect_cvc", None),
    "4000000000000119": ("processing_error", None),
}
THREE_DS_REQUIRED = {"4000002760003184", "4000002500003155", "4000000000003220"}
MESSAGES = {"card_declined": "Your card was declined.", "expired_card": "Your card has expired.",
            "incorrect_cvc": "Your card's security code is incorrect.",
            "processing_error": "An error occurred while processing your card. Try again in a little bit.",
            "incorrect_number": "Your card number is incorrect.",
            "insufficient_funds": "Your card has insufficient funds."}
API_VERSION = "2025-01-27.acacia"


def _parse_form(body: bytes) -> dict[str, Any]:
    """Stripe's bracket notation (a[b][c]=v, a[0]=v) into nested dicts and lists."""
    out: dict[str, Any] = {}
    for key, value in parse_qsl(body.decode(), keep_blank_values=True):
        parts = key.replace("]", "").split("[")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _lists(out)


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    if node and all(k.isdigit() for k in node):
        return [_lists(node[k]) for k in sorted(node, key=int)]
    return {k: _lists(v) for k, v in node.items()}


def _error(status: int, type_: str, message: str, **extra: Any) -> Answer:
    return Answer(status, {"error": {"type": type_, "message": message, **extra}})


class StripeFake(FakePsp):
    name = "stripe-fake"

    def __init__(self, api_key: str = "sk_test_fake_4eC39HqLyjWDarjtT1zdp7dc", today=None) -> None:
        super().__init__(api_key, today)
        self.intents: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}

    # -- the idempotency layer's shapes ------------------------------------------------------
    def authenticated(self, req: Received) -> bool:
        return req.header("Authorization") == f"Bearer {self.api_key}"

    def unauthenticated(self) -> Answer:
        return _error(401, "invalid_request_error", "Invalid API Key provided: sk_test_****")

    def server_error(self, status: int) -> Answer:
        return _error(status, "api_error", "Sorry, something went wrong. We've already been notified of the problem.")

    def idempotency_error(self, key: str) -> Answer:
        return _error(400, "idempotency_error",
                      "Keys for idempotent requests can only be used with the same parameters they were first "
                      f"used with. Try using a key other than '{key}' if you meant to execute a different request.")

    def in_progress_error(self, key: str) -> Answer:
        return _error(409, "invalid_request_error", "There is currently another in-progress request using this "
                      "Stripe Idempotency-Key. Please try again later.", code="idempotency_key_in_use")

    def saves(self, answer: Answer) -> bool:
        # Stripe saves once the endpoint began executing: declines and 5xx yes, parameter errors no.
        return not (answer.status == 400 and answer.body.get("error", {}).get("code") == "parameter_missing")

    def replayed(self, answer: Answer) -> Answer:
        return Answer(answer.status, answer.body, {**answer.headers, "Idempotent-Replayed": "true"})

    def fingerprint(self, req: Received) -> str:
        # parameters compared as Stripe does: by value, whatever their order on the wire
        items = sorted(parse_qsl(req.body.decode(), keep_blank_values=True))
        return f"{req.method} {req.path} {items}"

    # -- routes --------------------------------------------------------------------------
    def route(self, req: Received) -> Answer:
        answer = self._route(req)
        answer.headers.setdefault("Request-Id", self.next_id("req_", 14))
        answer.headers.setdefault("Stripe-Version", req.header("Stripe-Version") or API_VERSION)
        return answer

    def _route(self, req: Received) -> Answer:
        form = _parse_form(req.body) if req.method == "POST" else {}
        parts = req.path.split("?")[0].strip("/").split("/")
        if req.method == "POST" and parts == ["v1", "payment_intents"]:
            return self._create_intent(form)
        if len(parts) >= 3 and parts[:2] == ["v1", "payment_intents"]:
            intent = self.intents.get(parts[2])
            if intent is None:
                return _error(404, "invalid_request_error", f"No such payment_intent: '{parts[2]}'",
                              code="resource_missing", param="intent")
            if req.method == "GET" and len(parts) == 3:
                return Answer(200, intent)
            if req.method == "POST" and parts[3:] == ["capture"]:
                return self._capture(intent, form)
            if req.method == "POST" and parts[3:] == ["cancel"]:
                return self._cancel(intent, form)
        if req.method == "POST" and parts == ["v1", "refunds"]:
            return self._refund(form)
        return _error(404, "invalid_request_error", f"Unrecognized request URL ({req.method}: {req.path}).")

    def _create_intent(self, form: dict[str, Any]) -> Answer:
        for name in ("amount", "currency"):
            if name not in form:
                return _error(400, "invalid_request_error", f"Missing required param: {name}.",
                              code="parameter_missing", param=name)
        card = (form.get("payment_method_data") or {}).get("card") or {}
        number = str(card.get("number", ""))
        with self.lock:
            pi_id = self.next_id("pi_")
            intent = {
                "id": pi_id, "object": "payment_intent", "amount": int(form["amount"]), "amount_capturable": 0,
                "amount_received": 0, "capture_method": form.get("capture_method", "automatic_async"),
                "client_secret": f"{pi_id}_secret_{self.next_id('', 12)}", "confirmation_method": "automatic",
                "created": int(time.time()), "currency": form["currency"], "description": form.get("description"),
                "last_payment_error": None, "latest_charge": None, "livemode": False,
                "metadata": form.get("metadata") or {}, "next_action": None, "payment_method": None,
                "payment_method_types": form.get("payment_method_types") or ["card"],
                "status": "requires_payment_method", "card_last4": number[-4:],  # our note: last four only
            }
            self.intents[pi_id] = intent
            if form.get("confirm") != "true":
                return Answer(200, intent)
            intent["payment_method"] = self.next_id("pm_")
            decline = self._decline(number, card)
            if decline:
                code, decline_code = decline
                charge = self.next_id("ch_")
                error = {"type": "card_error", "code": code, "message": MESSAGES.get(decline_code or code,
                                                                                      MESSAGES["card_declined"]),
                         "charge": charge, "doc_url": f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"}
                if decline_code:
                    error["decline_code"] = decline_code
                intent.update(status="requires_payment_method", latest_charge=charge,
                              last_payment_error={k: v for k, v in error.items() if k != "doc_url"})
                self.emit("payment_intent.payment_failed", intent)
                return Answer(402, {"error": {**error, "payment_intent": dict(intent)}})
            if number in THREE_DS_REQUIRED:
                # With a return_url Stripe answers a redirect the merchant can send the shopper to;
                # without one, an action only Stripe.js can run.
                next_action = ({"type": "redirect_to_url", "redirect_to_url": {
                    "url": f"https://hooks.stripe.com/3d_secure_2/hosted?payment_intent={pi_id}",
                    "return_url": form["return_url"]}} if form.get("return_url") else {
                    "type": "use_stripe_sdk", "use_stripe_sdk": {"type": "three_d_secure_redirect",
                                                                 "stripe_js": "https://hooks.stripe.com/3d_secure"}})
                intent.update(status="requires_action", next_action=next_action)
                self.emit("payment_intent.requires_action", intent)
                return Answer(200, dict(intent))
            intent["latest_charge"] = self.next_id("ch_")
            if intent["capture_method"] == "manual":
                intent.update(status="requires_capture", amount_capturable=intent["amount"])
                self.emit("payment_intent.amount_capturable_updated", intent)
            else:
                intent.update(status="succeeded", amount_received=intent["amount"])
                self.emit("payment_intent.succeeded", intent)
            return Answer(200, dict(intent))

    def _decline(self, number: str, card: dict[str, Any]) -> tuple[str, str | None] | None:
        if not luhn_valid(number):
            return "incorrect_number", None
        if number in DECLINES:
            return DECLINES[number]
        if expired(card.get("exp_month"), card.get("exp_year"), self.today()):
            return "expired_card", None  # issuers decline a card past its expiry month
        return None

    def _unexpected_state(self, intent: dict[str, Any], action: str) -> Answer:
        return _error(400, "invalid_request_error",
                      f"This PaymentIntent could not be {action} because it has a status of {intent['status']}.",
                      code="payment_intent_unexpected_state", payment_intent=dict(intent))

    def _capture(self, intent: dict[str, Any], form: dict[str, Any]) -> Answer:
        with self.lock:
            if intent["status"] != "requires_capture":
                return self._unexpected_state(intent, "captured")
            amount = int(form.get("amount_to_capture", intent["amount_capturable"]))
            if amount > intent["amount_capturable"] or amount <= 0:
                return _error(400, "invalid_request_error", "The amount to capture must be positive and at most "
                              "the amount capturable.", code="amount_too_large", param="amount_to_capture")
            # a partial capture releases the rest, as Stripe does
            intent.update(status="succeeded", amount_received=amount, amount_capturable=0)
            self.emit("payment_intent.succeeded", intent)
            return Answer(200, dict(intent))

    def _cancel(self, intent: dict[str, Any], form: dict[str, Any]) -> Answer:
        with self.lock:
            if intent["status"] in ("succeeded", "canceled"):
                return self._unexpected_state(intent, "canceled")
            intent.update(status="canceled", amount_capturable=0, canceled_at=int(time.time()),
                          cancellation_reason=form.get("cancellation_reason"))
            self.emit("payment_intent.canceled", intent)
            return Answer(200, dict(intent))

    def _refund(self, form: dict[str, Any]) -> Answer:
        with self.lock:
            intent = self.intents.get(str(form.get("payment_intent", "")))
            if intent is None:
                return _error(404, "invalid_request_error", f"No such payment_intent: '{form.get('payment_intent')}'",
                              code="resource_missing", param="payment_intent")
            if intent["status"] != "succeeded":
                return _error(400, "invalid_request_error", "This PaymentIntent does not have a successful charge to "
                              "refund.", code="charge_not_refundable" if intent["status"] != "canceled"
                              else "charge_already_refunded", param="payment_intent")
            refunded = sum(r["amount"] for r in self.refunds.values()
                           if r["payment_intent"] == intent["id"] and r["status"] == "succeeded")
            left = intent["amount_received"] - refunded
            amount = int(form.get("amount", left))
            if left <= 0:
                return _error(400, "invalid_request_error", f"Charge {intent['latest_charge']} has already been "
                              "refunded.", code="charge_already_refunded")
            if amount <= 0 or amount > left:
                return _error(400, "invalid_request_error", f"Refund amount ({amount}) is greater than unrefunded "
                              f"amount on charge ({left})", code="amount_too_large", param="amount")
            refund = {"id": self.next_id("re_"), "object": "refund", "amount": amount,
                      "charge": intent["latest_charge"], "created": int(time.time()), "currency": intent["currency"],
                      "metadata": form.get("metadata") or {}, "payment_intent": intent["id"],
                      "reason": form.get("reason"), "status": "succeeded"}
            self.refunds[refund["id"]] = refund
            self.emit("refund.created", refund)
            return Answer(200, dict(refund))

    # -- for tests ------------------------------------------------------------------------------
    def complete_action(self, pi_id: str, succeed: bool = True) -> dict[str, Any]:
        """The shopper finishes 3-D Secure on the issuer's page: the PaymentIntent moves on, as
        Stripe's does, and the event that Stripe would send by webhook is logged."""
        with self.lock:
            intent = self.intents[pi_id]
            if intent["status"] != "requires_action":
                raise ValueError(f"{pi_id} is {intent['status']}, not requires_action")
            intent["next_action"] = None
            if not succeed:
                error = {"type": "invalid_request_error", "code": "payment_intent_authentication_failure",
                         "message": "The provided PaymentMethod has failed authentication."}
                intent.update(status="requires_payment_method", last_payment_error=error)
                self.emit("payment_intent.payment_failed", intent)
            elif intent["capture_method"] == "manual":
                intent.update(status="requires_capture", amount_capturable=intent["amount"],
                              latest_charge=self.next_id("ch_"))
                self.emit("payment_intent.amount_capturable_updated", intent)
            else:
                intent.update(status="succeeded", amount_received=intent["amount"], latest_charge=self.next_id("ch_"))
                self.emit("payment_intent.succeeded", intent)
            return dict(intent)

    def charges(self) -> int:
        """PaymentIntents that hold or moved money (authorized, captured)."""
        with self.lock:
            return sum(1 for i in self.intents.values() if i["status"] in ("requires_capture", "succeeded"))
