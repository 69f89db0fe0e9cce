"""One pipeline run in this process: the service layer ingests, the real runner moves, we watch.

Ingestion calls PaymentService.create_payment, the code behind POST /v1/payments.
The stage workers are the local event source mapping (runtime.runner) invoking
app.py's stage Lambdas, one polling thread per stage plus the outbox relay, as
`make local`'s worker runs them. Probes only wrap: the store (to time the commit
that settles each payment), each stage's invoke (processing time, queue wait) and
the SQLite write transactions (to count writes for the substrate baseline).
"""
from __future__ import annotations

import os
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import orjson

from chalicelib import tenancy
from chalicelib.config import Settings
from chalicelib.runtime import bootstrap
from chalicelib.runtime.runner import Runner
from chalicelib.runtime.worker import app_handlers, start_stream_relay
from chalicelib.service import PaymentService
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
    """The platform's store, with the moment each payment's settling commit returned."""

    def __init__(self, inner: Any):
        self._inner = inner
        self.settled: dict[str, float] = {}
        if not hasattr(inner, "commit_many"):  # e.g. DynamoStore: the stages then commit one by one
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

    @property
    def rate(self) -> float:
        return self.n / self.elapsed_s if self.elapsed_s else 0.0

    def summary(self) -> dict[str, Any]:
        return {"payments": self.n, "elapsed_s": round(self.elapsed_s, 3),
                "payments_per_s": round(self.rate, 1),
                "ingest_per_s": round(self.n / self.ingest_s, 1) if self.ingest_s else None,
                "latency_ms": percentiles(self.latencies_ms), "stages": self.stages}


def run_pipeline(data_dir: Path, n: int, mode: str = "embedded", rate: float | None = None,
                 progress: Callable[[str, int], None] | None = None, stall_s: float = 120.0,
                 extra_env: dict[str, str] | None = None, clients: int = 8) -> RunResult:
    """Push n payments through; `rate` paces ingestion (payments/s), None = as fast as it goes.

    `clients` threads call the service at once, as concurrent API requests would."""
    progress = progress or (lambda what, k: None)
    platform = build_platform(data_dir, mode, extra_env)
    counter = WriteCounter()
    if mode == "embedded":
        counter.install("store", platform.store.db)
        counter.install("bus", platform.bus.db)
    observed = ObservedStore(platform.store)
    platform.store = platform.tenants = observed
    bootstrap.set_platform(platform)
    tenant = tenancy.create_tenant(platform, "bench", webhook_url=WEBHOOK_URL)
    stats = {name: StageStats() for name in app_handlers()}
    handlers = {name: (stage, stats[name].wrap(invoke)) for name, (stage, invoke) in app_handlers().items()}
    runner = Runner(platform, handlers)
    stream = start_stream_relay(platform, runner)
    base_txns, base_rows = dict(counter.txns), dict(counter.rows)
    base_sample = (counter.payload.get("store", 0), counter.sampled_rows.get("store", 0))
    service = PaymentService(platform)
    accepted: dict[str, float] = {}
    feeder_error: list[BaseException] = []

    tickets = iter(range(n))
    tickets_lock = threading.Lock()

    def feed() -> None:
        """One API client: takes the next payment number, waits for its slot when paced, posts it."""
        try:
            while True:
                with tickets_lock:
                    i = next(tickets, None)
                if i is None or feeder_error:
                    return
                if rate:
                    delay = t0 + i / rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                reply = service.create_payment(tenant["tenant_id"], uuid.uuid4().hex, payment_body(i),
                                               f"bench-{i}")
                if reply.status != 202:
                    raise RuntimeError(f"ingest answered {reply.status}: {reply.body[:200]!r}")
                accepted[orjson.loads(reply.body)["id"]] = time.perf_counter()
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            feeder_error.append(e)

    start = t0 = time.perf_counter()
    threads = runner.start()
    feeders = [threading.Thread(target=feed, name=f"bench-client-{k}", daemon=True) for k in range(clients)]
    for f in feeders:
        f.start()
    ingest_done = None
    last_count, last_move = 0, time.monotonic()
    try:
        while True:
            time.sleep(0.05)
            if feeder_error:
                raise feeder_error[0]
            done = len(observed.settled)
            progress("accepted", len(accepted))
            progress("settled", done)
            if ingest_done is None and not any(f.is_alive() for f in feeders):
                ingest_done = time.perf_counter()
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
        while stats["notification"].records < n and time.monotonic() < tail_end and mode != "aws-local":
            time.sleep(0.05)
    finally:
        runner.stopping = True
        for t in threads:
            t.join(timeout=30)
        if stream is not None:
            stream.join(timeout=10)
        bootstrap.set_platform(None)
    end = max(observed.settled.values())
    latencies = [(observed.settled[p] - t) * 1000 for p, t in accepted.items() if p in observed.settled]
    writes: dict[str, Any] = {}
    result = RunResult(n, end - start, (ingest_done or end) - start, latencies,
                       {k: v.summary() for k, v in stats.items() if v.records}, writes)
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
        page, cursor = platform.store.list_payments(tenant_id, None, 100, cursor)
        for p in page:
            counts[p.status] = counts.get(p.status, 0) + 1
        if not cursor:
            return counts
