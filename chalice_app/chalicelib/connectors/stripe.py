"""Stripe connector: PaymentIntents on the official `stripe` SDK.

One `StripeClient` per connector, pointed by `base_addresses` (never the module-global `api_base`,
which every other client in the process would share) and with `max_network_retries=0`: the
platform's unknown-outcome handling owns retries, and an SDK retry would hide an unknown outcome.

Flows: authorize = create + confirm a PaymentIntent with the card (capture_method manual, or
automatic when the request asks the PSP to capture in the same call); capture (full or partial:
`amount_to_capture`, Stripe releases the rest); void = cancel; refund (full or partial) = a Refund
on the PaymentIntent. Our attempt's idempotency key goes on every call as Stripe's
`Idempotency-Key` (the SDK's `idempotency_key` request option).

Status: Stripe has no lookup by idempotency key. Stripe saves the first answer to a key (a 402
decline and a 500 included) for at least 24 hours and replays it to an identical request, so the
status of an authorization is learned by replaying it: status() answers NOT_FOUND without a call
(code `replay_required`), and reconciliation then re-sends authorize with the same key and the
identical request, rebuilt from the stored payment (the token opened again). The request is a
pure function of the AuthorizeRequest for that reason: no timestamps, nothing random. Stripe
answers the first result, or, if the first request never arrived, processes this one once.
Another key is never used for the same attempt. A replay with other parameters is Stripe's
idempotency_error: mapped UNKNOWN (the first may have charged), never a decline or a failover.
The reconciliation schedule must end well inside Stripe's 24 hours (it ends in minutes).

3-D Secure: confirm carries a `return_url` (the payment's, else the connector's `return_url`), so
Stripe answers `requires_action` with `next_action.redirect_to_url` (without one it would ask for
its own JS SDK): REQUIRES_ACTION with the redirect. A PaymentIntent that names itself can be looked
up: status() with the PaymentIntent id retrieves it (GET, no key needed) and maps it as an
authorize answer, which is how a payment waiting on the shopper is resumed without a webhook.
A `processing` PaymentIntent or a `pending` refund is PENDING: Stripe says how it ended by webhook.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping
from urllib.parse import urlsplit

import stripe as stripe_sdk

from ..domain.psp import ErrorClass, Outcome, PspResult, outcome_for
from ..ports import AuthorizeRequest
from .secret import Secret
from .transport import is_transport_error, never_sent, observed, redact

# The SDK logs each request body (the card number) at DEBUG on the "stripe" logger.
logging.getLogger("stripe").setLevel(logging.WARNING)

_DECLINE_CLASS = {  # Stripe decline codes and card error codes -> the shared taxonomy
    "insufficient_funds": ErrorClass.INSUFFICIENT_FUNDS, "withdrawal_count_limit_exceeded": ErrorClass.INSUFFICIENT_FUNDS,
    "card_velocity_exceeded": ErrorClass.INSUFFICIENT_FUNDS,
    "fraudulent": ErrorClass.FRAUD, "lost_card": ErrorClass.FRAUD, "stolen_card": ErrorClass.FRAUD,
    "pickup_card": ErrorClass.FRAUD, "merchant_blacklist": ErrorClass.FRAUD, "security_violation": ErrorClass.FRAUD,
    "authentication_required": ErrorClass.AUTHENTICATION_REQUIRED,
    "authentication_not_handled": ErrorClass.AUTHENTICATION_REQUIRED,
    "processing_error": ErrorClass.SOFT_DECLINE, "try_again_later": ErrorClass.SOFT_DECLINE,
    "issuer_not_available": ErrorClass.SOFT_DECLINE, "reenter_transaction": ErrorClass.SOFT_DECLINE,
    "approve_with_id": ErrorClass.SOFT_DECLINE,
    "payment_intent_authentication_failure": ErrorClass.AUTHENTICATION_REQUIRED,  # the shopper failed 3DS
}
# PaymentIntent status after authorize -> outcome (None: read the error / taxonomy below).
_AUTHORIZE_STATUS = {"requires_capture": Outcome.APPROVED, "succeeded": Outcome.APPROVED,
                     "processing": Outcome.PENDING, "requires_confirmation": Outcome.UNKNOWN}
_FOLLOW_UP_STATUS = {  # (operation, status) -> outcome for capture, void and refund answers
    ("capture", "succeeded"): Outcome.APPROVED, ("void", "canceled"): Outcome.APPROVED,
    ("refund", "succeeded"): Outcome.APPROVED, ("refund", "pending"): Outcome.PENDING,
    ("refund", "requires_action"): Outcome.PENDING,
}
DEFAULT_RETURN_URL = "https://checkout.invalid/return"


class StripeConnector:
    """One Stripe account (one secret key) as a PSP of the platform."""

    def __init__(self, name: str, api_key: Secret, base_url: str | None = None, timeout_s: float = 10.0,
                 return_url: str = DEFAULT_RETURN_URL) -> None:
        if not isinstance(api_key, Secret):
            raise TypeError(f"connector {name!r}: api_key must be a Secret")
        if timeout_s <= 0:
            raise ValueError(f"connector {name!r}: timeout_s must be positive")
        self.name = name
        self._return_url = return_url
        self._host = urlsplit(base_url).hostname if base_url else "api.stripe.com"
        # connect timeout short: a PSP that does not accept the connection is unavailable, fail over
        http = stripe_sdk.RequestsClient(timeout=(min(timeout_s, 3.0), timeout_s))
        self._client = stripe_sdk.StripeClient(api_key.reveal(), base_addresses={"api": base_url} if base_url else None,
                                               max_network_retries=0, http_client=http)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> StripeConnector:
        """Build from a tenant PSP config: name, api_key (a Secret once opened), optional base_url, timeout_s."""
        missing = [k for k in ("name", "api_key") if not cfg.get(k)]
        if missing:
            raise ValueError(f"stripe connector config lacks {', '.join(missing)}")
        key = cfg["api_key"]
        return cls(str(cfg["name"]), key if isinstance(key, Secret) else Secret(str(key)), cfg.get("base_url"),
                   float(cfg.get("timeout_s") or 10.0), str(cfg.get("return_url") or DEFAULT_RETURN_URL))

    def __repr__(self) -> str:
        return f"StripeConnector({self.name!r}, host={self._host!r})"

    # -- Connector protocol -------------------------------------------------------------------
    def authorize(self, request: AuthorizeRequest) -> PspResult:
        """Create and confirm a PaymentIntent with the card; the same key replays the first answer."""
        if request.card is None:  # Stripe SEPA debits need a mandate flow this slice does not have
            return PspResult(outcome_for(ErrorClass.PSP_ERROR), None, "method_not_supported",
                             "bank accounts are not supported by the Stripe connector", error_class=ErrorClass.PSP_ERROR)
        params = {
            "amount": request.amount, "currency": request.currency.lower(), "confirm": True,
            "capture_method": "automatic" if request.capture else "manual",
            "payment_method_types": ["card"],
            "payment_method_data": {"type": "card", "card": {
                "number": request.card["number"], "exp_month": request.card["exp_month"],
                "exp_year": request.card["exp_year"]}},
            "metadata": {"payment_id": request.reference or "", "correlation_id": request.correlation_id},
            "return_url": request.return_url or self._return_url,  # so 3-D Secure comes back as a redirect
        }
        return self._call("authorize", request.idempotency_key,
                          lambda opts: self._client.v1.payment_intents.create(params, opts))

    def capture(self, psp_reference: str, amount: int, currency: str, idempotency_key: str) -> PspResult:
        """Capture `amount` of a PaymentIntent in requires_capture (less than all releases the rest)."""
        return self._call("capture", idempotency_key, lambda opts: self._client.v1.payment_intents.capture(
            psp_reference, {"amount_to_capture": amount}, opts))

    def void(self, psp_reference: str, idempotency_key: str) -> PspResult:
        """Cancel an uncaptured PaymentIntent."""
        return self._call("void", idempotency_key, lambda opts: self._client.v1.payment_intents.cancel(
            psp_reference, {}, opts))

    def refund(self, psp_reference: str, amount: int, currency: str, idempotency_key: str) -> PspResult:
        """Refund `amount` of a captured PaymentIntent."""
        return self._call("refund", idempotency_key, lambda opts: self._client.v1.refunds.create(
            {"payment_intent": psp_reference, "amount": amount}, opts))

    def status(self, idempotency_key: str, psp_reference: str | None = None) -> PspResult:
        """With a PaymentIntent id: retrieve it and map it as an authorize answer. Without one: no
        lookup by key at Stripe, NOT_FOUND tells reconciliation to replay the identical authorize
        with this same key (see the module docstring); no call is made."""
        if psp_reference:
            return self._call("authorize", idempotency_key,
                              lambda opts: self._client.v1.payment_intents.retrieve(psp_reference), keyed=False)
        return PspResult(Outcome.NOT_FOUND, None, "replay_required",
                         "Stripe has no status by idempotency key: replay the identical request with the same key")

    # -- mapping --------------------------------------------------------------------------------
    def _call(self, op: str, key: str, send: Any, keyed: bool = True) -> PspResult:
        def run() -> PspResult:
            try:
                return _from_object(op, send({"idempotency_key": key} if keyed else {}))
            except stripe_sdk.StripeError as e:
                return _from_error(op, e)
            except Exception as e:  # noqa: BLE001 - whatever broke, the request may have been processed
                if is_transport_error(e) and never_sent(e):
                    return _result(op, ErrorClass.UNAVAILABLE, "connect_failed", type(e).__name__)
                return _result(op, ErrorClass.UNKNOWN, "no_response", type(e).__name__)
        return observed(self.name, op, key, self._host, run)


def _result(op: str, error: ErrorClass, code: str | None, message: Any, ref: str | None = None) -> PspResult:
    return PspResult(outcome_for(error, authorization=op == "authorize"), ref, code, redact(message), error_class=error)


def _field(obj: Any, name: str) -> Any:
    """A field of an SDK object (StripeObject reads by attribute), None when absent."""
    if obj is None:
        return None
    try:
        return obj[name]
    except (KeyError, TypeError, IndexError):
        return getattr(obj, name, None)


def _decline_class(code: str | None, decline_code: str | None) -> ErrorClass:
    return _DECLINE_CLASS.get(decline_code or "") or _DECLINE_CLASS.get(code or "") or ErrorClass.HARD_DECLINE


def _from_object(op: str, obj: Any) -> PspResult:
    """A 2xx answer: a PaymentIntent (authorize, capture, void) or a Refund."""
    ref, status = _field(obj, "id"), _field(obj, "status")
    if not ref or not isinstance(status, str):
        return _result(op, ErrorClass.UNKNOWN, "unreadable_response", "2xx without an id and a status")
    if op == "authorize":
        if status in _AUTHORIZE_STATUS:
            outcome = _AUTHORIZE_STATUS[status]
            return PspResult(outcome, ref, None if outcome is Outcome.APPROVED else status,
                             None if outcome is Outcome.APPROVED else f"PaymentIntent {status}",
                             error_class=ErrorClass.UNKNOWN if outcome is Outcome.UNKNOWN else None)
        if status == "requires_action":  # 3-D Secure wanted: the shopper acts, this PSP decides
            return PspResult(Outcome.REQUIRES_ACTION, ref, "requires_action",
                             "the issuer asks for 3-D Secure", next_action=_next_action(_field(obj, "next_action")))
        error = _field(obj, "last_payment_error")
        code, decline_code = _field(error, "code"), _field(error, "decline_code")
        return _result(op, _decline_class(code, decline_code) if error else ErrorClass.HARD_DECLINE,
                       decline_code or code or status, _field(error, "message") or f"PaymentIntent {status}", ref)
    outcome = _FOLLOW_UP_STATUS.get((op, status))
    if outcome is Outcome.APPROVED:
        return PspResult(Outcome.APPROVED, ref)
    if outcome is Outcome.PENDING:  # not final yet (a pending refund): Stripe's webhook says how it ends
        return PspResult(Outcome.PENDING, ref, status, f"{op} {status}")
    return _result(op, ErrorClass.HARD_DECLINE, f"{op}_{status}", f"{op} answered {status}", ref)


def _next_action(action: Any) -> dict[str, Any]:
    """Stripe's next_action in our words (a redirect when confirm carried a return_url)."""
    kind = _field(action, "type")
    redirect = _field(action, "redirect_to_url")
    if kind == "redirect_to_url" and _field(redirect, "url"):
        return {"type": "redirect", "url": str(_field(redirect, "url")), "method": "GET",
                "return_url": _field(redirect, "return_url")}
    return {"type": "sdk", "psp_type": str(kind or "unknown")}


def _from_error(op: str, e: stripe_sdk.StripeError) -> PspResult:
    """A Stripe error answer (or the SDK's wrapping of a transport failure)."""
    code = getattr(e, "code", None)
    if isinstance(e, stripe_sdk.APIConnectionError):
        if never_sent(e):
            return _result(op, ErrorClass.UNAVAILABLE, "connect_failed", "connection to Stripe failed")
        return _result(op, ErrorClass.UNKNOWN, "no_response", "no answer from Stripe after sending")
    if isinstance(e, stripe_sdk.CardError):
        decline_code = _field(e.error, "decline_code")
        return _result(op, _decline_class(code, decline_code), decline_code or code or "card_declined",
                       e.user_message, _field(_field(e.error, "payment_intent"), "id"))
    if isinstance(e, stripe_sdk.IdempotencyError):
        return _result(op, ErrorClass.UNKNOWN, "idempotency_conflict",
                       "Stripe refused the key: it was used with other parameters")
    if isinstance(e, stripe_sdk.RateLimitError):
        return _result(op, ErrorClass.UNAVAILABLE, code or "rate_limit", e.user_message)
    status = e.http_status or 0
    if status == 409 or status >= 500 or isinstance(e, stripe_sdk.APIError):
        # in progress under the same key, a lock, a 5xx, or a 2xx the SDK could not read: maybe processed
        return _result(op, ErrorClass.UNKNOWN, code or f"http_{status}", e.user_message)
    return _result(op, ErrorClass.PSP_ERROR, code or f"http_{status}", e.user_message)
