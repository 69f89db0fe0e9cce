"""Small statistics helpers: percentiles and per-stage timing."""
from __future__ import annotations

import threading
import time
from typing import Any, Callable


def percentiles(samples: list[float]) -> dict[str, float | None]:
    if not samples:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    s = sorted(samples)

    def at(q: float) -> float:
        return round(s[min(len(s) - 1, int(q * len(s)))], 1)
    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": round(s[-1], 1)}


class StageStats:
    """Handler time per record and queue wait (appended to the log -> handed to the handler)."""

    def __init__(self) -> None:
        self.records = 0
        self.invocations = 0
        self.busy_s = 0.0
        self.waits_ms: list[float] = []
        self._lock = threading.Lock()

    def wrap(self, invoke: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
        def timed(event: dict[str, Any]) -> Any:
            start_ms = time.time() * 1000
            t0 = time.perf_counter()
            try:
                return invoke(event)
            finally:
                busy = time.perf_counter() - t0
                batch = [r for part in event["records"].values() for r in part]
                with self._lock:
                    self.invocations += 1
                    self.records += len(batch)
                    self.busy_s += busy
                    self.waits_ms.extend(start_ms - r["timestamp"] for r in batch)
        return timed

    def summary(self) -> dict[str, Any]:
        return {"records": self.records, "mean_batch": round(self.records / max(self.invocations, 1), 1),
                "processing_ms_per_record": round(self.busy_s * 1000 / max(self.records, 1), 3),
                "queue_wait_ms": percentiles(self.waits_ms)}
