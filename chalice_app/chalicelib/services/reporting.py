"""Real-time reporting: a consumer of the store's change feed keeps per-tenant aggregates.

The feed is the outbox as committed: the table's DynamoDB stream in AWS (its own
Lambda, `app.reports`), the embedded store's change feed locally (the Runner).
Each change becomes a ReportDelta (counters to add) and the store applies it with
the change's processed marker in one unit of work, so redelivery never counts twice.
GET /v1/reports/summary shapes a tenant's counters into the report.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from ..clock import parse_iso
from ..domain.events import Event
from ..domain.payment import Payment
from ..ports import ReportDelta, Store

CONSUMER = "reports"  # processed-marker namespace and embedded feed reader
SUCCESS = frozenset({"authorized", "captured", "voided"})  # attempt states that were an approval
FAILED_STATUSES = ("declined", "failed", "requires_review")


def _psp_outcomes(payment: Payment) -> dict[str, int]:
    """Every attempt's outcome per PSP, with its latency (started -> last PSP answer)."""
    out: dict[str, int] = {}
    for a in payment.attempts if payment else ():
        outcome = "authorized" if a.status in SUCCESS else a.status
        for name, n in ((f"psp:{a.psp}:attempts", 1), (f"psp:{a.psp}:{outcome}", 1)):
            out[name] = out.get(name, 0) + n
        if a.started_at and a.updated_at:
            ms = int((parse_iso(a.updated_at) - parse_iso(a.started_at)).total_seconds() * 1000)
            key = f"psp:{a.psp}:latency_ms"
            out[key] = out.get(key, 0) + max(0, ms)
    return out


def delta_for(event: Event, get_payment: Callable[[str, str], Payment | None]) -> ReportDelta | None:
    """What one committed event adds to its tenant's report (None: nothing to count).

    Attempt outcomes are counted once per payment, when authorization is decided:
    at payments.authorized, or at payments.failed if no attempt ever succeeded."""
    d, c = event.data, {}
    cur = d.get("currency")
    if event.type == "payments.initiated":
        c = {"payments": 1, f"payments:{cur}": 1, f"amount:{cur}": d["amount"]}
    elif event.type == "payments.authorized":
        c = {"authorized": 1, f"authorized_amount:{cur}": d["amount"]}
        c.update(_psp_outcomes(get_payment(event.tenant_id, event.payment_id)))
    elif event.type == "payments.failed":
        status = d.get("status")
        c = {status if status in FAILED_STATUSES else "failed": 1}
        payment = get_payment(event.tenant_id, event.payment_id)
        if payment and not any(a.status in SUCCESS for a in payment.attempts):
            c.update(_psp_outcomes(payment))
    elif event.type == "payments.captured":
        c = {"captured": 1, f"captured_amount:{cur}": d["amount"]}
    elif event.type == "payments.settled" and d.get("kind") == "capture":
        c = {"settled": 1, f"settled_amount:{cur}": d["amount"]}
    elif event.type == "payments.refunded":
        c = {"refunds": 1, f"refunded_amount:{cur}": d["amount"]}
    elif event.type == "payments.cancelled":
        c = {"cancelled": 1}
    else:
        return None
    return ReportDelta(event.tenant_id, fact_id(event), {**c, "changes": 1})


def fact_id(event: Event) -> str:
    """What a counted event says happened, once per payment (per refund): its delta's dedupe key.

    Not the event id: the same fact can be announced again by another event -- a region that takes
    a home over publishes again the event that moves each payment on (services/takeover.py)."""
    if event.type == "payments.refunded":
        return f"{event.payment_id}:refunded:{event.data.get('refund_id')}"
    return f"{event.payment_id}:{event.type}"


def report_events(events: Iterable[Event], store: Store) -> int:
    """Count these changes (exactly once each); returns how many were new."""
    deltas = [x for x in (delta_for(e, store.payments.get_payment) for e in events) if x is not None]
    return store.reports.apply_report(CONSUMER, deltas) if deltas else 0


# -- the feeds -------------------------------------------------------------------------------
def report_stream_records(records: list[dict[str, Any]], store: Store) -> int:
    """Stream records (Lambda's event["Records"] or GetRecords): count the new outbox items.

    Raising makes Lambda retry the batch; the markers make the retry harmless."""
    return report_events([r.event for r in store.feed.outbox_in(records)], store)


def report_feed_once(store: Store, limit: int = 500) -> int:
    """Embedded: count what the change feed holds after our position, then move past it.

    The position moves only after the counts are durable; a crash in between
    re-reads the changes and the markers skip them. A pushed feed (DynamoDB: its stream
    is read by the reports Lambda, or laptop/streams.py) has nothing to pull."""
    records = store.feed.read(CONSUMER, limit)
    if not records:
        return 0
    report_events([r.event for r in records], store)
    store.feed.advance(CONSUMER, records[-1].id)
    return len(records)


# -- the report --------------------------------------------------------------------------------
def summary(counters: dict[str, int]) -> dict[str, Any]:
    """A tenant's counters as the GET /v1/reports/summary body."""
    get = counters.get
    authorized, declined = get("authorized", 0), get("declined", 0)
    currencies: dict[str, dict[str, Any]] = {}
    psps: dict[str, dict[str, Any]] = {}
    for name, n in counters.items():
        parts = name.split(":")
        if len(parts) == 2 and len(parts[1]) == 3 and parts[1].isupper():
            field = {"payments": "count", "amount": "amount"}.get(parts[0], parts[0])
            currencies.setdefault(parts[1], {"currency": parts[1]})[field] = n
        elif len(parts) == 3 and parts[0] == "psp":
            psps.setdefault(parts[1], {"psp": parts[1]})[parts[2]] = n
    cur_fields = ("count", "amount", "authorized_amount", "captured_amount", "settled_amount", "refunded_amount")
    psp_rows = []
    for p in psps.values():
        attempts = p.get("attempts", 0)
        row = {"psp": p["psp"], "attempts": attempts,
               **{k: p.get(k, 0) for k in ("authorized", "declined", "failed", "unknown", "pending")}}
        row["success_rate"] = round(row["authorized"] / attempts, 4) if attempts else None
        row["avg_latency_ms"] = round(p.get("latency_ms", 0) / attempts, 1) if attempts else None
        psp_rows.append(row)
    return {
        "object": "report_summary",
        "payments": {"count": get("payments", 0), **{k: get(k, 0) for k in ("authorized", "declined", "failed", "requires_review",
                                            "cancelled", "captured", "settled", "refunds")}},
        "approval_rate": round(authorized / (authorized + declined), 4) if authorized + declined else None,
        "currencies": [{"currency": c["currency"], **{f: c.get(f, 0) for f in cur_fields}}
                       for _, c in sorted(currencies.items())],
        "psps": sorted(psp_rows, key=lambda r: r["psp"]),
        "changes_counted": get("changes", 0),
    }
