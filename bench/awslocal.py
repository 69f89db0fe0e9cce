"""`--mode aws-local`: the same pipeline run over Tansu (Kafka) and a moto server (DynamoDB, KMS)."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from chalicelib.adapters.aws.setup import AwsSettings
from chalicelib.config import Settings
from chalicelib.stages import topics
from laptop import aws_local
from laptop.provision import provision

from .embedded import RunResult, run_pipeline


@contextmanager
def servers(logs: Path) -> Iterator[dict[str, str]]:
    """Tansu and moto on free ports, as tests/aws_services.py starts them; stopped on exit."""
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    try:
        kport, mport = aws_local.free_port(), aws_local.free_port()
        procs.append(aws_local.start(aws_local.tansu_command(kport), logs / "tansu.log"))
        procs.append(aws_local.start(aws_local.moto_command(mport), logs / "moto.log"))
        aws_local.wait_kafka(kport, procs[0], log=str(logs / "tansu.log"))
        aws_local.wait_moto(mport, procs[1], log=str(logs / "moto.log"))
        yield {"PLATFORM_MODE": "aws-local", "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kport}",
               "AWS_ENDPOINT_URL": f"http://127.0.0.1:{mport}", "KAFKA_SECURITY": "plaintext",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing"}
    finally:
        for p in reversed(procs):
            aws_local.stop(p)


def run_aws_local(data_dir: Path, n: int, progress: Callable[[str, int], None]) -> RunResult:
    with servers(data_dir / "logs") as env:
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # the AWS adapters read their endpoints from the environment
        try:
            settings = Settings.from_env()
            provision(AwsSettings.from_env("aws-local"), topics(), settings.partitions)
            return run_pipeline(data_dir, n, mode="aws-local", progress=progress, extra_env=env, clients=2,
                                stall_s=float(os.environ.get("STALL_S", "180")))
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def summary(result: RunResult) -> dict[str, Any]:
    return result.summary()
