"""The platform in aws-local mode in one process: DynamoDB + KMS on moto, Kafka on Tansu.

One stack per test run (the stage topics and consumer groups are fixed names on the
shared broker): the real app.py handlers, the local runner, the table-stream relay,
and the PSP simulator in a thread.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
from chalice.test import Client

from chalicelib import bootstrap
from chalicelib.adapters.aws.dynamodb import open_store as open_dynamo_store
from chalicelib.adapters.aws.setup import AwsSettings, clients
from chalicelib.ports import Store
from chalicelib.config import Settings
from chalicelib.services import tenants as tenancy
from chalicelib.stages import STAGES, topics
from laptop import aws_local
from laptop.provision import provision
from laptop.psp_simulator import SimulatorServer
from laptop.runner import Runner
from laptop.streams import StreamRelay, StreamReporter

from ..aws_services import services
from ..fakes import RecordingPoster


def card_body(number: str = "4242424242424242", amount: int = 1999, **extra: Any) -> dict[str, Any]:
    return {"amount": amount, "currency": "EUR",
            "payment_method": {"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2030,
                                                        "cvc": "123"}},
            "capture": "automatic", "reference": f"order-{uuid.uuid4().hex[:8]}",
            "customer": {"id": "c1", "country": "DE"}, **extra}


@dataclass
class AwsStack:
    platform: Any
    runner: Runner
    relay: StreamRelay
    client: Any
    tenant: dict[str, Any]
    table: str
    raw_store: Store  # no outbox grace: sees every pending record

    def post(self, path: str, body: Any, **headers: str) -> Any:
        h = {"Authorization": f"Bearer {self.tenant['api_key']}", "Content-Type": "application/json", **headers}
        return self.client.http.post(path, headers=h, body=json.dumps(body))

    def get(self, path: str) -> Any:
        return self.client.http.get(path, headers={"Authorization": f"Bearer {self.tenant['api_key']}"})

    def drive(self, done: Callable[[], bool], timeout_s: float = 60.0) -> None:
        """Wait until `done()` while the stage threads and the stream relay run (or fail after timeout_s)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.errors:
                raise AssertionError(f"a poll loop failed: {self.errors[0]!r}")
            if done():
                return
            time.sleep(0.05)
        raise AssertionError(f"pipeline did not get there within {timeout_s:.0f} s")

    errors: list[BaseException] = field(default_factory=list)
    relay_lock: threading.Lock = field(default_factory=threading.Lock)  # held: a test plays the relay Lambda


def start_loops(stack: AwsStack, stop: threading.Event, reporter: Any = None) -> list[threading.Thread]:
    """What the worker process runs: one poll loop per stage (kafka-python consumers need their
    own thread to join a group promptly), the runner's background work, and the stream relay."""
    def loop(step: Callable[[], int]) -> None:
        while not stop.is_set():
            try:
                if not step():
                    time.sleep(0.01)
            except Exception as e:  # noqa: BLE001 - surfaced by drive()
                stack.errors.append(e)
                time.sleep(0.5)
    def relay() -> int:
        with stack.relay_lock:
            return stack.relay.step()
    runner = stack.runner  # the worker's loops: stages, the sweeping relay, reconciliation
    steps = [w.step for w in runner.workers] + [runner.relay_step, runner.reconcile_step, relay]
    if reporter is not None:  # the reports Lambda's mapping on the same stream
        steps.append(reporter.step)
    threads = [threading.Thread(target=loop, args=(fn,), daemon=True) for fn in steps]
    for t in threads:
        t.start()
    return threads


# Package scope, not session: the environment it sets (PLATFORM_MODE=aws-local, endpoints) must
# be gone before other suites build their own platforms or start stacks as subprocesses.
@pytest.fixture(scope="package")
def aws_stack(tmp_path_factory):
    svc = services()
    port = aws_local.free_port()
    tmp = tmp_path_factory.mktemp("aws-local")
    server = SimulatorServer(("127.0.0.1", port), str(tmp / "sim.db"), 0.6)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    env = {**svc.env(), "PAYMENTS_TABLE": f"flow-{uuid.uuid4().hex[:8]}", "KMS_KEY_ID": "alias/flow-tests",
           "DATA_DIR": str(tmp / "data"), "SIMULATOR_URL": f"http://127.0.0.1:{port}", "PSP_TIMEOUT_S": "0.3",
           "RETRY_BASE_MS": "1", "RETRY_MAX_MS": "5", "MAX_ATTEMPTS": "2", "LOG_LEVEL": "WARNING"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        aws = AwsSettings.from_env("aws-local")
        arn = provision(aws, topics(), 4)
        platform = bootstrap.build(Settings.from_env())
        platform.post_webhook = RecordingPoster()
        bootstrap.set_platform(platform)
        import app as app_module
        handlers = {n: (STAGES[n], (lambda fn: lambda ev: fn(ev, None))(app_module.STAGE_HANDLERS[n]))
                    for n in STAGES}
        runner = Runner(platform, handlers)
        c = clients(aws)
        relay = StreamRelay(c["dynamodbstreams"], arn, platform)
        reporter = StreamReporter(c["dynamodbstreams"], arn, platform)
        tenant = tenancy.create_tenant(platform, "acme", webhook_url="https://merchant.example/hooks")
        stop, threads = threading.Event(), []
        try:
            with Client(app_module.app) as client:
                stack = AwsStack(platform, runner, relay, client, tenant, aws.table,
                                 open_dynamo_store(c["dynamodb"], aws.table))
                threads = start_loops(stack, stop, reporter)
                yield stack
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=10)
            for w in runner.workers:
                w.consumer.close()
            platform.bus.close()
            bootstrap.set_platform(None)
            server.shutdown()
            server.server_close()
