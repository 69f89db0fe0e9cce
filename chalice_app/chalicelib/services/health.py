"""Platform health as metrics: DLQ depth and open PSP circuit breakers.

The scheduled Lambda (app.py) reports it every minute beside the reconciliation run;
the local runner does the same, and `payctl metrics` forces a fresh reading.
"""
from __future__ import annotations

import time

from ..observability import metrics
from ..ports import Platform
from .dlq import list_entries

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
