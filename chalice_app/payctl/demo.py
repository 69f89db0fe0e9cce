"""`payctl demo`: drive the running local stack over HTTP and report what happened."""
from __future__ import annotations

import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from rich.progress import Progress

from chalicelib.clock import parse_iso
from chalicelib.config import Settings

# A realistic mix: mostly approvals, some declines, failovers and a slow PSP.
CARD_MIX = (["4242424242424242"] * 14 + ["4000000000000002", "4000000000009995"]
            + ["4000000000000119"] * 3 + ["4000000000000077"])


class DemoError(RuntimeError):
    pass


def _call(method: str, url: str, key: str, body: dict | None = None, timeout: float = 30) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    data = None
    if body is not None:
        data = orjson.dumps(body)
        headers["Idempotency-Key"] = uuid.uuid4().hex
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            return e.code, orjson.loads(e.read() or b"{}")
        except orjson.JSONDecodeError:
            return e.code, {}
    except OSError as e:  # URLError, timeouts, resets: the stack went away under us
        raise DemoError(f"lost the API at {url.split('/v1')[0]}: {getattr(e, 'reason', e)}") from None


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run_demo(settings: Settings, count: int, concurrency: int, api_key: str | None, url: str | None,
             timeout_s: float, quiet: bool = False) -> dict[str, Any]:
    if count < 1:
        raise DemoError("--count must be at least 1")
    base = url or f"http://127.0.0.1:{settings.port}"
    if not api_key:
        creds = settings.data_dir / "demo-tenant.json"
        if not creds.exists():
            raise DemoError(f"no API key: pass --api-key, or start `make local` once to create {creds}")
        api_key = orjson.loads(creds.read_bytes())["api_key"]
    try:
        urllib.request.urlopen(f"{base}/health", timeout=3).close()
    except OSError as e:
        raise DemoError(f"the API at {base} is not answering ({e}); is `make local` running?") from None

    def create(i: int) -> tuple[int, dict]:
        body = {"amount": 500 + (i * 37) % 20_000, "currency": ("EUR", "USD", "GBP")[i % 3],
                "payment_method": {"type": "card", "card": {"number": CARD_MIX[i % len(CARD_MIX)],
                                                            "exp_month": 12, "exp_year": 2030, "cvc": "123"}},
                "capture": "automatic", "reference": f"demo-{i}", "customer": {"id": f"cust-{i % 97}", "country": "DE"}}
        return _call("POST", f"{base}/v1/payments", api_key, body)

    started = time.monotonic()
    accepted: list[str] = []
    rejected: dict[str, int] = {}
    with Progress(disable=quiet, transient=False) as progress, ThreadPoolExecutor(concurrency) as pool:
        task = progress.add_task("sending", total=count)
        for status, body in pool.map(create, range(count)):
            if status == 202:
                accepted.append(body["id"])
            else:
                rejected[f"rejected {status}"] = rejected.get(f"rejected {status}", 0) + 1
            progress.advance(task)
        sent_s = time.monotonic() - started
        waiting = set(accepted)
        final: dict[str, dict] = {}
        settle = progress.add_task("processing", total=len(accepted))
        deadline = time.monotonic() + timeout_s
        while waiting and time.monotonic() < deadline:
            ids = list(waiting)
            for pid, (status, body) in zip(ids, pool.map(
                    lambda p: _call("GET", f"{base}/v1/payments/{p}", api_key), ids)):
                if status == 200 and body["status"] != "processing":
                    final[pid] = body
                    waiting.discard(pid)
                    progress.advance(settle)
            if waiting:
                time.sleep(0.25)
    elapsed = time.monotonic() - started
    outcomes = dict(rejected)
    for body in final.values():
        outcomes[body["status"]] = outcomes.get(body["status"], 0) + 1
    if waiting:
        outcomes["still processing"] = len(waiting)
    latencies = [(parse_iso(b["updated_at"]) - parse_iso(b["created_at"])).total_seconds() * 1000
                 for b in final.values()]
    return {"count": count, "accepted": len(accepted), "outcomes": outcomes, "elapsed_s": elapsed,
            "accepted_per_s": len(accepted) / sent_s if sent_s else 0.0,
            "completed_per_s": len(final) / elapsed if elapsed else 0.0,
            "latency_ms": {"p50": _percentile(latencies, 0.5), "p95": _percentile(latencies, 0.95),
                           "p99": _percentile(latencies, 0.99), "max": max(latencies, default=0.0)},
            "api": base}
