"""The application service behind the HTTP API: commands in, (status, body) out.

Routes parse and authenticate; everything else -- idempotency, edge
validation, tokenization, the state change with its outbox event -- is here,
so the API, payctl and the tests take one path.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace
from typing import Any, Callable

import orjson

from .. import codec, ids
from ..clock import iso
from ..domain.cards import holds_pan
from ..domain.payment import DomainError, Payment
from ..domain.rules import RuleViolation, check_amount, check_expiry, check_instrument, normalize_iban
from ..domain.states import PUBLIC_STATUSES, Action, IllegalTransition
from ..observability import context, tracing
from ..ports import AlreadyExists, Changes, ConcurrencyConflict, IdempotencyRecord, Platform
from .api_io import ApiError, Reply, echo, parse_json, payment_view, validate

RETRY_IN_PROGRESS_S = 1  # a request holding its Idempotency-Key: ask the client back this much later


def _verb(action: Action) -> str:
    """The refused action as the API names it: a refund request checks the refund transitions."""
    return "refund" if action in (Action.REFUND_PARTIAL, Action.REFUND_FULL) else action.value.replace("_", " ")


class PaymentService:
    def __init__(self, platform: Platform, actor: str | None = None):
        self.p = platform
        self.actor = actor  # "api:<key id>": named on the audit rows of the state changes it commits

    # -- helpers ---------------------------------------------------------------------
    def _now(self) -> str:
        return iso(self.p.clock.now())

    def _event(self, payment: Payment, etype: str, data: dict[str, Any], correlation_id: str):
        return codec.new_event(etype, tenant_id=payment.tenant_id, payment_id=payment.payment_id,
                               correlation_id=correlation_id, causation_id=None, at=self._now(),
                               region=self.p.settings.region, data=data)

    def _get(self, tenant_id: str, payment_id: str) -> Payment:
        payment = self.p.store.payments.get_payment(tenant_id, payment_id) if payment_id.startswith("pay_") else None
        if payment is None:  # another tenant's payment gets the same answer as none at all
            raise ApiError(404, "Payment not found", f"no payment {echo(payment_id)} for this tenant")
        return payment

    def _request_hash(self, body: Any) -> str:
        # Keyed, because the body holds a card number: an unkeyed hash of a PAN is guessable.
        canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
        return hmac.new(self.p.settings.api_key_pepper, canonical, hashlib.sha256).hexdigest()

    # -- commands ----------------------------------------------------------------------
    def create_payment(self, tenant_id: str, idempotency_key: str | None, raw: bytes | None,
                       correlation_id: str) -> Reply:
        if not idempotency_key:
            raise ApiError(400, "Idempotency-Key required", "POST /v1/payments needs an Idempotency-Key header")
        if len(idempotency_key) > 255:
            raise ApiError(400, "Invalid Idempotency-Key", "Idempotency-Key must be at most 255 characters")
        if holds_pan(idempotency_key):  # the key is stored as given
            raise ApiError(400, "Invalid Idempotency-Key", "Idempotency-Key holds what looks like a card number")
        body = parse_json(raw)
        validate("create_payment", body)
        if holds_pan(str(body.get("return_url") or "")):  # stored and sent on: never a card number in it
            raise ApiError(400, "Invalid return_url", "return_url holds what looks like a card number",
                           invalid_fields=["return_url"])
        request_hash = self._request_hash(body)
        now = int(self.p.clock.now().timestamp())
        settings = self.p.settings
        claim = IdempotencyRecord(tenant_id, idempotency_key, request_hash, 0, b"", {},
                                  now + settings.idempotency_ttl_s, now, "in_flight", now + settings.idempotency_lock_s)
        found = self.p.store.idempotency.claim_idempotency(claim)
        if found is not None:
            return self._answer_existing(found, request_hash)
        try:
            return self._create(tenant_id, body, claim, correlation_id)
        except ApiError:  # refused: keep nothing, so the key can be used again
            self.p.store.idempotency.release_idempotency(tenant_id, idempotency_key, request_hash)
            raise

    def _home_epoch(self, home: str) -> int:
        """Our epoch for payments of `home`, or a 503: the region holding that lease drives them.

        A new payment's home is this region: refused while a peer holds our lease (we were failed
        over), since nothing here would drive it. Nobody holding it (a lapse, a first start) is
        fine: our worker takes it with the next epoch and drives what we accepted."""
        lease = self.p.ownership.lease(home)
        if lease is not None and lease.owner != self.p.settings.region \
                and self.p.ownership.wall() < lease.expires_at + self.p.settings.lease_skew_s:
            raise ApiError(503, "Region not serving these payments",
                           f"payments of home region {home} are driven by region {lease.owner} now; retry",
                           code="region_not_owner", retry_after_s=max(1, round(self.p.settings.lease_skew_s)))
        return lease.epoch if lease is not None and lease.owner == self.p.settings.region else 0

    def _create(self, tenant_id: str, body: dict[str, Any], claim: IdempotencyRecord, correlation_id: str) -> Reply:
        epoch = self._home_epoch(self.p.settings.region)
        tenant = self.p.store.tenants.get_tenant(tenant_id)
        method_in = body["payment_method"]
        kind = method_in["type"]
        secret = method_in["card"]["number"] if kind == "card" else method_in["bank_account"]["iban"]
        try:
            check_amount(body["amount"], body["currency"], tenant)
            check_instrument(kind, secret)
            if kind == "card":  # before anything is stored or routed: no PSP sees an expired card
                check_expiry(method_in["card"]["exp_month"], method_in["card"]["exp_year"], self.p.clock.now().date())
        except RuleViolation as v:
            raise ApiError(422, "Payment refused", str(v), code=v.code,
                           invalid_fields=[v.field] if v.field else []) from None
        if kind == "bank_account":
            secret = normalize_iban(secret)
        token, secret_row = self.p.vault.tokenize(tenant_id, secret)
        if kind == "card":
            c = method_in["card"]
            method = {"type": "card", "card": {"token": token, "bin": secret[:6], "last4": secret[-4:],
                                               "brand": _brand(secret), "exp_month": c["exp_month"],
                                               "exp_year": c["exp_year"]}}
        else:
            method = {"type": "bank_account", "bank_account": {"token": token, "country": secret[:2],
                                                               "last4": secret[-4:]}}
            if method_in["bank_account"].get("holder_name"):
                method["bank_account"]["holder_name"] = method_in["bank_account"]["holder_name"]
        at = self._now()
        payment = Payment(
            tenant_id=tenant_id, payment_id=ids.payment_id(), amount=body["amount"], currency=body["currency"],
            capture_mode=body.get("capture", "automatic"), payment_method=method,
            reference=body.get("reference"), customer=body.get("customer") or {}, correlation_id=correlation_id,
            created_at=at, updated_at=at, region=self.p.settings.region, epoch=epoch,
            metadata=body.get("metadata") or {}, trace=tracing.current_header(), return_url=body.get("return_url"))
        context.bind(payment_id=payment.payment_id)
        tracing.annotate(**{"payments.payment_id": payment.payment_id, "payments.amount": payment.amount,
                            "payments.currency": payment.currency})
        event = self._event(payment, "payments.initiated", {
            "amount": payment.amount, "currency": payment.currency, "capture_mode": payment.capture_mode,
            "payment_method": method, "reference": payment.reference,
            **({"customer": payment.customer} if payment.customer else {}),
            "metadata": payment.metadata, "return_url": payment.return_url}, correlation_id)
        location = f"/v1/payments/{payment.payment_id}"
        reply = Reply(202, orjson.dumps(payment_view(payment)), {"Location": location})
        record = replace(claim, status_code=reply.status, response=reply.body, headers=reply.headers,
                         state="completed", locked_until=0)
        try:
            self.p.store.commit(Changes(payment=payment, events=[event], idempotency=record,
                                        secrets=[secret_row], actor=self.actor, correlation_id=correlation_id))
        except AlreadyExists:  # our claim lapsed and another request took the key meanwhile
            found = self.p.store.idempotency.get_idempotency(tenant_id, claim.key, claim.created_at)
            if found is not None:
                return self._answer_existing(found, claim.request_hash)
            raise ApiError(409, "Request in progress", "a request with this Idempotency-Key is in progress",
                           retry_after_s=RETRY_IN_PROGRESS_S) from None
        return reply

    def _answer_existing(self, found: IdempotencyRecord, request_hash: str) -> Reply:
        """A key seen before: replay its response, or explain the conflict (409)."""
        if not hmac.compare_digest(found.request_hash, request_hash):
            raise ApiError(409, "Idempotency key reused",
                           "this Idempotency-Key was used with a different request body")
        if found.state != "completed":
            raise ApiError(409, "Request in progress",
                           "a request with this Idempotency-Key is still being processed; retry shortly",
                           retry_after_s=RETRY_IN_PROGRESS_S)
        return Reply(found.status_code, found.response, {**found.headers, "Idempotent-Replayed": "true"})

    def _act(self, schema: str, tenant_id: str, payment_id: str, raw: bytes | None, correlation_id: str,
             apply: Callable[[Payment, dict[str, Any]], list[tuple[str, dict[str, Any]]]]) -> Payment:
        """An action on an existing payment: the optional body checked against `schema`, then
        `apply(payment, body)` as one transition (its events committed with the new state)."""
        body = parse_json(raw, required=False)
        validate(schema, body)
        return self._transition(tenant_id, payment_id, correlation_id, lambda payment: apply(payment, body))

    def _transition(self, tenant_id: str, payment_id: str, correlation_id: str, apply) -> Payment:
        """Load, apply a domain command, commit with its events; retries a lost race twice."""
        for attempt in range(3):
            payment = self._get(tenant_id, payment_id)
            epoch = self._home_epoch(payment.region or self.p.settings.region)
            if payment.epoch > epoch:
                raise ApiError(503, "Region not serving these payments",
                               f"payment {payment_id} is driven under a newer lease than this region's; retry",
                               code="region_not_owner", retry_after_s=1)
            payment.epoch = epoch
            # Later requests join the payment's own trace (the request's trace is linked).
            with tracing.span("payment.update", parent=payment.trace, links=[tracing.current_header()],
                              **{"payments.tenant_id": tenant_id, "payments.payment_id": payment_id}):
                version = payment.version
                try:
                    events = apply(payment)
                except IllegalTransition as e:
                    raise ApiError(409, "Illegal state transition",
                                   f"payment {payment_id} is '{payment.status}'; cannot {_verb(e.action)}",
                                   status_now=payment.status) from None
                except DomainError as e:
                    raise ApiError(422, "Request refused", str(e)) from None
                try:
                    self.p.store.commit(Changes(payment=payment, expected_version=version, events=[
                        self._event(payment, t, d, correlation_id) for t, d in events],
                        actor=self.actor, correlation_id=correlation_id))
                    return payment
                except ConcurrencyConflict:
                    if attempt == 2:
                        raise ApiError(409, "Concurrent update",
                                       f"payment {payment_id} changed meanwhile; retry") from None
        raise AssertionError("unreachable")

    def capture(self, tenant_id: str, payment_id: str, raw: bytes | None, correlation_id: str) -> Reply:
        def apply(payment: Payment, body: dict[str, Any]):
            amount = body.get("amount", payment.amount)
            payment.request_capture(self._now(), amount)
            return [("payments.capture_requested", {"amount": amount})]
        payment = self._act("capture_payment", tenant_id, payment_id, raw, correlation_id, apply)
        return Reply(202, orjson.dumps(payment_view(payment)), {})

    def cancel(self, tenant_id: str, payment_id: str, raw: bytes | None, correlation_id: str) -> Reply:
        def apply(payment: Payment, body: dict[str, Any]):
            reason = body.get("reason")
            if payment.request_cancel(self._now()):
                return [("payments.cancel_requested", {"reason": reason})]
            return [("payments.cancelled", {"reason": reason, "status": "cancelled"})]
        payment = self._act("cancel_payment", tenant_id, payment_id, raw, correlation_id, apply)
        return Reply(202, orjson.dumps(payment_view(payment)), {})

    def refund(self, tenant_id: str, payment_id: str, raw: bytes | None, correlation_id: str) -> Reply:
        refund_id = ids.new_id("re")

        def apply(payment: Payment, body: dict[str, Any]):
            amount = body.get("amount", payment.refundable_amount)
            payment.request_refund(self._now(), refund_id, amount, body.get("reason"))
            return [("payments.refund_requested", {"refund_id": refund_id, "amount": amount})]
        payment = self._act("create_refund", tenant_id, payment_id, raw, correlation_id, apply)
        refund = payment.find_refund(refund_id)
        return Reply(202, orjson.dumps({"id": refund.refund_id, "object": "refund", "payment_id": payment_id,
                                        "amount": refund.amount, "status": refund.status,
                                        "reason": refund.reason}), {})

    # -- queries -----------------------------------------------------------------------
    def get(self, tenant_id: str, payment_id: str) -> Reply:
        payment = self._get(tenant_id, payment_id)
        return Reply(200, orjson.dumps(payment_view(payment, self.p.store.payments.timeline(tenant_id, payment_id))), {})

    def list(self, tenant_id: str, params: dict[str, str]) -> Reply:
        status = params.get("status") or None
        if status and status not in PUBLIC_STATUSES:
            raise ApiError(400, "Invalid query parameter",
                           f"status must be one of {', '.join(PUBLIC_STATUSES)}", invalid_fields=["status"])
        try:
            limit = int(params.get("limit") or 20)
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            raise ApiError(400, "Invalid query parameter", "limit must be an integer from 1 to 100",
                           invalid_fields=["limit"])
        try:
            page, cursor = self.p.store.payments.list_payments(tenant_id, status, limit, params.get("cursor") or None)
        except ValueError:
            raise ApiError(400, "Invalid query parameter", "cursor is not one this API returned: pass next_cursor "
                           "from the previous page as it is", invalid_fields=["cursor"]) from None
        return Reply(200, orjson.dumps({"object": "list", "data": [payment_view(x) for x in page],
                                        "next_cursor": cursor}), {})

    def balances(self, tenant_id: str) -> Reply:
        accounts = self.p.store.ledger.balances(tenant_id)
        available = [{"currency": a["currency"], "amount": -a["balance"]}
                     for a in accounts if a["account"] == "merchant_payable"]
        return Reply(200, orjson.dumps({"object": "balance", "available": available, "accounts": accounts}), {})


def _brand(pan: str) -> str:
    if pan.startswith("4"):
        return "visa"
    if pan[:2] in {"51", "52", "53", "54", "55"} or "2221" <= pan[:4] <= "2720":
        return "mastercard"
    if pan[:2] in {"34", "37"}:
        return "amex"
    return "unknown"
