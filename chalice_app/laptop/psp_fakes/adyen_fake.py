"""A local Adyen Checkout API (v71 and newer): /payments, and captures, cancels and refunds on a
payment's pspReference, with Adyen's idempotency, enough for the official `Adyen` SDK to be the client.

Follows Adyen's public references: the Checkout API's POST /payments (request: merchantAccount,
amount {value, currency}, reference, paymentMethod {type: scheme, number, expiryMonth, expiryYear},
returnUrl, additionalData.manualCapture; response: pspReference, resultCode, refusalReason,
refusalReasonCode, action, merchantReference, amount), POST /payments/{paymentPspReference}/captures,
/cancels and /refunds (201, status "received": the outcome comes later by webhook), the error
object (status, errorCode, message, errorType, pspReference), "Refusal reasons" (codes and texts),
"Result codes", and "API idempotency" (Idempotency-Key header, at most 64 characters; a key reused
while in flight or with another body is refused with 422 errorCode 704 here, our reading of that
page). Authentication is the X-API-Key header.
"""
from __future__ import annotations

import json
import string
from typing import Any

from .base import Answer, FakePsp, Received, expired, luhn_valid

# (refusalReasonCode, refusalReason) per card; Adyen's test platform picks refusals by holder name,
# which the platform never sends, so the fake picks by the platform's shared test card numbers.
REFUSALS: dict[str, tuple[str, str]] = {
    "4000000000000002": ("2", "Refused"),
    "4000000000009995": ("12", "Not enough balance"),
    "4100000000000019": ("20", "FRAUD"),
    "4000000000009979": ("31", "Issuer Suspected Fraud"),
    "4000000000000119": ("9", "Issuer Unavailable"),
    "4000000000000127": ("24", "CVC Declined"),
}
IDENTIFY_SHOPPER = "4917610000000000"  # 3-D Secure 2: device fingerprint first
REDIRECT_SHOPPER = "4212345678901237"  # 3-D Secure with a redirect to the issuer
_ALNUM = string.ascii_uppercase + string.digits


def _error(status: int, code: str, message: str, error_type: str, psp: str | None = None) -> Answer:
    body = {"status": status, "errorCode": code, "message": message, "errorType": error_type}
    if psp:
        body["pspReference"] = psp
    return Answer(status, body, {"pspReference": psp} if psp else {})


class AdyenFake(FakePsp):
    name = "adyen-fake"
    json_content_type = "application/json;charset=UTF-8"

    def __init__(self, api_key: str = "AQE_fake_adyen_api_key_1f2e3d", merchant_account: str = "PlatformECOM",
                 today=None) -> None:
        super().__init__(api_key, today)
        self.merchant_account = merchant_account
        self.payments: dict[str, dict[str, Any]] = {}
        self.modifications: dict[str, dict[str, Any]] = {}

    def psp_reference(self) -> str:
        # 16 characters like Adyen's, with letters: an all-digit reference could pass for a card number
        raw = self.next_id("", 16).upper()
        return "".join(_ALNUM[int(c, 16) % len(_ALNUM)] if i % 3 == 0 else c for i, c in enumerate(raw))

    # -- the idempotency layer's shapes ------------------------------------------------------
    def authenticated(self, req: Received) -> bool:
        return req.header("X-API-Key") == self.api_key

    def unauthenticated(self) -> Answer:
        return _error(401, "000", "HTTP Status Response - Unauthorized", "security")

    def server_error(self, status: int) -> Answer:
        return _error(status, "000", "Internal error", "internal", self.psp_reference())

    def idempotency_error(self, key: str) -> Answer:
        return _error(422, "704", "request already processed or in progress", "validation")

    in_progress_error = idempotency_error

    def saves(self, answer: Answer) -> bool:
        return answer.status < 400 or answer.status >= 500 or answer.body.get("errorType") != "validation"

    def fingerprint(self, req: Received) -> str:
        try:  # the same JSON document, whatever its key order or spacing
            return f"{req.path} {json.dumps(json.loads(req.body or b'null'), sort_keys=True)}"
        except ValueError:
            return f"{req.path} {req.body!r}"

    # -- routes --------------------------------------------------------------------------
    def route(self, req: Received) -> Answer:
        parts = req.path.split("?")[0].strip("/").split("/")
        if req.method != "POST" or not parts or not parts[0].startswith("v") or not parts[0][1:].isdigit():
            return _error(404, "000", "Not found", "validation")
        if int(parts[0][1:]) < 71:
            return _error(404, "000", f"API version {parts[0]} not served by this fake (v71+)", "validation")
        key = req.header("Idempotency-Key") or ""
        if len(key) > 64:
            return _error(422, "000", "Idempotency-Key longer than 64 characters", "validation")
        try:
            body = json.loads(req.body)
        except ValueError:
            return _error(400, "702", "Unable to parse request", "validation")
        if not isinstance(body, dict):
            return _error(400, "702", "Unable to parse request", "validation")
        if body.get("merchantAccount") != self.merchant_account:
            return _error(403, "901", "Invalid Merchant Account", "security")
        if parts[1:] == ["payments"]:
            return self._payment(body)
        if len(parts) == 4 and parts[1] == "payments" and parts[3] in ("captures", "cancels", "refunds"):
            return self._modify(parts[2], parts[3], body)
        return _error(404, "000", "Not found", "validation")

    def _payment(self, body: dict[str, Any]) -> Answer:
        amount, method = body.get("amount") or {}, body.get("paymentMethod") or {}
        if not isinstance(amount.get("value"), int) or not amount.get("currency"):
            return _error(422, "100", "Required field 'amount' is not provided.", "validation")
        if not body.get("reference"):
            return _error(422, "130", "Required field 'reference' is not provided.", "validation")
        number = str(method.get("number", ""))
        if method.get("type") != "scheme" or not luhn_valid(number):
            return _error(422, "101", "Invalid card number", "validation")
        with self.lock:
            psp = self.psp_reference()
            manual = (body.get("additionalData") or {}).get("manualCapture") == "true"
            payment = {"pspReference": psp, "amount": dict(amount), "merchantReference": body["reference"],
                       "status": "authorised", "captured": 0, "refunded": 0, "manual": manual, "last4": number[-4:]}
            answer: dict[str, Any] = {"pspReference": psp, "merchantReference": body["reference"],
                                      "amount": dict(amount)}
            refusal = REFUSALS.get(number)
            if refusal is None and expired(method.get("expiryMonth"), method.get("expiryYear"), self.today()):
                refusal = ("6", "Expired Card")  # as issuers answer a card past its expiry month
            if refusal is not None:
                payment["status"] = "refused"
                answer.update(resultCode="Refused", refusalReasonCode=refusal[0], refusalReason=refusal[1])
            elif number == IDENTIFY_SHOPPER:
                payment["status"] = "pending_authentication"
                answer.update(resultCode="IdentifyShopper", action={
                    "paymentMethodType": "scheme", "type": "threeDS2", "subtype": "fingerprint",
                    "token": "eyJ0aHJlZURTTWV0aG9kTm90aWZpY2F0aW9uVVJMIjoiIn0="})
            elif number == REDIRECT_SHOPPER:
                payment["status"] = "pending_authentication"
                answer.update(resultCode="RedirectShopper", action={
                    "paymentMethodType": "scheme", "type": "redirect", "method": "GET",
                    "url": f"https://checkoutshopper-test.adyen.com/checkoutshopper/threeDS/redirect?MD={psp}"})
            else:
                answer.update(resultCode="Authorised", additionalData={"authCode": "062455"})
                if not manual:  # immediate capture, as a merchant account without manual capture does
                    payment.update(status="captured", captured=amount["value"])
            self.payments[psp] = payment
            self.emit("AUTHORISATION", {"pspReference": psp, "merchantReference": body["reference"],
                                        "success": answer["resultCode"] == "Authorised",
                                        "reason": answer.get("refusalReason", "")})
            return Answer(200, answer)

    def _modify(self, psp: str, kind: str, body: dict[str, Any]) -> Answer:
        with self.lock:
            payment = self.payments.get(psp)
            if payment is None:
                return _error(422, "167", "Original pspReference required for this operation", "validation")
            amount = body.get("amount")
            if kind != "cancels" and (not isinstance(amount, dict) or not isinstance(amount.get("value"), int)):
                return _error(422, "100", "Required field 'amount' is not provided.", "validation")
            if amount and amount.get("currency") != payment["amount"]["currency"]:
                return _error(422, "137", "Invalid amount specified", "validation")
            ref = self.psp_reference()
            success = self._apply(payment, kind, (amount or {}).get("value", 0))
            modification = {"merchantAccount": self.merchant_account, "paymentPspReference": psp,
                            "pspReference": ref, "reference": body.get("reference"), "status": "received"}
            if amount:
                modification["amount"] = dict(amount)
            self.modifications[ref] = {**modification, "kind": kind, "success": success}
            # Adyen decides captures, cancels and refunds after answering: the result is a webhook.
            event = {"captures": "CAPTURE", "cancels": "CANCELLATION", "refunds": "REFUND"}[kind]
            self.emit(event if success or kind != "captures" else "CAPTURE_FAILED",
                      {"pspReference": ref, "originalReference": psp, "success": success})
            return Answer(201, modification)

    @staticmethod
    def _apply(payment: dict[str, Any], kind: str, value: int) -> bool:
        status, authorised = payment["status"], payment["amount"]["value"]
        if kind == "cancels":
            if status != "authorised":
                return False
            payment["status"] = "cancelled"
        elif kind == "captures":
            if status != "authorised" or not 0 < value <= authorised:
                return False
            payment.update(status="captured", captured=value)  # one capture; the rest is released
        else:
            if status != "captured" or not 0 < value <= payment["captured"] - payment["refunded"]:
                return False
            payment["refunded"] += value
        return True

    # -- for tests ------------------------------------------------------------------------------
    def complete_action(self, psp: str, succeed: bool = True) -> dict[str, Any]:
        """The shopper finishes (or fails) 3-D Secure: the payment is authorised or refused, and the
        AUTHORISATION notification Adyen would send is logged."""
        with self.lock:
            payment = self.payments[psp]
            if payment["status"] != "pending_authentication":
                raise ValueError(f"{psp} is {payment['status']}, not waiting for the shopper")
            if succeed:
                payment.update(status="authorised" if payment["manual"] else "captured",
                               captured=0 if payment["manual"] else payment["amount"]["value"])
            else:
                payment["status"] = "refused"
            self.emit("AUTHORISATION", {"pspReference": psp, "merchantReference": payment["merchantReference"],
                                        "success": succeed, "reason": "" if succeed else "3D Not Authenticated"})
            return dict(payment)

    def charges(self) -> int:
        """Payments that hold or moved money (authorised, captured)."""
        with self.lock:
            return sum(1 for p in self.payments.values() if p["status"] in ("authorised", "captured"))
