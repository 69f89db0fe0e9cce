"""Figures that need other processes: 1 -> 2 stage-worker processes, and the HTTP API's ingest rate."""
from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable


from chalicelib.services import tenants as tenancy
from laptop import aws_local
from chalicelib import bootstrap
from chalicelib.services.payments import PaymentService

from .embedded import build_platform, payment_body
from .userpath import cpu_seconds

ROOT = Path(__file__).resolve().parents[1]
APP_DIR = ROOT / "chalice_app"


def _env(data_dir: Path) -> dict[str, str]:
    path = os.pathsep.join([str(APP_DIR), str(ROOT), os.environ.get("PYTHONPATH", "")])
    # The bench tenant is the only client: lift the per-tenant API rate limit out of the way.
    return {**os.environ, "PYTHONPATH": path, "DATA_DIR": str(data_dir), "PLATFORM_MODE": "embedded",
            "LOG_LEVEL": "WARNING", "RATE_LIMIT_PER_S": "1000000", "RATE_LIMIT_BURST": "1000000"}


def ingest(platform: Any, tenant_id: str, n: int, clients: int = 8) -> None:
    """n payments through the service layer, from `clients` threads."""
    service = PaymentService(platform)
    tickets = iter(range(n))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def client() -> None:
        try:
            while True:
                with lock:
                    i = next(tickets, None)
                if i is None:
                    return
                reply = service.create_payment(tenant_id, uuid.uuid4().hex, payment_body(i), f"bench-{i}")
                if reply.status != 202:
                    raise RuntimeError(f"ingest answered {reply.status}")
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errors.append(e)
    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def drain_with_workers(data_dir: Path, n: int, workers: int, progress: Callable[[int], None],
                       stall_s: float = 120.0) -> dict[str, Any]:
    """Ingest n payments first, then time `workers` stage-worker processes settling all of them."""
    platform = build_platform(data_dir, "embedded")
    bootstrap.set_platform(platform)
    tenant = tenancy.create_tenant(platform, "bench", webhook_url="https://merchant.example/hooks")
    ingest(platform, tenant["tenant_id"], n)
    conn = platform.store.unit_of_work.db.conn()

    def settled() -> int:
        return conn.execute("SELECT COUNT(*) FROM payments WHERE tenant_id=? AND status='settled'",
                            (tenant["tenant_id"],)).fetchone()[0]
    procs = [subprocess.Popen([sys.executable, "-m", "bench.worker", "--data-dir", str(data_dir),
                               "--member", str(m), "--members", str(workers)],
                              cwd=ROOT, env=_env(data_dir), stdout=subprocess.PIPE, text=True)
             for m in range(workers)]
    try:
        cpu_at_ready = []
        for p in procs:
            ready = p.stdout.readline().split()
            if not ready or ready[0] != "ready":
                raise RuntimeError(f"stage worker exited with {p.wait()} before it was ready")
            cpu_at_ready.append(float(ready[1]))
        start = time.perf_counter()
        last, moved_at = 0, time.monotonic()
        while True:
            done = settled()
            progress(done)
            if done >= n:
                break
            if done != last:
                last, moved_at = done, time.monotonic()
            elif time.monotonic() - moved_at > stall_s or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"{workers} worker(s): {done} of {n} settled, then nothing moved")
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
        rss = [_rss_mb(p.pid) for p in procs]
        cpu = [cpu_seconds(p.pid) for p in procs]
    finally:
        _stop(procs)
        bootstrap.set_platform(None)
    return {"workers": workers, "payments": n, "elapsed_s": round(elapsed, 3),
            "payments_per_s": round(n / elapsed, 1), "worker_peak_rss_mb": rss,
            # Process CPU (user + system) of the stage workers from ready to the last payment settled.
            "worker_cpu_ms_per_payment": None if None in cpu else
            round(sum(c - r for c, r in zip(cpu, cpu_at_ready)) * 1000 / n, 2)}


def http_ingest(data_dir: Path, n: int, clients: int, progress: Callable[[int], None]) -> dict[str, Any]:
    """POST /v1/payments against `chalice local` (runtime.api_server, as `make local` runs it)."""
    platform = build_platform(data_dir, "embedded")
    tenant = tenancy.create_tenant(platform, "bench-http")
    port = aws_local.free_port()
    log = open(data_dir / "api.log", "wb")
    api = subprocess.Popen([sys.executable, "-m", "laptop.api_server", "--host", "127.0.0.1",
                            "--port", str(port), "--stage", "dev", "--no-autoreload"],
                           cwd=APP_DIR, env=_env(data_dir), stdout=log, stderr=subprocess.STDOUT)
    headers = {"Authorization": f"Bearer {tenant['api_key']}", "Content-Type": "application/json"}
    try:
        _wait_http(port, api)
        tickets = iter(range(n))
        lock = threading.Lock()
        errors: list[str] = []
        done = [0]

        def client() -> None:
            while not errors:
                with lock:
                    i = next(tickets, None)
                if i is None:
                    return
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                try:
                    conn.request("POST", "/v1/payments", body=payment_body(i),
                                 headers={**headers, "Idempotency-Key": uuid.uuid4().hex})
                    resp = conn.getresponse()
                    body = resp.read()
                    if resp.status != 202:
                        errors.append(f"HTTP {resp.status}: {body[:200]!r}")
                finally:
                    conn.close()
                with lock:
                    done[0] += 1
                    progress(done[0])
        start = time.perf_counter()
        threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        if errors:
            raise RuntimeError(f"the API refused a payment: {errors[0]}")
    finally:
        _stop([api])
        log.close()
    return {"payments": n, "clients": clients, "elapsed_s": round(elapsed, 3),
            "payments_per_s": round(n / elapsed, 1)}


def _wait_http(port: int, proc: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the API server exited with {proc.returncode} while starting")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the API server did not answer on port {port} within {timeout_s:.0f} s")
