"""The real local stack (`python -m chalicelib.runtime.local`, what `make local` runs) as processes."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalStack:
    proc: subprocess.Popen
    base: str
    api_key: str
    env: dict[str, str]
    output: list[str]

    def call(self, method: str, path: str, body: Any = None, key: str | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
        h = {"Authorization": f"Bearer {key or self.api_key}", "Content-Type": "application/json", **(headers or {})}
        req = urllib.request.Request(self.base + path, data=data, headers=h, method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def pay(self, number: str, key: str | None = None, idem: str | None = None, **extra: Any):
        body = {"amount": 1999, "currency": "EUR",
                "payment_method": {"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2030,
                                                            "cvc": "123"}},
                "capture": "automatic", "reference": "order-1", "customer": {"id": "c1", "country": "DE"}, **extra}
        return self.call("POST", "/v1/payments", body, key, {"Idempotency-Key": idem or uuid.uuid4().hex})

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

    def payctl(self, *args: str) -> Any:
        out = subprocess.run([sys.executable, "-m", "chalicelib.cli", *args, "--json"], env=self.env, cwd=ROOT,
                             capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out.stderr + out.stdout
        return json.loads(out.stdout)


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory):
    data = tmp_path_factory.mktemp("local-stack")
    port, sim_port = free_port(), free_port()
    env = {**os.environ, "DATA_DIR": str(data), "PORT": str(port), "SIMULATOR_PORT": str(sim_port),
           "PYTHONPATH": str(ROOT / "chalice_app"), "LOG_LEVEL": "INFO"}
    env.pop("SIMULATOR_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "chalicelib.runtime.local"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    output: list[str] = []
    # A thread drains stdout: select() on a buffered text pipe misses lines already read ahead.
    threading.Thread(target=lambda: output.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    deadline = time.monotonic() + 90
    while not any("Ctrl-C stops everything" in line for line in output):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            logs = "".join(p.read_text() for p in (data / "logs").glob("*.log")) if (data / "logs").exists() else ""
            pytest.fail("local stack did not start:\n" + "".join(output) + logs)
        time.sleep(0.1)
    creds = json.loads((data / "demo-tenant.json").read_text())
    stack = LocalStack(proc, f"http://127.0.0.1:{port}", creds["api_key"], env, output)
    yield stack
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
