"""In-process pipeline: the real app.py handlers, SQLite adapters, and the PSP simulator in a thread."""
from __future__ import annotations

import json
import socket
import threading
import urllib.request
from dataclasses import dataclass
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.services import tenants as tenancy
from chalicelib.config import Settings
from laptop.psp_simulator import SimulatorServer
from chalicelib import bootstrap
from laptop.runner import Runner
from chalicelib.stages import STAGES

from ..fakes import RecordingPoster

PSPS = ("sim-a", "sim-b")
# Terminal or waiting-for-someone public statuses: the pipeline has nothing left to do on its own.
RESTING = {"settled", "declined", "failed", "cancelled", "requires_capture", "requires_review",
           "partially_refunded", "refunded"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def card_body(number: str = "4242424242424242", amount: int = 1999, **extra: Any) -> dict[str, Any]:
    body = {"amount": amount, "currency": "EUR",
            "payment_method": {"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2030,
                                                        "cvc": "123"}},
            "capture": "automatic", "reference": "order-1", "customer": {"id": "c1", "country": "DE"}}
    body.update(extra)
    return body


@dataclass
class Stack:
    platform: Any
    runner: Runner
    client: Any
    tenant: dict[str, Any]
    other: dict[str, Any]
    poster: RecordingPoster
    sim_url: str

    def headers(self, tenant: dict[str, Any] | None = None, **extra: str) -> dict[str, str]:
        t = tenant or self.tenant
        return {"Authorization": f"Bearer {t['api_key']}", "Content-Type": "application/json", **extra}

    def post(self, path: str, body: Any = None, tenant: dict | None = None, **headers: str):
        raw = body if isinstance(body, (str, bytes)) else json.dumps(body) if body is not None else ""
        return self.client.http.post(path, headers=self.headers(tenant, **headers), body=raw)

    def get(self, path: str, tenant: dict | None = None):
        return self.client.http.get(path, headers=self.headers(tenant))

    def pay(self, number: str = "4242424242424242", key: str | None = None, **extra: Any) -> str:
        import uuid
        r = self.post("/v1/payments", card_body(number, **extra), **{"Idempotency-Key": key or uuid.uuid4().hex})
        assert r.status_code == 202, r.body
        return json.loads(r.body)["id"]

    def payment(self, payment_id: str, tenant: dict | None = None) -> dict[str, Any]:
        r = self.get(f"/v1/payments/{payment_id}", tenant)
        assert r.status_code == 200, r.body
        return json.loads(r.body)

    # -- helpers beyond the original fixture API ---------------------------------------
    @property
    def tenant_id(self) -> str:
        return self.tenant["tenant_id"]

    def stored(self, payment_id: str, tenant: dict | None = None) -> Any:
        """The payment as the store holds it (version, internal state)."""
        return self.platform.store.payments.get_payment((tenant or self.tenant)["tenant_id"], payment_id)

    def actions(self, payment_id: str, tenant: dict | None = None) -> list[str]:
        return [t["action"] for t in self.platform.store.payments.timeline((tenant or self.tenant)["tenant_id"], payment_id)]

    def stats(self, psp: str) -> dict[str, Any]:
        """The simulator's own record of what a PSP charged (declines excluded)."""
        with urllib.request.urlopen(f"{self.sim_url}/psp/{psp}/stats", timeout=5) as r:
            return json.loads(r.read())

    def charges(self, payment_id: str, tenant: dict | None = None) -> dict[str, int]:
        """Successful authorizations per PSP for one payment, as the simulator counts them.

        The simulator counts by the reference the PSP was sent: the payment id, or (in
        older wiring) the merchant's reference -- tests give each payment a unique one."""
        payment = self.stored(payment_id, tenant)
        keys = {payment_id} | ({payment.reference} if payment is not None and payment.reference else set())
        return {psp: sum(self.stats(psp)["by_reference"].get(k, 0) for k in keys) for psp in PSPS}

    def dlq(self, topic: str) -> list[dict[str, Any]]:
        """Decoded entries of <topic>.dlq."""
        return [json.loads(r.value) for r in self.platform.bus.read_all(topic + ".dlq")]

    def all_dlq_entries(self) -> list[dict[str, Any]]:
        return [json.loads(r.value) for t in self.platform.bus.topics() if t.endswith(".dlq")
                for r in self.platform.bus.read_all(t)]

    def update_tenant(self, tenant: dict | None = None, **changes: Any) -> None:
        config = self.platform.store.tenants.get_tenant((tenant or self.tenant)["tenant_id"])
        config.update(changes)
        self.platform.store.tenants.put_tenant(config)

    def restart(self) -> Runner:
        """Simulate a crash: a new platform and runner on the same files (old in-memory state dropped)."""
        platform = bootstrap.build(Settings.from_env())
        platform.post_webhook = self.platform.post_webhook
        bootstrap.set_platform(platform)
        self.platform, self.runner = platform, make_runner(platform)
        return self.runner


def make_runner(platform: Any) -> Runner:
    """The local event source mapping feeding the real app.py stage Lambdas."""
    import app as app_module
    handlers = {n: (STAGES[n], (lambda fn: lambda ev: fn(ev, None))(app_module.STAGE_HANDLERS[n])) for n in STAGES}
    return Runner(platform, handlers)


def body_of(response: Any) -> Any:
    return json.loads(response.body)


def subsequence(wanted: list[str], actual: list[str]) -> bool:
    """True when `wanted` appears in `actual` in order (other items may sit between)."""
    it = iter(actual)
    return all(any(a == w for a in it) for w in wanted)


def assert_timeline_chained(stack: Stack, payment_id: str, tenant: dict | None = None) -> list[dict[str, Any]]:
    """Every entry starts where the previous one ended (I3: each change legal, applied once, in order)."""
    timeline = stack.platform.store.payments.timeline((tenant or stack.tenant)["tenant_id"], payment_id)
    state = "initiated"
    for entry in timeline:
        assert entry["from"] == state, (payment_id, entry, [t["action"] for t in timeline])
        state = entry["to"]
    assert [t["seq"] for t in timeline] == list(range(1, len(timeline) + 1))
    return timeline


def assert_ledger_balanced(stack: Stack) -> None:
    """I4: every ledger transaction sums to zero per currency."""
    for txn in stack.platform.store.ledger.ledger_totals():
        assert txn["sum"] == 0, txn


def txn_sums(postings: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    sums: dict[tuple[str, str], int] = {}
    for p in postings:
        sums[(p["txn_id"], p["currency"])] = sums.get((p["txn_id"], p["currency"]), 0) + p["amount"]
    return sums


@pytest.fixture
def stack_env() -> dict[str, str]:
    """Settings a test module wants on top of the stack's defaults (override the fixture)."""
    return {}


@pytest.fixture
def stack(tmp_path, monkeypatch, request):
    """A whole platform in one process; runner.drain() moves everything along."""
    try:  # a module may override `stack_env`; suites importing only `stack` get the defaults
        stack_env = request.getfixturevalue("stack_env")
    except pytest.FixtureLookupError:
        stack_env = {}
    port = free_port()
    # Like laptop.psp_simulator.serve(), but polling for shutdown every 20 ms instead of 500 ms
    # (teardown time dominates a suite of short tests).
    server = SimulatorServer(("127.0.0.1", port), str(tmp_path / "sim.db"), 0.6)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="psp-simulator",
                     daemon=True).start()
    env = {"DATA_DIR": str(tmp_path / "data"), "SIMULATOR_URL": f"http://127.0.0.1:{port}",
           "PSP_TIMEOUT_S": "0.3", "UNKNOWN_CHECK_SCHEDULE_S": "0.05,0.1,0.2", "RETRY_BASE_MS": "1", "RETRY_MAX_MS": "5", "MAX_ATTEMPTS": "3",
           "LOG_LEVEL": "WARNING", **stack_env}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    platform = bootstrap.build(Settings.from_env())
    poster = RecordingPoster()
    platform.post_webhook = poster
    bootstrap.set_platform(platform)
    import app as app_module
    runner = make_runner(platform)
    tenant = tenancy.create_tenant(platform, "acme", webhook_url="https://merchant.example/hooks")
    other = tenancy.create_tenant(platform, "globex")
    with Client(app_module.app) as client:
        yield Stack(platform, runner, client, tenant, other, poster, f"http://127.0.0.1:{port}")
    bootstrap.set_platform(None)
    server.shutdown()
    server.server_close()
