"""`make local` / `make local-aws`: the whole platform on one machine, no cloud, no Docker.

Starts the PSP simulator, the stage worker, the API (`chalice local`) and the dashboard,
creates a demo tenant on first run, prints how to use it, and stops
everything on Ctrl-C. Data lives in $DATA_DIR and survives restarts.
PLATFORM_MODE=aws-local first starts Tansu and a moto server (data in memory)
and provisions them; everything after that is the same code path.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import orjson

from chalicelib import bootstrap
from chalicelib import config as C
from chalicelib.config import Settings
from chalicelib.services import tenants as tenancy

from . import stackfile

APP_DIR = Path(__file__).resolve().parents[1]
DEMO_FILE = "demo-tenant.json"


def demo_tenant(platform: Any) -> tuple[dict[str, Any], bool]:
    """The demo tenant's credentials, created on first run. (dict, created?)"""
    path = platform.settings.data_dir / DEMO_FILE
    if path.exists():
        creds = orjson.loads(path.read_bytes())
        if platform.store.tenants.get_tenant(creds["tenant_id"]) is not None:  # aws-local servers start empty
            return creds, False
    webhook = f"{platform.settings.simulator_url}/webhooks/demo"
    created = tenancy.create_tenant(platform, "demo", webhook_url=webhook)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # a local test key, readable by you only
    with os.fdopen(fd, "wb") as f:
        f.write(orjson.dumps(created, option=orjson.OPT_INDENT_2))
    return created, True


def wait_http(url: str, proc: subprocess.Popen, name: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode} while starting")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{name} did not answer {url} within {timeout_s:.0f} s")


def simulator_faults(settings: Settings) -> list[str]:
    """Simulator options for injected PSP faults (SIMULATOR_FAULT_*), none when both are 0."""
    if not (settings.simulator_fault_lose_request or settings.simulator_fault_lose_response):
        return []
    return ["--fault-lose-request", str(settings.simulator_fault_lose_request),
            "--fault-lose-response", str(settings.simulator_fault_lose_response),
            "--fault-seed", str(settings.simulator_fault_seed)]


class Supervisor:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.logs = settings.data_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "DATA_DIR": str(self.settings.data_dir)}
        proc = subprocess.Popen(args, cwd=APP_DIR, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # Ctrl-C reaches us; we stop children in order
        self.procs.append((name, proc))
        return proc

    def stop(self) -> None:
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for name, proc in reversed(self.procs):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    def kill(self) -> None:
        """Every child and what it started (each runs in a session of its own), now."""
        for _, proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()

    def watch(self) -> int:
        while True:
            for name, proc in self.procs:
                if proc.poll() is not None:
                    print(f"\n{name} stopped unexpectedly (exit {proc.returncode}); see {self.logs / (name + '.log')}",
                          file=sys.stderr)
                    return 1
            time.sleep(0.5)


def stack_env(settings: Settings) -> dict[str, str]:
    """What a client of this stack needs to reach it: the mode, its ports and, on aws-local, the services."""
    env = {C.PLATFORM_MODE: settings.mode, C.PORT: str(settings.port), C.SIMULATOR_PORT: str(settings.simulator_port),
           C.DASHBOARD_PORT: str(settings.dashboard_port)}
    if settings.mode == "aws-local":
        from chalicelib.adapters.aws.setup import AwsSettings
        aws = AwsSettings.from_env(settings.mode)
        env.update({C.AWS_ENDPOINT_URL: aws.endpoint_url, C.KAFKA_BOOTSTRAP_SERVERS: aws.bootstrap,
                    C.PAYMENTS_TABLE: aws.table, C.KMS_KEY_ID: aws.key_id})
    return env


CHALICE_STAGES = {"embedded": "dev", "aws-local": "aws-local"}  # .chalice/config.json stages


def start_aws_local(sup: Supervisor, settings: Settings) -> None:
    """Tansu and a moto server (unless something already listens there, e.g. LocalStack),
    then the table, the platform key and the topics. Ctrl-C stops what we started."""
    from urllib.parse import urlparse

    from chalicelib.adapters.aws.setup import AwsSettings
    from chalicelib.stages import topics

    from . import aws_local
    from .provision import provision
    aws = AwsSettings.from_env(settings.mode)
    kafka_port = int(aws.bootstrap.split(",")[0].rsplit(":", 1)[1])
    moto_port = urlparse(aws.endpoint_url).port or 4566
    for name, port, command, wait in (("tansu", kafka_port, aws_local.tansu_command, aws_local.wait_kafka),
                                      ("moto", moto_port, aws_local.moto_command, aws_local.wait_moto)):
        log = str(sup.logs / f"{name}.log")
        if aws_local.listening("127.0.0.1", port):
            print(f"  {name:<14} 127.0.0.1:{port} already running: using it")
            wait(port, None, log=log)
            continue
        wait(port, sup.start(name, command(port)), log=log)
        print(f"  {name:<14} 127.0.0.1:{port}  (in memory: data lasts until Ctrl-C)")
    provision(aws, topics(), settings.partitions)
    print(f"  provisioned    table {aws.table} (+ stream), key {aws.key_id}, topics on {aws.bootstrap}")


def stop_on_signals(kill_now: Callable[[], None]) -> None:
    """Ctrl-C or SIGTERM: a KeyboardInterrupt, so the caller stops in order; a second one while it
    stops: `kill_now()` and exit at once, quietly."""
    stopping = {"flag": False}

    def on_signal(*_: Any) -> None:
        if stopping["flag"]:
            kill_now()
            print("stopped at once.", flush=True)
            os._exit(130)
        stopping["flag"] = True
        raise KeyboardInterrupt
    # Both, explicitly: a process started with SIGINT ignored (a background job of a script, some CI
    # runners) would otherwise never see Ctrl-C, since Python then leaves SIGINT ignored.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def main() -> int:
    settings = Settings.from_env()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    sup = Supervisor(settings)
    stop_on_signals(sup.kill)
    try:
        print(f"data: {settings.data_dir}  logs: {sup.logs}  mode: {settings.mode}")
        if settings.mode == "aws-local":
            start_aws_local(sup, settings)
        sim = sup.start("simulator", [py, "-m", "laptop.psp_simulator", "--host", "127.0.0.1",
                                      "--port", str(settings.simulator_port),
                                      "--db", str(settings.data_dir / "simulator.db"),
                                      *simulator_faults(settings)])
        wait_http(f"{settings.simulator_url}/health", sim, "PSP simulator")
        print(f"  PSP simulator  {settings.simulator_url}  (PSPs sim-a, sim-b)")
        platform = bootstrap.build(settings)
        from chalicelib.stages import topics
        platform.bus.ensure_topics(topics())
        creds, created = demo_tenant(platform)
        close = getattr(platform.bus, "close", None)  # the worker and the API open their own clients
        if close:
            close()
        sup.start("worker", [py, "-m", "laptop.worker"])
        print("  stage worker   validation → risk → routing → authorization → capture → settlement → notification")
        # chalice local, with a listen backlog that survives bursts of clients
        api = sup.start("api", [py, "-m", "laptop.api_server", "--host", "127.0.0.1",
                                "--port", str(settings.port),
                                "--stage", CHALICE_STAGES[settings.mode], "--no-autoreload"])
        base = f"http://127.0.0.1:{settings.port}"
        wait_http(f"{base}/health", api, "API (chalice local)")
        print(f"  API            {base}")
        dashboard_url = f"http://127.0.0.1:{settings.dashboard_port}/"
        dash = sup.start("dashboard", [py, "-m", "laptop.dashboard.server", "--host", "127.0.0.1",
                                       "--port", str(settings.dashboard_port)])
        wait_http(f"{dashboard_url}health", dash, "dashboard")
        print(f"  dashboard      {dashboard_url}  (live pipeline, DLQs, PSP health, reports, payment timelines)")
        print(("\nCreated" if created else "\nExisting") + f" demo tenant {creds['tenant_id']}:")
        print(f"  API key        {creds['api_key']}")
        print(f"  webhooks       {settings.simulator_url}/webhooks/demo\n")
        print("Try it:\n")
        print(f"  curl -s -X POST {base}/v1/payments \\\n"
              f"    -H 'Authorization: Bearer {creds['api_key']}' \\\n"
              "    -H 'Content-Type: application/json' -H \"Idempotency-Key: $(date +%s%N)\" \\\n"
              "    -d '{\"amount\": 1999, \"currency\": \"EUR\", \"payment_method\": {\"type\": \"card\", "
              "\"card\": {\"number\": \"4242424242424242\", \"exp_month\": 12, \"exp_year\": 2030, \"cvc\": \"123\"}}, "
              "\"capture\": \"automatic\", \"reference\": \"order-1\", \"customer\": {\"id\": \"c1\", \"country\": \"DE\"}}'\n")
        print(f"  curl -s {base}/v1/payments/<id> -H 'Authorization: Bearer {creds['api_key']}'")
        print("  .venv/bin/payctl demo --count 100      # in another terminal\n")
        print(f"Dashboard: {dashboard_url}\n")
        print("Ctrl-C stops everything.", flush=True)
        stackfile.write(settings.data_dir, stack_env(settings), os.getpid())  # payctl finds us here
        return sup.watch()
    except KeyboardInterrupt:
        return 0
    except RuntimeError as e:
        print(f"make local: {e}", file=sys.stderr)
        return 1
    finally:
        print("\nstopping… (Ctrl-C again to stop at once)", flush=True)
        stackfile.remove(settings.data_dir, os.getpid())
        sup.stop()
        print("stopped.")


if __name__ == "__main__":
    sys.exit(main())
