"""Traceability: a payment's timeline, with the time spent in and between stages.

Each timeline step is written by the commit that made it; a stage's commit also
notes when the stage received the record (`received_at`) and which event caused
it. So for a step: queued = received_at - the previous step's time (outbox,
relay and queue: between stages), in stage = its time - received_at. Steps
without `received_at` (API calls, reconciliation) count wholly as in-stage.
"""
from __future__ import annotations

from typing import Any

from ..clock import parse_iso
from ..domain.payment import Payment
from ..ports import Platform


def _ms(later: str, earlier: str) -> float:
    return max(0.0, (parse_iso(later) - parse_iso(earlier)).total_seconds() * 1000)


def trace_id_of(header: str | None) -> str | None:
    """The X-Ray trace id (1-xxxxxxxx-...) in an X-Amzn-Trace-Id header."""
    for part in (header or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == "Root":
            return value
    return None


def trace(platform: Platform, payment: Payment) -> dict[str, Any]:
    steps = platform.store.payments.timeline(payment.tenant_id, payment.payment_id)
    previous = payment.created_at
    rows: list[dict[str, Any]] = []
    stages: dict[str, dict[str, Any]] = {}
    webhooks = []
    for s in steps:
        detail = s.get("detail") or {}
        received = detail.get("received_at")
        since = _ms(s["at"], previous)
        queued = _ms(received, previous) if received else 0.0
        in_stage = _ms(s["at"], received) if received else since
        rows.append({**s, "caused_by": detail.get("caused_by"), "received_at": received,
                     "since_previous_ms": since, "queued_ms": queued, "in_stage_ms": in_stage})
        st = stages.setdefault(s["stage"], {"stage": s["stage"], "first_at": s["at"], "steps": 0,
                                            "queued_ms": 0.0, "in_stage_ms": 0.0})
        st["steps"] += 1
        st["last_at"] = s["at"]
        st["queued_ms"] += queued
        st["in_stage_ms"] += in_stage
        if s["action"] == "notify":
            webhooks.append({"at": s["at"], "event": detail.get("event"), "delivered": detail.get("delivered"),
                             "status_code": detail.get("status_code"), "webhook_id": detail.get("webhook_id"),
                             "why": detail.get("why")})
        if parse_iso(s["at"]) > parse_iso(previous):
            previous = s["at"]
    return {
        "payment_id": payment.payment_id, "tenant_id": payment.tenant_id, "status": payment.status,
        "correlation_id": payment.correlation_id, "trace_id": trace_id_of(payment.trace),
        "created_at": payment.created_at, "steps": rows, "stages": list(stages.values()),
        "stage_ms": {k: v["queued_ms"] + v["in_stage_ms"] for k, v in stages.items()},
        "attempts": [{"number": a.number, "psp": a.psp, "status": a.status, "idempotency_key": a.idempotency_key,
                      "code": a.code, "started_at": a.started_at, "updated_at": a.updated_at,
                      "status_checks": a.status_checks} for a in payment.attempts],
        "webhooks": webhooks, "total_ms": _ms(previous, payment.created_at)}
