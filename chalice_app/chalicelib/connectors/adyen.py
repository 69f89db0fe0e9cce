"""Adyen connector: the Checkout API (v72, the SDK's own version; v71+ is required) on the official
`Adyen` SDK.

One AdyenClient per connector (never the module-level defaults), its PaymentsApi and ModificationsApi
services built on it; for a fake or a proxy the services' `baseUrl` is overridden. Authentication is
the X-API-Key header; our attempt's idempotency key goes on every call as Adyen's `Idempotency-Key`
(the SDK's `idempotency_key` argument). Adyen keys hold 64 characters at most; ours are shorter.

Flows: authorize = POST /payments with the card (`additionalData.manualCapture` unless the request
asks for capture in the same call); capture (full or partial), void (= cancel) and refund (full or
partial) on the payment's pspReference. Adyen answers those three with status "received": the
result comes later by webhook, so "received" is PENDING (the payment waits for the CAPTURE /
CANCELLATION / REFUND notification). RedirectShopper / IdentifyShopper / ChallengeShopper (3-D
Secure) are REQUIRES_ACTION with Adyen's `action` as the next action (a redirect in our words when
it is one); `returnUrl` is the payment's, else the connector's. Received / Pending on /payments are
PENDING: the AUTHORISATION notification says how it ended. Checkout cannot look a payment up, so a
payment waiting on the shopper is resumed by that notification only (status() says `no_lookup`).

Status: Adyen has no lookup by idempotency key (nor any payment lookup in Checkout). Adyen keeps a
key's first answer (at least 7 days) and replays it to the identical request, so status() answers
NOT_FOUND without a call (code `replay_required`), and reconciliation re-sends the identical
authorize with the same key, rebuilt from the stored payment; the request is a pure function of the
AuthorizeRequest. A key reused while in flight or with another body is Adyen's 422 errorCode 704:
mapped UNKNOWN, never a decline or a failover. Another key is never used for the same attempt.
"""
from __future__ import annotations

from typing import Any, Mapping
from urllib.parse import urlsplit

import Adyen as adyen_sdk
from Adyen.exceptions import AdyenAPIResponseError, AdyenError
from Adyen.services.checkout import ModificationsApi, PaymentsApi

from ..domain.psp import ErrorClass, Outcome, PspResult, outcome_for
from ..ports import AuthorizeRequest
from .secret import Secret
from .transport import is_transport_error, never_sent, observed, redact

API_VERSION = "v72"
# refusalReasonCode (Adyen's "Refusal reasons" page) -> the shared taxonomy; others: hard decline.
_REFUSAL_CLASS = {
    "4": ErrorClass.SOFT_DECLINE,       # Acquirer Error
    "9": ErrorClass.SOFT_DECLINE,       # Issuer Unavailable
    "21": ErrorClass.SOFT_DECLINE,      # Not Submitted
    "11": ErrorClass.AUTHENTICATION_REQUIRED,  # 3D Not Authenticated
    "38": ErrorClass.AUTHENTICATION_REQUIRED,  # Authentication required
    "42": ErrorClass.AUTHENTICATION_REQUIRED,  # 3DS Authentication Error
    "12": ErrorClass.INSUFFICIENT_FUNDS,       # Not enough balance
    "28": ErrorClass.INSUFFICIENT_FUNDS,       # Withdrawal amount exceeded
    "14": ErrorClass.FRAUD,             # Acquirer Fraud
    "20": ErrorClass.FRAUD,             # FRAUD
    "22": ErrorClass.FRAUD,             # FRAUD-CANCELLED
    "31": ErrorClass.FRAUD,             # Issuer Suspected Fraud
}
_ACTION_CODES = {"RedirectShopper", "IdentifyShopper", "ChallengeShopper"}
_NOT_FINAL = {"Received", "Pending", "PresentToShopper"}
_IDEMPOTENCY_CONFLICT = "704"  # request already processed or in progress


class AdyenConnector:
    """One Adyen merchant account (API key + merchant account) as a PSP of the platform."""

    def __init__(self, name: str, api_key: Secret, merchant_account: str, base_url: str | None = None,
                 timeout_s: float = 10.0, environment: str = "test", live_endpoint_prefix: str | None = None,
                 return_url: str = "https://checkout.invalid/return") -> None:
        if not isinstance(api_key, Secret):
            raise TypeError(f"connector {name!r}: api_key must be a Secret")
        if not merchant_account:
            raise ValueError(f"connector {name!r}: merchant_account is required")
        self.name = name
        self._merchant = merchant_account
        self._return_url = return_url
        client = adyen_sdk.AdyenClient(xapikey=api_key.reveal(), platform=environment, http_timeout=timeout_s,
                                       live_endpoint_prefix=live_endpoint_prefix, http_force="requests",
                                       application_name="payments-platform")
        self._payments, self._modifications = PaymentsApi(client), ModificationsApi(client)
        if base_url:
            for service in (self._payments, self._modifications):
                service.baseUrl = f"{base_url.rstrip('/')}/{API_VERSION}"
        self._host = urlsplit(self._payments.baseUrl).hostname or "checkout"

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> AdyenConnector:
        """Build from a tenant PSP config: name, api_key (a Secret once opened), merchant_account, and
        optionally base_url, timeout_s, environment ("test"/"live"), live_endpoint_prefix, return_url."""
        missing = [k for k in ("name", "api_key", "merchant_account") if not cfg.get(k)]
        if missing:
            raise ValueError(f"adyen connector config lacks {', '.join(missing)}")
        key = cfg["api_key"]
        extra = {k: cfg[k] for k in ("environment", "live_endpoint_prefix", "return_url") if cfg.get(k)}
        return cls(str(cfg["name"]), key if isinstance(key, Secret) else Secret(str(key)),
                   str(cfg["merchant_account"]), cfg.get("base_url"), float(cfg.get("timeout_s") or 10.0), **extra)

    def __repr__(self) -> str:
        return f"AdyenConnector({self.name!r}, merchant={self._merchant!r}, host={self._host!r})"

    # -- Connector protocol -------------------------------------------------------------------
    def authorize(self, request: AuthorizeRequest) -> PspResult:
        """POST /payments with the card; the same key replays the first answer."""
        if request.card is None:  # SEPA direct debit needs the shopper's name and a mandate: later
            return PspResult(outcome_for(ErrorClass.PSP_ERROR), None, "method_not_supported",
                             "bank accounts are not supported by the Adyen connector", error_class=ErrorClass.PSP_ERROR)
        body = {
            "merchantAccount": self._merchant,
            "amount": {"value": request.amount, "currency": request.currency},
            "reference": request.reference or request.idempotency_key,
            "paymentMethod": {"type": "scheme", "number": request.card["number"],
                              "expiryMonth": f"{int(request.card['exp_month']):02d}",
                              "expiryYear": str(request.card["exp_year"])},
            "shopperInteraction": "Ecommerce",
            "returnUrl": request.return_url or self._return_url,
            "metadata": {"correlationId": request.correlation_id},
        }
        if not request.capture:
            body["additionalData"] = {"manualCapture": "true"}
        return self._call("authorize", request.idempotency_key,
                          lambda key: self._payments.payments(body, idempotency_key=key), body["returnUrl"])

    def capture(self, psp_reference: str, amount: int, currency: str, idempotency_key: str) -> PspResult:
        """Capture `amount` of an authorisation; Adyen answers "received" (PENDING until its webhook)."""
        body = {"merchantAccount": self._merchant, "amount": {"value": amount, "currency": currency},
                "reference": idempotency_key}
        return self._call("capture", idempotency_key, lambda key: self._modifications.capture_authorised_payment(
            body, psp_reference, idempotency_key=key))

    def void(self, psp_reference: str, idempotency_key: str) -> PspResult:
        """Cancel an uncaptured authorisation; Adyen answers "received"."""
        body = {"merchantAccount": self._merchant, "reference": idempotency_key}
        return self._call("void", idempotency_key,
                          lambda key: self._modifications.cancel_authorised_payment_by_psp_reference(
                              body, psp_reference, idempotency_key=key))

    def refund(self, psp_reference: str, amount: int, currency: str, idempotency_key: str) -> PspResult:
        """Refund `amount` of a captured payment; Adyen answers "received"."""
        body = {"merchantAccount": self._merchant, "amount": {"value": amount, "currency": currency},
                "reference": idempotency_key}
        return self._call("refund", idempotency_key, lambda key: self._modifications.refund_captured_payment(
            body, psp_reference, idempotency_key=key))

    def status(self, idempotency_key: str, psp_reference: str | None = None) -> PspResult:
        """With a pspReference: Checkout has no payment lookup, the AUTHORISATION webhook is the source
        (NOT_FOUND `no_lookup`, no call). Without: no lookup by key at Adyen: NOT_FOUND tells reconciliation to replay the identical authorize
        with this same key (see the module docstring); no call is made."""
        if psp_reference:
            return PspResult(Outcome.NOT_FOUND, psp_reference, "no_lookup",
                             "Adyen Checkout has no payment lookup: the AUTHORISATION webhook says how it ended")
        return PspResult(Outcome.NOT_FOUND, None, "replay_required",
                         "Adyen has no status by idempotency key: replay the identical request with the same key")

    # -- mapping --------------------------------------------------------------------------------
    def _call(self, op: str, key: str, send: Any, return_url: str | None = None) -> PspResult:
        def run() -> PspResult:
            try:
                answer = send(key)
            except AdyenAPIResponseError as e:
                return _from_error(op, e)
            except AdyenError as e:  # the SDK refused before sending (configuration): nothing left
                return _result(op, ErrorClass.PSP_ERROR, "client_error", type(e).__name__)
            except Exception as e:  # noqa: BLE001 - whatever broke, the request may have been processed
                if is_transport_error(e) and never_sent(e):
                    return _result(op, ErrorClass.UNAVAILABLE, "connect_failed", type(e).__name__)
                return _result(op, ErrorClass.UNKNOWN, "no_response", type(e).__name__)
            return _from_answer(op, answer.message if isinstance(answer.message, dict) else {}, return_url)
        return observed(self.name, op, key, self._host, run)


def _result(op: str, error: ErrorClass, code: str | None, message: Any, ref: str | None = None) -> PspResult:
    return PspResult(outcome_for(error, authorization=op == "authorize"), ref, code, redact(message), error_class=error)


def _slug(text: Any) -> str:
    return "_".join(str(text).lower().replace("-", " ").split()) or "refused"


def _next_action(action: Any, return_url: str | None) -> dict[str, Any]:
    """Adyen's action in our words: a redirect, or an action only Adyen's client SDK runs (threeDS2)."""
    action = action if isinstance(action, dict) else {}
    if action.get("type") == "redirect" and action.get("url"):
        return {"type": "redirect", "url": str(action["url"]), "method": str(action.get("method") or "GET"),
                "return_url": return_url}
    data = {k: v for k, v in action.items() if k in ("token", "subtype", "paymentData", "paymentMethodType")}
    return {"type": "sdk", "psp_type": str(action.get("type") or "unknown"), "data": data, "return_url": return_url}


def _from_answer(op: str, body: dict[str, Any], return_url: str | None = None) -> PspResult:
    """A 2xx answer: a payment result (authorize) or a modification ("received")."""
    ref = body.get("pspReference")
    if op != "authorize":
        if body.get("status") == "received" and ref:
            return PspResult(Outcome.PENDING, ref, "received", f"Adyen received the {op}; its result comes by webhook")
        return _result(op, ErrorClass.UNKNOWN, "unreadable_response", "2xx without status received")
    code = body.get("resultCode")
    if code == "Authorised" and ref:
        return PspResult(Outcome.APPROVED, ref)
    if code == "Refused":
        reason = body.get("refusalReason")
        return _result(op, _REFUSAL_CLASS.get(str(body.get("refusalReasonCode")), ErrorClass.HARD_DECLINE),
                       _slug(reason), reason, ref)
    if code in _ACTION_CODES:  # 3-D Secure: the shopper acts, Adyen decides (AUTHORISATION webhook)
        return PspResult(Outcome.REQUIRES_ACTION, ref, _slug(code), f"the issuer asks for 3-D Secure ({code})",
                         next_action=_next_action(body.get("action"), return_url))
    if code == "Cancelled":
        return _result(op, ErrorClass.HARD_DECLINE, "cancelled", "Adyen cancelled the payment", ref)
    if code == "Error":
        return _result(op, ErrorClass.PSP_ERROR, "error", body.get("refusalReason") or "Adyen answered Error", ref)
    if code in _NOT_FINAL and ref:  # the outcome comes later (AUTHORISATION webhook)
        return PspResult(Outcome.PENDING, ref, _slug(code), f"Adyen answered {code}")
    return _result(op, ErrorClass.UNKNOWN, "unreadable_response", "2xx without a known resultCode")


def _from_error(op: str, e: AdyenAPIResponseError) -> PspResult:
    """An Adyen error answer: its HTTP status and errorCode decide (never its raw request: a card)."""
    status = int(e.status_code or 0) if str(e.status_code or "").isdigit() else 0
    code = str(e.error_code) if e.error_code else f"http_{status}"
    message = e.message.get("message") if isinstance(e.message, dict) else None
    if e.error_code == _IDEMPOTENCY_CONFLICT:  # in flight, or the key went with another body: maybe charged
        return _result(op, ErrorClass.UNKNOWN, "idempotency_conflict", message)
    if e.error_code == "101" and op == "authorize":  # Invalid card number: the card's fault, not the request's
        return _result(op, ErrorClass.HARD_DECLINE, "invalid_card_number", message)
    if status == 429:
        return _result(op, ErrorClass.UNAVAILABLE, code, message)
    if status >= 500 or status == 0:
        return _result(op, ErrorClass.UNKNOWN, code, message)
    return _result(op, ErrorClass.PSP_ERROR, code, message)  # 400/401/403/404/422: refused, not processed
