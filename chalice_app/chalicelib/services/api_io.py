"""What the payments API reads and answers: strict JSON bodies checked against their schemas
(no card number outside the instrument fields), problem details (ApiError), replies and the
public view of a payment. services/payments.py uses them; routes render them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import strict_json
from ..domain.cards import holds_pan, mask_pans
from ..domain.payment import Payment
from ..schemas import SchemaError, validate_request


class ApiError(Exception):
    """An answer that is not a success, rendered as RFC 9457 problem+json."""

    def __init__(self, status: int, title: str, detail: str, **extra: Any):
        super().__init__(detail)
        self.status, self.title, self.detail, self.extra = status, title, detail, extra


@dataclass
class Reply:
    """A status, the exact body bytes and headers (an idempotent replay sends the same bytes)."""
    status: int
    body: bytes
    headers: dict[str, str]


def parse_json(raw: bytes | None, required: bool = True) -> Any:
    """The request body as strict JSON (400 malformed, 413 too large); `required`: empty is 400."""
    if not raw:
        if required:
            raise ApiError(400, "Invalid request body", "request body is empty; a JSON object is required")
        return {}
    try:
        return strict_json.loads(raw)
    except strict_json.StrictJsonError as e:
        if e.reason == "too_large":
            raise ApiError(413, "Request too large", str(e), reason=e.reason) from None
        raise ApiError(400, "Invalid JSON", str(e), reason=e.reason) from None


def validate(name: str, body: Any) -> None:
    """The body against the request schema `name`; a card number in free text is refused (422)."""
    try:
        validate_request(name, body)
    except SchemaError as e:
        detail = str(e) if e.field else f"request body {e}"
        raise ApiError(400, "Invalid request body", detail, invalid_fields=[e.field] if e.field else []) from None
    if (field := _card_number_outside_the_card(body)) is not None:
        raise ApiError(422, "Card number in a free-text field",
                       f"{field} holds what looks like a card number; card data goes only in "
                       "payment_method.card.number, where it is tokenized", code="card_number_in_text",
                       invalid_fields=[field])


# The instrument fields: tokenized at the edge, the one place a card number (or an IBAN's digits) belongs.
_INSTRUMENT = ("payment_method.card.number", "payment_method.bank_account.iban")


def _card_number_outside_the_card(value: Any, path: str = "") -> str | None:
    """The first field (dotted path) other than the instrument whose text carries a Luhn-valid
    13-19 digit run. Free text (reference, metadata, customer, reasons) is stored, published and
    sent in webhooks in clear, so a card number there would break I6; refused, as card networks ask."""
    if isinstance(value, str):
        return path if path not in _INSTRUMENT and holds_pan(value) else None
    if isinstance(value, dict):
        for k, v in value.items():
            if holds_pan(str(k)):  # named by its parent: the key itself must not be echoed
                return path or "body"
            where = f"{path}.{k}" if path else str(k)
            if (found := _card_number_outside_the_card(v, where)) is not None:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if (found := _card_number_outside_the_card(v, f"{path}[{i}]")) is not None:
                return found
    return None


ECHO_CHARS = 40  # what an answer quotes back of the caller's own text, at most


def echo(value: str) -> str:
    """The caller's text quoted in an answer: a bounded prefix, card numbers masked (problem() masks
    the whole detail too), so an 8 KB id is not sent back whole."""
    shown = mask_pans(value[:ECHO_CHARS])
    return repr(shown + ("…" if len(value) > ECHO_CHARS else ""))


def payment_view(p: Payment, timeline: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The payment as the API shows it: no vault token, attempts and refunds summarized."""
    method = {k: v for k, v in p.payment_method.items()}
    kind = method["type"]
    method[kind] = {k: v for k, v in method[kind].items() if k != "token"}
    view = {
        "id": p.payment_id, "object": "payment", "status": p.status, "amount": p.amount,
        "currency": p.currency, "capture": p.capture_mode, "amount_captured": p.captured_amount,
        "amount_refunded": p.refunded_amount, "reference": p.reference, "customer": p.customer,
        "metadata": p.metadata, "payment_method": method,
        "attempts": [{"number": a.number, "psp": a.psp, "status": a.status, "psp_reference": a.psp_reference,
                      "code": a.code, "message": a.message, "started_at": a.started_at, "updated_at": a.updated_at,
                      **({"next_action": a.next_action} if a.next_action else {})}
                     for a in p.attempts],
        "refunds": [{"id": r.refund_id, "amount": r.amount, "status": r.status, "reason": r.reason,
                     "created_at": r.created_at} for r in p.refunds],
        "failure": p.failure, "created_at": p.created_at, "updated_at": p.updated_at,
        "correlation_id": p.correlation_id, "region": p.region, "return_url": p.return_url,
    }
    waiting = p.current_attempt if p.status == "requires_action" else None
    if waiting is not None and waiting.next_action:  # what the merchant sends the shopper to, up front
        view["next_action"] = waiting.next_action
    if timeline is not None:
        view["timeline"] = timeline
    return view
