"""Live numbers for operators, read straight from the store and the bus (across tenants).

Per-stage figures come from the payments' timelines, split as `payctl trace`
splits them: time in the stage (from receiving the record to its commit) and
queue wait before it (from the previous step to receiving the record). Queue lag is the bus's end
offsets minus each stage's committed offsets. PSP figures come from the
attempts of the same payments and the breakers in the store's control records.
"""
from __future__ import annotations

import base64
import time
from datetime import datetime, timezone
from typing import Any

import orjson

from chalicelib.clock import iso, parse_iso
from chalicelib.domain.cards import mask_pans
from chalicelib.observability import timeline
from chalicelib.observability.metrics import percentile
from chalicelib.services import dlq as dlq_admin
from chalicelib.services import reporting
from chalicelib.stages import FLOW, STAGES

SAMPLE = 200          # newest payments per tenant whose timelines feed the stage and PSP figures
SAMPLE_REMOTE = 50    # ... when each timeline is a network call (aws-local, aws)
BUCKET_S = 2          # throughput chart resolution
BUCKETS = 60          # ... over the last two minutes
FAILED = ("failed", "declined", "requires_review")
SUCCESS = reporting.SUCCESS


def _latency(values: list[float]) -> dict[str, float | None]:
    return {"p50": percentile(values, 50), "p95": percentile(values, 95), "p99": percentile(values, 99)}


def recent_payments(platform: Any, per_tenant: int = SAMPLE) -> list[tuple[dict[str, Any], Any]]:
    """(tenant, payment) newest first across every tenant."""
    out = []
    for tenant in platform.store.tenants.list_tenants():
        page, _ = platform.store.payments.list_payments(tenant["tenant_id"], None, per_tenant, None)
        out += [(tenant, p) for p in page]
    return sorted(out, key=lambda tp: (tp[1].created_at, tp[1].payment_id), reverse=True)


def queue_lag(bus: Any) -> dict[str, int | None]:
    """Records published to each stage's topics and not yet committed by its consumer group."""
    committed_of = getattr(bus, "committed_offsets", None)
    lag: dict[str, int | None] = {}
    for name, stage in STAGES.items():
        if committed_of is None:  # a bus without offset reads here (Kafka): not shown rather than guessed
            lag[name] = None
            continue
        committed = committed_of(f"stage.{name}")
        lag[name] = sum(end - committed.get((topic, p), 0)
                        for topic in stage.CONSUMES for p, end in bus.end_offsets(topic).items())
    return lag


def dlq_entries(platform: Any) -> list[dict[str, Any]]:
    """Waiting DLQ entries, newest first, with the original record decoded (PANs masked)."""
    out = []
    for e in reversed(dlq_admin.list_entries(platform)):
        raw = base64.b64decode(e.get("value") or b"")
        try:
            record: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            record = raw.decode("utf-8", errors="replace")
        text = mask_pans(orjson.dumps(record).decode())
        out.append({k: e.get(k) for k in ("entry_id", "stage", "topic", "partition", "offset", "key", "tenant_id",
                                          "correlation_id", "attempts", "failed_at")}
                   | {"error": mask_pans(e.get("error") or ""), "record": orjson.loads(text)})
    return out


def snapshot(platform: Any, now: datetime | None = None) -> dict[str, Any]:
    """Everything /api/metrics serves."""
    started = time.monotonic()
    now = now or datetime.now(timezone.utc)
    payments = recent_payments(platform, SAMPLE if platform.settings.mode == "embedded" else SAMPLE_REMOTE)
    traces = [(t, p, timeline.trace(platform, p)) for t, p in payments]
    dead = dlq_entries(platform)

    stage_ms: dict[str, list[float]] = {s: [] for s in STAGES}
    stage_wait: dict[str, list[float]] = {s: [] for s in STAGES}
    stage_failed: dict[str, int] = {s: 0 for s in STAGES}
    stage_recent: dict[str, int] = {s: 0 for s in STAGES}  # steps inside the chart's window
    start = now.timestamp() - BUCKETS * BUCKET_S
    series = {k: [0] * BUCKETS for k in ("accepted", "settled", "failed")}

    def bucket(at: str) -> int | None:
        i = int((parse_iso(at).timestamp() - start) // BUCKET_S)
        return i if 0 <= i < BUCKETS else None

    for _, p, tr in traces:
        if (i := bucket(p.created_at)) is not None:
            series["accepted"][i] += 1
        for step in tr["steps"]:
            stage_ms.setdefault(step["stage"], []).append(step["in_stage_ms"])
            stage_wait.setdefault(step["stage"], []).append(step["queued_ms"])
            if bucket(step["at"]) is not None:
                stage_recent[step["stage"]] = stage_recent.get(step["stage"], 0) + 1
            entered = step["to"] if step["from"] != step["to"] else None  # notify keeps the state it found
            if entered in FAILED:
                stage_failed[step["stage"]] = stage_failed.get(step["stage"], 0) + 1
            kind = "settled" if entered == "settled" else "failed" if entered in FAILED else None
            if kind and (i := bucket(step["at"])) is not None:
                series[kind][i] += 1
    lag = queue_lag(platform.bus)
    window_s = BUCKETS * BUCKET_S
    stages = []
    for name in [*FLOW, *[s for s in stage_ms if s not in FLOW]]:
        dlq_n = sum(1 for d in dead if d["stage"] == name)
        stages.append({"stage": name, "steps": len(stage_ms.get(name, [])),
                       "per_s": round(stage_recent.get(name, 0) / window_s, 3), "failed": stage_failed.get(name, 0),
                       "dlq": dlq_n, "errors": stage_failed.get(name, 0) + dlq_n,
                       "latency_ms": _latency(stage_ms.get(name, [])), "wait_ms": _latency(stage_wait.get(name, [])),
                       "queue_lag": lag.get(name)})
    return {
        "generated_at": iso(now), "mode": platform.settings.mode,
        "sample": {"payments": len(traces),
                   "per_tenant": SAMPLE if platform.settings.mode == "embedded" else SAMPLE_REMOTE},
        "throughput": {"bucket_s": BUCKET_S, "start": iso(datetime.fromtimestamp(start, timezone.utc)), **series,
                       "accepted_per_s": round(sum(series["accepted"]) / window_s, 3),
                       "settled_per_s": round(sum(series["settled"]) / window_s, 3)},
        "stages": stages,
        "dlq": {"depth": len(dead), "entries": dead[:50]},
        "psps": psp_health(platform, [p for _, p, _ in traces]),
        "reports": reports(platform),
        "recent": [{"payment_id": p.payment_id, "tenant_id": t["tenant_id"], "tenant": t.get("name"),
                    "status": p.status, "amount": p.amount, "currency": p.currency,
                    "psp": p.attempts[-1].psp if p.attempts else None, "created_at": p.created_at,
                    "correlation_id": p.correlation_id, "total_ms": round(tr["total_ms"], 1)}
                   for t, p, tr in traces[:25]],
        "took_ms": round((time.monotonic() - started) * 1000, 1),
    }


def psp_health(platform: Any, payments: list[Any]) -> list[dict[str, Any]]:
    """Per PSP: breaker state, attempts, success rate and latency over the sampled payments."""
    rows = {}
    for name in sorted(set(platform.connectors) | {a.psp for p in payments for a in p.attempts}):
        attempts = [a for p in payments for a in p.attempts if a.psp == name]
        done = [a for a in attempts if a.status not in ("pending", "unknown")]
        ms = [(parse_iso(a.updated_at) - parse_iso(a.started_at)).total_seconds() * 1000
              for a in attempts if a.started_at and a.updated_at]
        breaker = platform.breakers.state(name)
        rows[name] = {"psp": name, "breaker": breaker["state"], "breaker_failures": breaker["failures"],
                      "opened_at": breaker.get("opened_at"), "attempts": len(attempts),
                      "succeeded": sum(1 for a in attempts if a.status in SUCCESS),
                      "success_rate": round(sum(1 for a in done if a.status in SUCCESS) / len(done), 4) if done else None,
                      "latency_ms": _latency(ms)}
    return list(rows.values())


def reports(platform: Any) -> dict[str, Any]:
    """The reporting consumer's aggregates per tenant, and summed over tenants."""
    total: dict[str, int] = {}
    per_tenant = []
    for t in platform.store.tenants.list_tenants():
        counters = platform.store.reports.report_counters(t["tenant_id"])
        for k, v in counters.items():
            total[k] = total.get(k, 0) + v
        per_tenant.append({"tenant_id": t["tenant_id"], "tenant": t.get("name"), **reporting.summary(counters)})
    return {"all": reporting.summary(total), "tenants": per_tenant}


def payment_trace(platform: Any, tenant_id: str, payment_id: str) -> dict[str, Any] | None:
    """One payment's timeline (timeline.trace) with its attempts, for the drill-down."""
    p = platform.store.payments.get_payment(tenant_id, payment_id)
    if p is None:
        return None
    tr = timeline.trace(platform, p)
    tr["amount"], tr["currency"] = p.amount, p.currency
    tr["attempts"] = [{"number": a.number, "psp": a.psp, "status": a.status, "code": a.code,
                       "started_at": a.started_at, "updated_at": a.updated_at} for a in p.attempts]
    return tr
