"""`payctl demo`: drive the running local stack over HTTP and report what happened.

Two shapes of load:
- `--count N`: N payments as fast as `--concurrency` clients send them (throughput);
- `--rate R` with `--duration S` (or `--count N`): an open-loop arrival every 1/R s, whatever the
  stack answers (latency at a fixed rate). A send that starts late because every client was busy
  is counted (`late_sends`), so an overloaded stack shows as such instead of slowing the load.

Accept→final is measured by the API's own clock: a payment's `updated_at` (its last state change,
the final one) minus its `created_at` (when POST /v1/payments accepted it), so how often the demo
polls changes no figure. End-to-end payments/s is the payments that reached a final status over the
span from the first acceptance to the last final state change.
"""
from __future__ import annotations

import math
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import orjson
from rich.console import Console
from rich.progress import Progress

from chalicelib.clock import parse_iso
from chalicelib.config import Settings

# A realistic mix: mostly approvals, some declines, failovers and a slow PSP.
CARD_MIX = (["4242424242424242"] * 14 + ["4000000000000002", "4000000000009995"]
            + ["4000000000000119"] * 3 + ["4000000000000077"])
DEFAULT_COUNT = 20
MAX_PAYMENTS = 1_000_000  # a typo guard: a demo of more is a load test, not a demo


class DemoError(RuntimeError):
    pass


@dataclass(frozen=True)
class Load:
    """What to send: `count` payments, paced at `rate`/s when given (else as fast as they go)."""
    count: int
    rate: float | None
    concurrency: int

    @classmethod
    def parse(cls, count: int | None, rate: float | None, duration: float | None,
              concurrency: int | None) -> Load:
        """The load the flags describe, or a DemoError saying which flag is wrong and why."""
        if rate is not None and not (math.isfinite(rate) and rate > 0):
            raise DemoError(f"--rate must be a number of payments per second above 0, got {rate:g}")
        if duration is not None:
            if rate is None:
                raise DemoError("--duration needs --rate (payments per second); for a fixed number use --count")
            if not (math.isfinite(duration) and duration > 0):
                raise DemoError(f"--duration must be a number of seconds above 0, got {duration:g}")
            if count is not None:
                raise DemoError("give --duration or --count with --rate, not both")
            count = max(1, round(rate * duration))
        if count is None:
            count = DEFAULT_COUNT
        if count < 1:
            raise DemoError(f"--count must be at least 1, got {count}")
        if count > MAX_PAYMENTS:
            raise DemoError(f"--count/--rate x --duration must be at most {MAX_PAYMENTS:,}, got {count:,}")
        if concurrency is None:  # paced: enough clients for requests of up to half a second each
            concurrency = 8 if rate is None else min(256, max(8, math.ceil(rate / 2)))
        if concurrency < 1:
            raise DemoError(f"--concurrency must be at least 1, got {concurrency}")
        return cls(count, rate, concurrency)


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


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1) of `values`; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def payment_body(i: int) -> dict[str, Any]:
    return {"amount": 500 + (i * 37) % 20_000, "currency": ("EUR", "USD", "GBP")[i % 3],
            "payment_method": {"type": "card", "card": {"number": CARD_MIX[i % len(CARD_MIX)],
                                                        "exp_month": 12, "exp_year": 2030, "cvc": "123"}},
            "capture": "automatic", "reference": f"demo-{i}", "customer": {"id": f"cust-{i % 97}", "country": "DE"}}


class _Lines:
    """Progress for a stderr that is not a terminal (CI logs, `make bench > file`): a plain line per
    task every `every_s` seconds and when it completes, where rich would print only at the end."""

    def __init__(self, console: Console, every_s: float = 5.0):
        self.console, self.every_s = console, every_s
        self.tasks: dict[int, list[Any]] = {}  # id -> [name, done, total, last printed]
        self.lock = threading.Lock()

    def __enter__(self) -> _Lines:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def add_task(self, name: str, total: int) -> int:
        with self.lock:
            self.tasks[len(self.tasks)] = [name, 0, total, time.monotonic()]
            return len(self.tasks) - 1

    def advance(self, task: int) -> None:
        with self.lock:
            t = self.tasks[task]
            t[1] += 1
            now = time.monotonic()
            if t[1] == t[2] or now - t[3] >= self.every_s:
                t[3] = now
                self.console.print(f"payctl demo: {t[0]} {t[1]}/{t[2]}", highlight=False)


def _api_key(settings: Settings, api_key: str | None) -> str:
    if api_key:
        return api_key
    creds = settings.data_dir / "demo-tenant.json"
    if not creds.exists():
        raise DemoError(f"no API key: pass --api-key, or start `make local` once to create {creds}")
    try:
        return orjson.loads(creds.read_bytes())["api_key"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise DemoError(f"{creds} holds no API key: pass --api-key, or delete it and restart `make local`") from None


def _send(load: Load, create: Callable[[int], tuple[int, dict]], tick: Callable[[], None]
          ) -> tuple[list[tuple[int, dict]], int, float, float]:
    """Every payment sent: (answers in order, late sends, first send time, last answer time)."""
    answers: list[tuple[int, dict] | None] = [None] * load.count
    late = [0]
    lock = threading.Lock()
    t0 = time.monotonic() + 0.05

    def one(i: int) -> None:
        if load.rate:
            delay = t0 + i / load.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -0.1:  # every client was busy when its turn came
                with lock:
                    late[0] += 1
        answers[i] = create(i)
        tick()
    with ThreadPoolExecutor(load.concurrency, thread_name_prefix="demo-send") as pool:
        for f in [pool.submit(one, i) for i in range(load.count)]:
            f.result()  # a lost API raises DemoError here
    return [a for a in answers if a is not None], late[0], t0, time.monotonic()


def run_demo(settings: Settings, load: Load, api_key: str | None, url: str | None, timeout_s: float,
             quiet: bool = False, progress_console: Console | None = None) -> dict[str, Any]:
    """Send `load` to the API at `url` (default: this machine's stack) and wait for every outcome."""
    if not (math.isfinite(timeout_s) and timeout_s > 0):
        raise DemoError(f"--timeout must be a number of seconds above 0, got {timeout_s:g}")
    base = (url or f"http://127.0.0.1:{settings.port}").rstrip("/")
    api_key = _api_key(settings, api_key)
    try:
        urllib.request.urlopen(f"{base}/health", timeout=3).close()
    except (OSError, ValueError) as e:
        raise DemoError(f"the API at {base} is not answering ({e}); is `make local` running?") from None

    started = time.monotonic()
    accepted: list[str] = []
    rejected: dict[str, int] = {}
    final: dict[str, dict] = {}
    console = progress_console or Console(stderr=True)
    progress: Any = (Progress(disable=quiet, transient=False, console=console) if quiet or console.is_terminal
                     else _Lines(console))
    with progress:
        task = progress.add_task(f"sending at {load.rate:g}/s" if load.rate else "sending", total=load.count)
        answers, late, t0, sent_at = _send(
            load, lambda i: _call("POST", f"{base}/v1/payments", api_key, payment_body(i)),
            lambda: progress.advance(task))
        for status, body in answers:
            if status == 202:
                accepted.append(body["id"])
            else:
                rejected[f"rejected {status}"] = rejected.get(f"rejected {status}", 0) + 1
        waiting = set(accepted)
        settle = progress.add_task("processing", total=len(accepted))
        deadline = time.monotonic() + timeout_s
        with ThreadPoolExecutor(min(load.concurrency, 16), thread_name_prefix="demo-poll") as pool:
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
    return summarize(load, len(answers), accepted, rejected, final, late, time.monotonic() - started,
                     sent_at - t0, base)


def summarize(load: Load, sent: int, accepted: list[str], rejected: dict[str, int], final: dict[str, dict],
              late: int, elapsed_s: float, send_s: float, api: str) -> dict[str, Any]:
    """The report: counts, outcomes, end-to-end payments/s and accept→final percentiles (API clock)."""
    outcomes = dict(rejected)
    for body in final.values():
        outcomes[body["status"]] = outcomes.get(body["status"], 0) + 1
    still = len(accepted) - len(final)
    if still:
        outcomes["still processing"] = still
    created = [parse_iso(b["created_at"]).timestamp() for b in final.values()]
    updated = [parse_iso(b["updated_at"]).timestamp() for b in final.values()]
    latencies = [(u - c) * 1000 for c, u in zip(created, updated)]
    span = (max(updated) - min(created)) if final else 0.0
    lat = {k: percentile(latencies, q) for k, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))}
    lat["max"] = max(latencies, default=None)
    return {"mode": "rate" if load.rate else "count", "count": load.count, "rate": load.rate,
            "concurrency": load.concurrency, "api": api,
            "sent": sent, "accepted": len(accepted), "rejected": sum(rejected.values()), "final": len(final),
            "failed": sum(1 for b in final.values() if b["status"] == "failed"), "still_processing": still,
            "late_sends": late, "outcomes": outcomes, "elapsed_s": round(elapsed_s, 3),
            "send_s": round(send_s, 3), "accepted_per_s": round(len(accepted) / send_s, 1) if send_s > 0 else None,
            "end_to_end_s": round(span, 3),
            "payments_per_s": round(len(final) / span, 1) if span > 0 else None,
            "latency_ms": {k: None if v is None else round(v, 1) for k, v in lat.items()}}
