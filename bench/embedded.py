"""One pipeline run: the service layer ingests, the real runner moves, we watch.

Ingestion calls PaymentService.create_payment, the code behind POST /v1/payments,
from API client threads in an API process of its own (bench/ingest.py, as `make
local` runs the API apart from the worker) or in this process. The stage workers are the local event source mapping (laptop/runner.py) invoking
app.py's stage Lambdas, one polling thread per stage plus the outbox relay, as
`make local`'s worker runs them, in this process. Probes only wrap: the store (to time the commit
that settles each payment), each stage's invoke (processing time, queue wait) and
the SQLite write transactions (to count writes for the substrate baseline).
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import orjson

from chalicelib.services import tenants as tenancy
from chalicelib.config import Settings
from chalicelib import bootstrap
from laptop.runner import Runner
from laptop.worker import app_handlers, start_stream_relay
from chalicelib.services.payments import PaymentService
from chalicelib.stages import topics

from .psp import accept_webhook, in_process_psps
from .stats import StageStats, percentiles

WEBHOOK_URL = "https://merchant.example/hooks"


class StalledError(RuntimeError):
    """The pipeline stopped moving before every payment settled."""


def payment_body(i: int) -> bytes:
    # One customer per payment: the risk stage's velocity rule must not send the run to review.
    return orjson.dumps({
        "amount": 1000 + i % 5000, "currency": "EUR",
        "payment_method": {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12,
                                                    "exp_year": 2030, "cvc": "123"}},
        "capture": "automatic", "reference": f"bench-{i}", "customer": {"id": f"cus-{i}", "country": "DE"}})


class ObservedStore:
    """The store's unit of work, with the moment each payment's settling commit returned."""

    def __init__(self, inner: Any):
        self._inner = inner
        self.settled: dict[str, float] = {}
        if not hasattr(inner, "commit_many"):  # e.g. DynamoDB: the stages then commit one by one
            self.commit_many = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _seen(self, changes: Any, now: float) -> None:
        p = changes.payment
        if p is not None and p.status == "settled":
            self.settled.setdefault(p.payment_id, now)

    def commit(self, changes: Any) -> None:
        self._inner.commit(changes)
        self._seen(changes, time.perf_counter())

    def commit_many(self, batch: list[Any]) -> list[Any]:
        results = self._inner.commit_many(batch)
        now = time.perf_counter()
        for changes, error in zip(batch, results):
            if error is None:
                self._seen(changes, now)
        return results


def _payload(params: Any) -> int:
    values = params.values() if isinstance(params, dict) else params
    return sum(len(v) if isinstance(v, (str, bytes)) else 8 for v in values)


class _Measured:
    """A connection that adds up the bytes its INSERT/UPDATE statements bind (the rows' payload)."""

    def __init__(self, conn: Any, counter: WriteCounter, name: str):
        self._conn, self._counter, self._name = conn, counter, name

    def execute(self, sql: str, params: Any = ()) -> Any:
        if sql[:6] in ("INSERT", "UPDATE", "REPLAC"):
            self._counter.payload[self._name] += _payload(params)
        return self._conn.execute(sql, params)

    def executemany(self, sql: str, seq: Any) -> Any:
        seq = list(seq)
        if sql[:6] in ("INSERT", "UPDATE", "REPLAC"):
            self._counter.payload[self._name] += sum(_payload(p) for p in seq)
        return self._conn.executemany(sql, seq)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._conn, attr)


@dataclass
class WriteCounter:
    """SQLite write transactions and rows changed per database file, and the bytes bound by writes
    in one transaction out of SAMPLE_EVERY with the rows those changed (the mean row size): binding
    every statement through a Python proxy would cost the measured pipeline ~5 % of its CPU."""
    SAMPLE_EVERY = 8
    txns: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    payload: dict[str, int] = field(default_factory=dict)
    sampled_rows: dict[str, int] = field(default_factory=dict)

    def install(self, name: str, db: Any) -> None:
        original = db.write
        self.txns[name] = self.rows[name] = self.payload[name] = self.sampled_rows[name] = 0

        @contextmanager
        def write(*args: Any, **kwargs: Any) -> Iterator[Any]:
            with original(*args, **kwargs) as conn:
                before = conn.total_changes
                sample = self.txns[name] % self.SAMPLE_EVERY == 0
                yield _Measured(conn, self, name) if sample else conn
                changed = conn.total_changes - before
                self.rows[name] += changed
                if sample:
                    self.sampled_rows[name] += changed
                self.txns[name] += 1
        db.write = write

    def mean_row_bytes(self, name: str, since: tuple[int, int]) -> float:
        """Bytes bound per row changed, over the sampled transactions after `since` (payload, rows)."""
        rows = self.sampled_rows[name] - since[1]
        return (self.payload[name] - since[0]) / rows if rows else 0.0


def settings_env(data_dir: Path, mode: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "DATA_DIR": str(data_dir), "PLATFORM_MODE": mode, "LOG_LEVEL": "WARNING",
            **(extra or {})}


def build_platform(data_dir: Path, mode: str, extra_env: dict[str, str] | None = None) -> Any:
    settings = Settings.from_env(settings_env(data_dir, mode, extra_env))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    platform = bootstrap.build(settings)
    platform.connectors = in_process_psps()
    platform.post_webhook = accept_webhook
    platform.bus.ensure_topics(topics())
    return platform


@dataclass
class RunResult:
    n: int
    elapsed_s: float
    ingest_s: float
    latencies_ms: list[float]
    stages: dict[str, dict[str, float]]
    writes: dict[str, Any]
    store_row_bytes: float = 0.0
    log_value_bytes: float = 0.0
    ingest: str = "threads"
    ingest_peak_rss_mb: float | None = None
    api_ms_per_payment: float | None = None  # create_payment's own time (threads ingest only)

    @property
    def rate(self) -> float:
        return self.n / self.elapsed_s if self.elapsed_s else 0.0

    def summary(self) -> dict[str, Any]:
        return {"payments": self.n, "elapsed_s": round(self.elapsed_s, 3),
                "payments_per_s": round(self.rate, 1),
                "ingest_per_s": round(self.n / self.ingest_s, 1) if self.ingest_s else None,
                "latency_ms": percentiles(self.latencies_ms), "stages": self.stages,
                "ingest": self.ingest, "ingest_peak_rss_mb": self.ingest_peak_rss_mb}


class ThreadFeed:
    """API clients as threads of this process, calling the service layer directly."""

    def __init__(self, platform: Any, tenant_id: str, n: int, rate: float | None, clients: int,
                 on_accept: Callable[[str, float], None] | None = None):
        self.service, self.tenant_id, self.n, self.rate = PaymentService(platform), tenant_id, n, rate
        self.on_accept = on_accept
        self.accepted: dict[str, float] = {}
        self.error: BaseException | None = None
        self.ended: float | None = None
        self.writes: dict[str, int] = {}
        self.peak_rss_mb: float | None = None
        self.busy_s = 0.0  # time spent in create_payment, over every client
        self._tickets, self._lock = iter(range(n)), threading.Lock()
        self._threads = [threading.Thread(target=self._client, name=f"bench-client-{k}", daemon=True)
                         for k in range(clients)]

    def start(self, t0: float) -> None:
        self._t0 = t0
        for t in self._threads:
            t.start()

    def _client(self) -> None:
        """One API client: takes the next payment number, waits for its slot when paced, posts it."""
        try:
            while True:
                with self._lock:
                    i = next(self._tickets, None)
                if i is None or self.error:
                    return
                if self.rate:
                    delay = self._t0 + i / self.rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                t_call = time.perf_counter()
                reply = self.service.create_payment(self.tenant_id, uuid.uuid4().hex, payment_body(i), f"bench-{i}")
                with self._lock:
                    self.busy_s += time.perf_counter() - t_call
                if reply.status != 202:
                    raise RuntimeError(f"ingest answered {reply.status}: {reply.body[:200]!r}")
                pid, at = orjson.loads(reply.body)["id"], time.perf_counter()
                self.accepted[pid] = at
                if self.on_accept is not None:
                    self.on_accept(pid, at)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            self.error = e

    def wait(self) -> None:
        for t in self._threads:
            t.join()

    def poll(self) -> None:
        if self.error:
            raise self.error
        if self.ended is None and not any(t.is_alive() for t in self._threads):
            self.ended = time.perf_counter()

    def stop(self) -> None:
        self.error = self.error or RuntimeError("stopped")
        for t in self._threads:
            t.join(timeout=30)


class ProcessFeed:
    """API clients in a process of their own (bench/ingest.py), as `make local` runs the API apart
    from the stage worker: this process then holds only what a stage worker holds."""

    def __init__(self, data_dir: Path, mode: str, extra_env: dict[str, str] | None, tenant_id: str, n: int,
                 rate: float | None, clients: int):
        root = Path(__file__).resolve().parents[1]
        env = settings_env(data_dir, mode, extra_env)
        env["PYTHONPATH"] = os.pathsep.join([str(root / "chalice_app"), str(root), env.get("PYTHONPATH", "")])
        cmd = [sys.executable, "-m", "bench.ingest", "--data-dir", str(data_dir), "--mode", mode,
               "--tenant", tenant_id, "--n", str(n), "--clients", str(clients),
               "--extra-env", json.dumps(extra_env or {})]
        if rate:
            cmd += ["--rate", str(rate)]
        self.proc = subprocess.Popen(cmd, cwd=root, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)
        self.accepted: dict[str, float] = {}
        self.error: BaseException | None = None
        self.ended: float | None = None
        self.writes: dict[str, int] = {}
        self.peak_rss_mb: float | None = None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the ingest process exited with {self.proc.wait()} before it was ready")
        self._reader = threading.Thread(target=self._read, name="bench-ingest-reader", daemon=True)

    def start(self, t0: float) -> None:
        self._reader.start()
        self.proc.stdin.write(f"go {t0!r}\n")
        self.proc.stdin.flush()

    def _read(self) -> None:
        for line in self.proc.stdout:
            kind, _, rest = line.rstrip("\n").partition(" ")
            if kind == "a":
                pid, t = rest.split()
                self.accepted[pid] = float(t)
            elif kind == "done":
                done = json.loads(rest)
                self.writes, self.peak_rss_mb = done["writes"], done["peak_rss_mb"]
                self.ended = done["ingest_end"]
            elif kind == "error":
                self.error = RuntimeError(f"ingest process: {rest}")
        if self.ended is None and self.error is None:
            self.error = RuntimeError(f"the ingest process exited with {self.proc.wait()} before it was done")

    def poll(self) -> None:
        if self.error:
            raise self.error

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self._reader.is_alive():
            self._reader.join(timeout=10)


def run_pipeline(data_dir: Path, n: int, mode: str = "embedded", rate: float | None = None,
                 progress: Callable[[str, int], None] | None = None, stall_s: float = 120.0,
                 extra_env: dict[str, str] | None = None, clients: int = 8, ingest: str = "threads",
                 probe: Any = None) -> RunResult:
    """Push n payments through; `rate` paces ingestion (payments/s), None = as fast as it goes.

    `clients` API clients call the service at once, as concurrent API requests would: threads of
    this process (`ingest="threads"`), or of an API process of their own (`"process"`). A `probe`
    gets `attach(platform)` once it is built, `start()` as ingestion starts and `stop()` once every
    payment settled (bench/awslocal.py counts AWS and Kafka requests so)."""
    progress = progress or (lambda what, k: None)
    platform = build_platform(data_dir, mode, extra_env)
    if probe is not None:
        probe.attach(platform)
    counter = WriteCounter()
    if mode == "embedded":
        counter.install("store", platform.store.unit_of_work.db)
        counter.install("bus", platform.bus.db)
    observed = ObservedStore(platform.store.unit_of_work)
    platform.store = dataclasses.replace(platform.store, unit_of_work=observed)
    bootstrap.set_platform(platform)
    tenant = tenancy.create_tenant(platform, "bench", webhook_url=WEBHOOK_URL)
    stats = {name: StageStats() for name in app_handlers()}
    handlers = {name: (stage, stats[name].wrap(invoke)) for name, (stage, invoke) in app_handlers().items()}
    runner = Runner(platform, handlers)
    stream = start_stream_relay(platform, runner)
    base_txns, base_rows = dict(counter.txns), dict(counter.rows)
    base_sample = (counter.payload.get("store", 0), counter.sampled_rows.get("store", 0))
    feed: ThreadFeed | ProcessFeed = (
        ProcessFeed(data_dir, mode, extra_env, tenant["tenant_id"], n, rate, clients) if ingest == "process"
        else ThreadFeed(platform, tenant["tenant_id"], n, rate, clients))
    if probe is not None:
        probe.start()
    start = time.perf_counter()
    threads = runner.start()
    feed.start(start)
    last_count, last_move = 0, time.monotonic()
    try:
        while True:
            time.sleep(0.05)
            feed.poll()
            done = len(observed.settled)
            progress("accepted", len(feed.accepted))
            progress("settled", done)
            if done >= n:
                break
            if done != last_count:
                last_count, last_move = done, time.monotonic()
            elif time.monotonic() - last_move > stall_s:
                raise StalledError(f"{done} of {n} payments settled; nothing moved for {stall_s:.0f} s"
                                   f" (statuses: {status_counts(platform, tenant['tenant_id'])})")
        # Let the tail finish (the last settled events through notification): the write counts
        # for the substrate must cover the whole of every payment.
        tail_end = time.monotonic() + 30
        while ((stats["notification"].records < n and mode != "aws-local") or feed.ended is None) \
                and time.monotonic() < tail_end:
            time.sleep(0.05)
            feed.poll()
        if probe is not None:
            probe.stop()
    finally:
        feed.stop()
        runner.stopping = True
        for t in threads:
            t.join(timeout=30)
        if stream is not None:
            stream.join(timeout=10)
        bootstrap.set_platform(None)
    accepted, ingest_done = feed.accepted, feed.ended
    for name, into in (("txns", counter.txns), ("rows", counter.rows), ("payload", counter.payload),
                       ("sampled_rows", counter.sampled_rows)):  # what the API process wrote
        if "store" in into:
            into["store"] += feed.writes.get(name, 0)
    end = max(observed.settled.values())
    latencies = [(observed.settled[p] - t) * 1000 for p, t in accepted.items() if p in observed.settled]
    writes: dict[str, Any] = {}
    result = RunResult(n, end - start, (ingest_done or end) - start, latencies,
                       {k: v.summary() for k, v in stats.items() if v.records}, writes,
                       ingest=ingest, ingest_peak_rss_mb=feed.peak_rss_mb,
                       api_ms_per_payment=(feed.busy_s * 1000 / n) if isinstance(feed, ThreadFeed) else None)
    if mode == "embedded":
        writes.update(count_writes(platform, counter, base_txns, base_rows, n))
        # The substrate writes each store row at the mean size the pipeline's rows had (bytes bound
        # by its INSERTs and UPDATEs over rows changed), not at a payment body's size: most rows
        # are small (dedupe markers, counters, audit and timeline rows, deletes).
        result.store_row_bytes = counter.mean_row_bytes("store", base_sample)
        result.log_value_bytes = log_value_size(platform)
    close = getattr(platform.bus, "close", None)
    if close:
        close()
    return result


def count_writes(platform: Any, counter: WriteCounter, base_txns: dict[str, int], base_rows: dict[str, int],
                 n: int) -> dict[str, float]:
    """Per payment: log appends, other rows written, write transactions (all counted, none guessed)."""
    (appends,) = platform.bus.db.conn().execute("SELECT COUNT(*) FROM log").fetchone()
    store_rows = counter.rows["store"] - base_rows["store"]
    bus_rows = counter.rows["bus"] - base_rows["bus"]
    return {"log_appends": appends / n, "store_rows": store_rows / n, "bus_rows": (bus_rows - appends) / n,
            "store_txns": (counter.txns["store"] - base_txns["store"]) / n,
            "bus_txns": (counter.txns["bus"] - base_txns["bus"]) / n}


def log_value_size(platform: Any) -> float:
    (value,) = platform.bus.db.conn().execute("SELECT AVG(LENGTH(value)) FROM log").fetchone()
    return float(value or 0)


def status_counts(platform: Any, tenant_id: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    cursor = None
    while True:
        page, cursor = platform.store.payments.list_payments(tenant_id, None, 100, cursor)
        for p in page:
            counts[p.status] = counts.get(p.status, 0) + 1
        if not cursor:
            return counts
