"""Health: whether this region should take traffic (GET /health), and health as metrics.

region_health() is what Route 53's checks read: the store and the bus answer, the outbox is being
drained (its oldest unpublished event is young), and the region holds its own home's lease (it
drives what it accepts; services/ownership.py). Any of them failing is a 503, so the region leaves
DNS answers while it cannot move payments; the figures say which.

report_health() puts DLQ depth and open PSP circuit breakers into metrics: the scheduled Lambda
(app.py) reports it every minute beside the reconciliation run; the local runner does the same,
and `payctl metrics` forces a fresh reading.
"""
from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any, Callable

from ..clock import parse_iso
from ..observability import metrics
from ..ports import Platform
from .dlq import list_entries

HEALTH_CACHE_S = 1.0  # Route 53 checks from many places at once: one reading a second is enough
OUTBOX_PEEK = 100  # backlog counted up to this many (a longer one is reported as this many)
_cache: dict[int, tuple[float, int, dict[str, Any]]] = {}
_cache_lock = threading.Lock()


def _probe(check: Callable[[], Any]) -> tuple[dict[str, Any], Any]:
    started = time.perf_counter()
    try:
        value = check()
    except Exception as e:  # noqa: BLE001 - any failure of a dependency is the answer, named
        return {"ok": False, "ms": round((time.perf_counter() - started) * 1000, 1),
                "error": f"{type(e).__name__}: {e}"[:200]}, None
    return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}, value


def _outbox(platform: Platform, now: datetime) -> dict[str, Any]:
    probe, pending = _probe(lambda: platform.store.outbox.pending_outbox(OUTBOX_PEEK))
    if pending is None:
        return probe
    oldest = (now - parse_iso(pending[0].event.occurred_at)).total_seconds() if pending else 0.0
    limit = platform.settings.health_max_outbox_age_s
    probe.update(backlog=len(pending), oldest_s=round(max(oldest, 0.0), 1), max_age_s=limit)
    if oldest > limit:
        probe.update(ok=False, error=f"the oldest unpublished event waits {oldest:.0f} s (limit {limit:g} s):"
                                     " the relay is not draining the outbox")
    return probe


def _lease(platform: Platform) -> dict[str, Any]:
    """This region holds its own home's lease: it may drive the payments it accepts."""
    own = platform.settings.region
    probe, lease = _probe(lambda: platform.ownership.lease(own))
    if not probe["ok"]:
        return probe
    if lease is None:
        return {**probe, "ok": False, "error": f"no lease of {own} was ever taken: the worker has not started"}
    probe.update(owner=lease.owner, epoch=lease.epoch, expires_in_s=round(lease.expires_at - platform.ownership.wall(), 1))
    if platform.ownership.epoch(own) is None:
        probe.update(ok=False, error=f"{own}'s payments are driven by {lease.owner} now" if lease.owner != own
                     else f"{own}'s lease lapsed: its lease keeper is not renewing it")
    return probe


def region_health(platform: Platform, fresh: bool = False) -> tuple[int, dict[str, Any]]:
    """(200 or 503, the report): can this region take payments now? Cached for HEALTH_CACHE_S."""
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(id(platform))
        if hit is not None and not fresh and now - hit[0] < HEALTH_CACHE_S:
            return hit[1], hit[2]
    s = platform.settings
    checks = {"store": _probe(lambda: platform.store.controls.get_control("health"))[0],
              "bus": _probe(platform.bus.topics)[0],
              "outbox": _outbox(platform, platform.clock.now()), "lease": _lease(platform)}
    ok = all(c["ok"] for c in checks.values())
    report = {"status": "ok" if ok else "unavailable", "mode": s.mode, "region": s.region, "checks": checks}
    code = 200 if ok else 503
    with _cache_lock:
        _cache[id(platform)] = (now, code, report)
    return code, report

HEALTH_EVERY_S = 15.0
_last_health = [0.0]


def report_health(platform: Platform, force: bool = False) -> dict[str, int] | None:
    """DLQ depth and open circuit breakers as metrics (the schedule runs every minute in AWS)."""
    now = time.monotonic()
    if not force and now - _last_health[0] < HEALTH_EVERY_S:
        return None
    _last_health[0] = now
    depth = len(list_entries(platform))
    open_breakers = sum(1 for name in platform.connectors if platform.breakers.state(name)["state"] != "closed")
    metrics.health(depth, open_breakers)
    metrics.METRICS.flush()
    return {"dlq_depth": depth, "open_breakers": open_breakers}
