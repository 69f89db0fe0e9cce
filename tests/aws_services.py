"""Tansu and a moto server for the aws-local suites: started once per test process, on free ports.

A server that cannot start fails the tests that need it, with its log path in
the message: these suites must run in CI, never skip.
"""
from __future__ import annotations

import atexit
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from laptop import aws_local

REGION = "us-east-1"


@dataclass
class AwsServices:
    kafka_port: int
    moto_port: int
    logs: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    def env(self) -> dict[str, str]:
        """What a process in aws-local mode needs to find these servers."""
        return {"PLATFORM_MODE": "aws-local", "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                "AWS_ENDPOINT_URL": self.endpoint, "KAFKA_SECURITY": "plaintext", "AWS_DEFAULT_REGION": REGION,
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}

    def client(self, service: str) -> Any:
        from localstack_client.session import Session
        return Session(region_name=REGION, localstack_host=f"127.0.0.1:{self.moto_port}").client(service)


_lock = threading.Lock()
_services: AwsServices | None = None
_error: str | None = None


def services() -> AwsServices:
    """Start both servers on first call (per process); later calls reuse them."""
    global _services, _error
    with _lock:
        if _error:
            pytest.fail(_error, pytrace=False)
        if _services is None:
            logs = Path(tempfile.mkdtemp(prefix="aws-local-"))
            procs = []
            try:
                kport, mport = aws_local.free_port(), aws_local.free_port()
                tansu = aws_local.start(aws_local.tansu_command(kport), logs / "tansu.log")
                procs.append(tansu)
                moto = aws_local.start(aws_local.moto_command(mport), logs / "moto.log")
                procs.append(moto)
                aws_local.wait_kafka(kport, tansu, log=str(logs / "tansu.log"))
                aws_local.wait_moto(mport, moto, log=str(logs / "moto.log"))
            except Exception as e:  # noqa: BLE001 - reported as a failure, with the log path
                for p in procs:
                    aws_local.stop(p)
                _error = f"aws-local servers could not start: {e}"
                pytest.fail(_error, pytrace=False)
            atexit.register(lambda: [aws_local.stop(p) for p in reversed(procs)])
            _services = AwsServices(kport, mport, logs)
        return _services
