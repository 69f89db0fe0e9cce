"""The real local stack as separate processes, driven over HTTP (tests/e2e, tests/fault).

Two shapes:
- `start_local(...)`: `python -m laptop.stack`, exactly what `make local` runs.
- `start_processes(...)`: the same parts started one by one (simulator, API, N stage
  workers), so a test can SIGKILL and restart workers.
Both answer with a `Stack` that calls the API, asks the simulator for its records and
inspects the embedded store read-only.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from laptop import stack as local

ROOT = Path(__file__).resolve().parents[1]
APP_DIR = ROOT / "chalice_app"
PSPS = ("sim-a", "sim-b")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def card_body(number: str = "4242424242424242", **extra: Any) -> dict[str, Any]:
    return {"amount": 1999, "currency": "EUR",
            "payment_method": {"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2030,
                                                        "cvc": "123"}},
            "capture": "automatic", "reference": "order-1", "customer": {"id": "c1", "country": "DE"}, **extra}


def stack_env(data: Path, **extra: str) -> dict[str, str]:
    """Environment for every process of one stack: its own data dir and free ports."""
    port, sim_port = free_port(), free_port()
    env = {**os.environ, "DATA_DIR": str(data), "PORT": str(port), "SIMULATOR_PORT": str(sim_port),
           "DASHBOARD_PORT": str(free_port()),
           "PYTHONPATH": str(APP_DIR), "LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1", **extra}
    env.pop("SIMULATOR_URL", None)
    return env


@dataclass
class Stack:
    base: str
    api_key: str
    tenant_id: str
    env: dict[str, str]
    data: Path

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.env['SIMULATOR_PORT']}"

    # -- the API over HTTP ---------------------------------------------------------------
    def call(self, method: str, path: str, body: Any = None, key: str | None = None,
             headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
        data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
        h = {"Authorization": f"Bearer {key or self.api_key}", "Content-Type": "application/json", **(headers or {})}
        req = urllib.request.Request(self.base + path, data=data, headers=h, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def pay(self, number: str, key: str | None = None, idem: str | None = None, **extra: Any):
        return self.call("POST", "/v1/payments", card_body(number, **extra), key,
                         {"Idempotency-Key": idem or uuid.uuid4().hex})

    def wait_status(self, payment_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            status, _, body = self.call("GET", f"/v1/payments/{payment_id}")
            doc = json.loads(body)
            if status == 200 and doc["status"] != "processing":
                return doc
            if time.monotonic() > deadline:
                raise AssertionError(f"{payment_id} still {doc.get('status')} after {timeout_s} s")
            time.sleep(0.05)

    def list_all(self, status: str | None = None) -> list[dict[str, Any]]:
        """Every payment of this tenant through GET /v1/payments, page by page."""
        out, cursor = [], None
        while True:
            q = "?limit=100" + (f"&status={status}" if status else "") + (f"&cursor={cursor}" if cursor else "")
            code, _, body = self.call("GET", "/v1/payments" + q)
            assert code == 200, body
            page = json.loads(body)
            out += page["data"]
            cursor = page["next_cursor"]
            if not cursor:
                return out

    def payctl(self, *args: str) -> Any:
        out = subprocess.run([sys.executable, "-m", "payctl.cli", *args, "--json"], env=self.env, cwd=ROOT,
                             capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out.stderr + out.stdout
        return json.loads(out.stdout)

    # -- the PSP simulator's own records -------------------------------------------------
    def sim_stats(self, psp: str) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.sim_url}/psp/{psp}/stats", timeout=10) as r:
            return json.loads(r.read())

    def authorizations_by_payment(self) -> dict[str, int]:
        """Successful authorizations per reference (our payment id), summed over every PSP."""
        total: dict[str, int] = {}
        for psp in PSPS:
            for ref, n in self.sim_stats(psp)["by_reference"].items():
                total[ref] = total.get(ref, 0) + n
        return total

    # -- the embedded store, read-only -----------------------------------------------------
    def query(self, sql: str, *args: Any) -> list[tuple]:
        """Read the embedded store's SQLite file (what no API exposes: postings per payment)."""
        conn = sqlite3.connect(f"file:{self.data / 'store.db'}?mode=ro", uri=True, timeout=30)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    def posting_sets(self, payment_id: str) -> list[str]:
        """Ledger transactions (posting sets) written for one payment."""
        return [r[0] for r in self.query("SELECT DISTINCT txn_id FROM postings WHERE payment_id=?", payment_id)]


# -- `make local` ---------------------------------------------------------------------------
@dataclass
class LocalStack(Stack):
    proc: subprocess.Popen | None = None
    output: list[str] = field(default_factory=list)


def start_local(data: Path, **extra_env: str) -> LocalStack:
    """Run `python -m laptop.stack` and wait until it says it is ready."""
    env = stack_env(data, **extra_env)
    proc = subprocess.Popen([sys.executable, "-m", "laptop.stack"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    output: list[str] = []
    # A thread drains stdout: select() on a buffered text pipe misses lines already read ahead.
    threading.Thread(target=lambda: output.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    deadline = time.monotonic() + 90
    while not any("Ctrl-C stops everything" in line for line in output):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("local stack did not start:\n" + "".join(output) + logs_of(data))
        time.sleep(0.1)
    creds = json.loads((data / "demo-tenant.json").read_text())
    return LocalStack(f"http://127.0.0.1:{env['PORT']}", creds["api_key"], creds["tenant_id"], env, data,
                      proc, output)


def stop_local(stack: LocalStack) -> None:
    if stack.proc is not None and stack.proc.poll() is None:
        stack.proc.send_signal(signal.SIGINT)
        try:
            stack.proc.wait(30)
        except subprocess.TimeoutExpired:
            stack.proc.kill()
    # Kept with the run's data, so the PAN scan reads what the stack printed too.
    (stack.data / "logs").mkdir(parents=True, exist_ok=True)
    (stack.data / "logs" / "stack-output.log").write_text(without_usage_banner(stack.output))


def without_usage_banner(lines: list[str]) -> str:
    """The stack's output minus the printed `curl` example (README's documented test card, not data)."""
    text = "".join(lines)
    start, end = text.find("Try it:"), text.find("Ctrl-C stops everything.")
    return text[:start] + text[end:] if 0 <= start < end else text


def logs_of(data: Path) -> str:
    logs = data / "logs"
    return "".join(f"\n--- {p.name}\n" + p.read_text()[-4000:] for p in sorted(logs.glob("*.log"))) \
        if logs.exists() else ""


# -- the same parts, one process each -------------------------------------------------------
@dataclass
class ProcessStack(Stack):
    members: int = 2
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    starts: dict[str, int] = field(default_factory=dict)

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        logs = self.data / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(args, cwd=APP_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.procs[name] = proc
        self.starts[name] = self.starts.get(name, 0) + 1
        return proc

    def start_worker(self, member: int) -> subprocess.Popen:
        return self._start(f"worker-{member}", [sys.executable, "-m", "laptop.worker",
                                                "--member", str(member), "--members", str(self.members)])

    def worker_ready(self, member: int) -> bool:
        """The latest start of this worker has printed its 'running' line."""
        log = self.data / "logs" / f"worker-{member}.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return text.count(" running: ") >= self.starts.get(f"worker-{member}", 0)

    def kill_worker(self, member: int) -> None:
        """SIGKILL: no handler, no cleanup, no offsets committed on the way out."""
        proc = self.procs[f"worker-{member}"]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_http(url: str, proc: subprocess.Popen, what: str, data: Path, timeout_s: float = 60) -> None:
    """laptop/stack.py's readiness wait, with the stack's logs attached when it gives up."""
    try:
        local.wait_http(url, proc, what, timeout_s)
    except RuntimeError as e:
        raise RuntimeError(str(e) + logs_of(data)) from None


def start_processes(data: Path, members: int = 2, simulator_args: tuple[str, ...] = (),
                    **extra_env: str) -> ProcessStack:
    """Simulator, topics and a tenant, `members` stage workers, and the API (`chalice local`)."""
    env = stack_env(data, **extra_env)
    data.mkdir(parents=True, exist_ok=True)
    stack = ProcessStack(f"http://127.0.0.1:{env['PORT']}", "", "", env, data, members)
    try:
        sim = stack._start("simulator", [sys.executable, "-m", "laptop.psp_simulator",
                                         "--port", env["SIMULATOR_PORT"], "--db", str(data / "simulator.db"),
                                         *simulator_args])
        wait_http(f"{stack.sim_url}/health", sim, "PSP simulator", data)
        out = subprocess.run([sys.executable, "-c", SETUP], cwd=APP_DIR, env=env, capture_output=True, text=True,
                             timeout=60)
        if out.returncode != 0:
            raise RuntimeError("setup failed:\n" + out.stderr)
        creds = json.loads(out.stdout.strip().splitlines()[-1])
        stack.api_key, stack.tenant_id = creds["api_key"], creds["tenant_id"]
        for member in range(members):
            stack.start_worker(member)
        api = stack._start("api", [sys.executable, "-m", "laptop.api_server", "--host", "127.0.0.1",
                                   "--port", env["PORT"], "--stage", "dev", "--no-autoreload"])
        wait_http(f"{stack.base}/health", api, "API (chalice local)", data)
    except BaseException:
        stack.stop()
        raise
    return stack


# What laptop/stack.py does before starting workers: every topic, and a tenant whose
# webhooks go to the simulator's sink.
SETUP = """
import json, orjson
from chalicelib.services import tenants as tenancy
from chalicelib import bootstrap
from chalicelib.stages import topics
p = bootstrap.build()
p.bus.ensure_topics(topics())
print(json.dumps(tenancy.create_tenant(p, "fault", webhook_url=p.settings.simulator_url + "/webhooks/fault")))
"""
