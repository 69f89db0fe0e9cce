"""Settlement: balanced double-entry ledger postings, grouped in daily settlement batches.

Sign convention: debit +, credit -. Every transaction sums to zero per
currency (I4), which `postings_for_capture`/`postings_for_refund` assert.
"""
from __future__ import annotations

from typing import Any

from ..domain.events import Event
from ..domain.payment import Payment, TimelineEntry
from ..domain.states import State
from ..ports import Posting
from .context import StageContext

NAME = "settlement"
CONSUMES = ("payments.captured", "payments.refunded")
DEFAULT_FEE_BPS = 140  # 1.40 %, overridable per tenant (tenant["fees"]["bps"])


def fee_for(amount: int, tenant: dict[str, Any]) -> int:
    bps = (tenant.get("fees") or {}).get("bps", DEFAULT_FEE_BPS)
    return (amount * bps + 5_000) // 10_000  # round half up, in minor units


def _balanced(postings: list[Posting]) -> list[Posting]:
    sums: dict[str, int] = {}
    for p in postings:
        sums[p.currency] = sums.get(p.currency, 0) + p.amount
    if any(sums.values()):
        raise AssertionError(f"unbalanced ledger transaction {postings[0].txn_id}: {sums}")
    return postings


def postings_for_capture(payment: Payment, psp: str, amount: int, fee: int, batch: str, at: str) -> list[Posting]:
    txn = f"txn_{payment.payment_id}_capture"
    leg = lambda account, value: Posting(txn, payment.tenant_id, payment.payment_id, account,  # noqa: E731
                                         payment.currency, value, batch, at)
    return _balanced([leg(f"psp_receivable:{psp}", amount), leg("merchant_payable", -(amount - fee)),
                      leg("platform_fees", -fee)])


def postings_for_refund(payment: Payment, psp: str, refund_id: str, amount: int, batch: str, at: str) -> list[Posting]:
    txn = f"txn_{refund_id}"
    return _balanced([
        Posting(txn, payment.tenant_id, payment.payment_id, "merchant_payable", payment.currency, amount, batch, at),
        Posting(txn, payment.tenant_id, payment.payment_id, f"psp_receivable:{psp}", payment.currency, -amount,
                batch, at)])


def handle(event: Event, ctx: StageContext) -> None:
    payment = ctx.load(event)
    at = ctx.now()
    batch = at[:10]  # one settlement batch per UTC day
    version = payment.version
    if event.type == "payments.captured":
        if payment.state != State.CAPTURED:
            return ctx.skip(event, payment, f"already {payment.state.value}")
        amount = event.data["amount"]
        fee = fee_for(amount, ctx.tenant(payment.tenant_id))
        postings = postings_for_capture(payment, event.data["psp"], amount, fee, batch, at)
        payment.settle(at, batch)
        kind, txn = "capture", postings[0].txn_id
    else:  # payments.refunded: the money goes back; the payment's state already says so
        postings = postings_for_refund(payment, event.data["psp"], event.data["refund_id"], event.data["amount"],
                                       batch, at)
        payment.pending_timeline.append(TimelineEntry(at, "settle_refund", payment.state.value, payment.state.value,
                                                      NAME, {"refund_id": event.data["refund_id"], "batch": batch}))
        amount, kind, txn = event.data["amount"], "refund", postings[0].txn_id
    out = ctx.event(event, payment, "payments.settled", {
        "kind": kind, "amount": amount, "currency": payment.currency, "batch": batch, "txn_id": txn,
        "status": payment.status})
    ctx.commit(event, payment, version, [out], postings)
