"""Metrics in CloudWatch embedded metric format (EMF), the same lines in every mode.

Handlers record values as they work; flush() writes one EMF document per
dimension set (values as arrays, so CloudWatch computes p50/p95/p99). The sink
picks where they go by METRICS_SINK: `stdout` (Lambda: CloudWatch Logs extracts
the metrics, the default there), `file` ($DATA_DIR/metrics.emf.jsonl, the local
default, read by `payctl metrics`), `memory` (tests), `none`.

Namespace PaymentsPlatform:
  Stage=<s>            Records, Errors, DeadLettered (Count); ProcessingMs, QueueWaitMs (Milliseconds)
  Psp=<p>,Operation=<o> Calls, Answered (a definite answer: the PSP is healthy), Approved (Count); LatencyMs
  (none)               DlqDepth, OpenBreakers (Count), reported by the reconciliation schedule
"""
from __future__ import annotations

import math
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

NAMESPACE = "PaymentsPlatform"
MAX_VALUES = 100  # EMF: at most 100 values per metric per document

COUNT, MS = "Count", "Milliseconds"


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[tuple[str, str], ...], dict[str, tuple[str, list[float]]]] = {}
        self.sink, self.path = "none", None
        self.emitted: list[dict[str, Any]] = []  # the memory sink

    def configure(self, settings: Any) -> None:
        import os  # noqa: PLC0415
        sink = getattr(settings, "metrics_sink", "auto")
        if sink == "auto":
            sink = "stdout" if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") else "file"
        with self._lock:
            self.sink = sink
            self.path = Path(settings.data_dir) / "metrics.emf.jsonl" if sink == "file" else None

    def add(self, dims: dict[str, str], name: str, value: float, unit: str = COUNT) -> None:
        key = tuple(sorted(dims.items()))
        with self._lock:
            series = self._series.setdefault(key, {})
            series.setdefault(name, (unit, []))[1].append(value)

    def documents(self) -> list[dict[str, Any]]:
        """Take what was recorded as EMF documents (counts summed, timings kept as value arrays)."""
        with self._lock:
            taken, self._series = self._series, {}
        now = int(time.time() * 1000)
        docs = []
        for key, series in taken.items():
            dims = dict(key)
            chunks: list[dict[str, Any]] = [{}]
            for name, (unit, values) in series.items():
                if unit == COUNT:
                    chunks[0][name] = (unit, sum(values))
                    continue
                for i in range(0, len(values), MAX_VALUES):
                    while len(chunks) <= i // MAX_VALUES:
                        chunks.append({})
                    chunks[i // MAX_VALUES][name] = (unit, values[i:i + MAX_VALUES])
            for chunk in chunks:
                if not chunk:
                    continue
                doc: dict[str, Any] = {"_aws": {"Timestamp": now, "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE, "Dimensions": [list(dims)],
                    "Metrics": [{"Name": n, "Unit": u} for n, (u, _) in chunk.items()]}]}}
                doc.update(dims)
                doc.update({n: v for n, (_, v) in chunk.items()})
                docs.append(doc)
        return docs

    def flush(self) -> int:
        docs = self.documents()
        if not docs or self.sink == "none":
            return len(docs)
        lines = b"".join(orjson.dumps(d) + b"\n" for d in docs)
        if self.sink == "memory":
            self.emitted.extend(docs)
        elif self.sink == "stdout":
            sys.stdout.write(lines.decode())
            sys.stdout.flush()
        elif self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as f:
                f.write(lines)
        return len(docs)


METRICS = Metrics()


def stage_record(stage: str, outcome: str, processing_ms: float, queue_wait_ms: float | None) -> None:
    """One record handled by a stage: outcome is ok, retry or dead."""
    dims = {"Stage": stage}
    METRICS.add(dims, "Records", 1)
    METRICS.add(dims, "Errors", 1 if outcome == "retry" else 0)
    METRICS.add(dims, "DeadLettered", 1 if outcome == "dead" else 0)
    METRICS.add(dims, "ProcessingMs", round(processing_ms, 3), MS)
    if queue_wait_ms is not None:
        METRICS.add(dims, "QueueWaitMs", round(max(0.0, queue_wait_ms), 3), MS)


def psp_call(psp: str, operation: str, outcome: str, latency_ms: float) -> None:
    dims = {"Psp": psp, "Operation": operation}
    METRICS.add(dims, "Calls", 1)
    METRICS.add(dims, "Answered", 0 if outcome in ("unavailable", "unknown") else 1)
    METRICS.add(dims, "Approved", 1 if outcome == "approved" else 0)
    METRICS.add(dims, "LatencyMs", latency_ms, MS)


def health(dlq_depth: int, open_breakers: int) -> None:
    METRICS.add({}, "DlqDepth", dlq_depth)
    METRICS.add({}, "OpenBreakers", open_breakers)


def percentile(values: list[float], q: float, digits: int = 2) -> float | None:
    """Nearest-rank percentile, q in percent (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)], digits)


def _pct(values: list[float], q: float) -> float | None:
    return percentile(values, q * 100, 3)


def summarize(docs: list[dict[str, Any]], since_ms: int = 0) -> dict[str, Any]:
    """Stage, PSP and health figures from EMF documents (what CloudWatch would chart)."""
    stages: dict[str, dict[str, Any]] = {}
    psps: dict[str, dict[str, Any]] = {}
    health_now: dict[str, Any] = {}
    first = last = None
    for d in docs:
        ts = d.get("_aws", {}).get("Timestamp", 0)
        if ts < since_ms:
            continue
        first, last = min(first or ts, ts), max(last or ts, ts)
        if "Stage" in d:
            s = stages.setdefault(d["Stage"], {"records": 0, "errors": 0, "dead_lettered": 0, "ms": [], "wait": []})
            s["records"] += d.get("Records", 0)
            s["errors"] += d.get("Errors", 0)
            s["dead_lettered"] += d.get("DeadLettered", 0)
            s["ms"] += d.get("ProcessingMs", [])
            s["wait"] += d.get("QueueWaitMs", [])
        elif "Psp" in d:
            p = psps.setdefault(f"{d['Psp']} {d['Operation']}", {"calls": 0, "answered": 0, "approved": 0, "ms": []})
            p["calls"] += d.get("Calls", 0)
            p["answered"] += d.get("Answered", 0)
            p["approved"] += d.get("Approved", 0)
            p["ms"] += d.get("LatencyMs", [])
        elif "DlqDepth" in d:
            health_now = {"dlq_depth": d["DlqDepth"], "open_breakers": d.get("OpenBreakers", 0), "at_ms": ts}
    window_s = max(1e-3, ((last or 0) - (first or 0)) / 1000)
    return {
        "window_s": round(window_s, 3),
        "stages": {k: {"records": v["records"], "per_s": round(v["records"] / window_s, 2), "errors": v["errors"],
                       "dead_lettered": v["dead_lettered"], "p50_ms": _pct(v["ms"], .5), "p95_ms": _pct(v["ms"], .95),
                       "p99_ms": _pct(v["ms"], .99), "queue_wait_p50_ms": _pct(v["wait"], .5),
                       "queue_wait_p99_ms": _pct(v["wait"], .99)} for k, v in stages.items()},
        "psps": {k: {"calls": v["calls"], "success_rate": round(v["answered"] / v["calls"], 4) if v["calls"] else None,
                     "approved": v["approved"], "p50_ms": _pct(v["ms"], .5), "p99_ms": _pct(v["ms"], .99)}
                 for k, v in psps.items()},
        "health": health_now}


def read_file(path: Path) -> list[dict[str, Any]]:
    docs = []
    if path.exists():
        with open(path, "rb") as f:
            for line in f:
                try:
                    docs.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    continue  # a line cut short by a crash
    return docs
