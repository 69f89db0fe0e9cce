"""The audit rows of a payment commit: one per state change, written in the same unit of work.

Both stores call rows_for(changes) inside their transaction (SQLite) or
TransactWriteItems (DynamoDB), so a state change and its audit row are durable
together or not at all -- a crash can lose neither. The rows are not chained
there: chaining needs the tenant's head, and a per-tenant head on the payment
path would serialise every payment of a tenant. The chainer (services/audit.py
chain_pending, run by the relay loop and the reconciliation Lambda) appends them
to the tenant's hash chain later, in a stable order.
"""
from __future__ import annotations

from typing import Any

from ..ports import Changes


def rows_for(changes: Changes) -> list[tuple[str, str, dict[str, Any]]]:
    """(tenant_id, source, body) for every state change in `changes` (creation included)."""
    p = changes.payment
    if p is None:
        return []
    version = (changes.expected_version or 0) + 1
    correlation_id = changes.correlation_id or p.correlation_id
    base = {"subject": p.payment_id, "version": version, "correlation_id": correlation_id}
    rows: list[tuple[str, str, dict[str, Any]]] = []
    if changes.expected_version is None:
        first = p.pending_timeline[0].from_state if p.pending_timeline else p.state.value
        rows.append((p.tenant_id, f"{p.payment_id}@{version}#c", {
            **base, "action": "payment.create", "from": None, "to": first, "at": p.created_at,
            "actor": changes.actor or "api", "detail": {"amount": p.amount, "currency": p.currency}}))
    for i, t in enumerate(p.pending_timeline):
        rows.append((p.tenant_id, f"{p.payment_id}@{version}#{i}", {
            **base, "action": f"payment.{t.action}", "from": t.from_state, "to": t.to_state, "at": t.at,
            "actor": changes.actor or f"stage:{t.stage}", "detail": _safe(t.detail)}))
    return rows


def _safe(detail: dict[str, Any]) -> dict[str, Any]:
    """Timeline details are small scalars (amounts, codes, PSP names); keep only those."""
    return {k: v for k, v in detail.items() if isinstance(v, (str, int, float, bool)) or v is None}
