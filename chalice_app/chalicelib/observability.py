"""Traceability: a payment's timeline with the time spent in and between stages."""
from __future__ import annotations

from typing import Any

from .clock import parse_iso
from .domain.payment import Payment


def trace(platform: Any, payment: Payment) -> dict[str, Any]:
    """Every recorded step; the gap before a step is charged to the stage that took it."""
    steps = platform.store.timeline(payment.tenant_id, payment.payment_id)
    previous = parse_iso(payment.created_at)
    stage_ms: dict[str, float] = {}
    rows = []
    for s in steps:
        at = parse_iso(s["at"])
        gap = max(0.0, (at - previous).total_seconds() * 1000)
        stage_ms[s["stage"]] = stage_ms.get(s["stage"], 0.0) + gap
        rows.append({**s, "since_previous_ms": gap})
        previous = max(previous, at)
    total = (previous - parse_iso(payment.created_at)).total_seconds() * 1000
    return {"payment_id": payment.payment_id, "tenant_id": payment.tenant_id, "status": payment.status,
            "correlation_id": payment.correlation_id, "created_at": payment.created_at, "steps": rows,
            "stage_ms": stage_ms, "total_ms": total}
