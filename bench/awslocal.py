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

from . import aws_cost
from .counters import BotoCounter, KafkaCounter, counting_clients
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


class RequestProbe:
    """AWS and Kafka requests made while the run's payments go through (bench/counters.py)."""

    def __init__(self) -> None:
        self.boto, self.kafka = BotoCounter(), KafkaCounter()
        self.before: dict[str, Any] = {}
        self.after: dict[str, Any] = {}

    def attach(self, platform: Any) -> None:
        self.kafka.instrument(platform.bus)

    def start(self) -> None:
        self.before = {"boto": self.boto.snapshot(), "kafka": self.kafka.snapshot()}

    def stop(self) -> None:
        self.after = {"boto": self.boto.snapshot(), "kafka": self.kafka.snapshot()}

    def per_payment(self, n: int) -> dict[str, Any]:
        """Requests per payment, by service and operation, over the run (start to stop)."""
        def delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
            return {k: v - b.get(k, 0) for k, v in a.items() if v - b.get(k, 0)}
        a, b = self.after["boto"], self.before["boto"]
        calls = delta(a["calls"], b["calls"])
        by_service: dict[str, dict[str, float]] = {}
        for name, count in sorted(calls.items()):
            service, op = name.split(".", 1)
            by_service.setdefault(service, {})[op] = round(count / n, 2)
        k = delta(self.after["kafka"], self.before["kafka"])
        units = delta(a["units"], b["units"])
        item_bytes = delta(a["item_bytes"], b["item_bytes"])
        ddb = by_service.get("dynamodb", {})
        return {
            "dynamodb_requests": {"total": round(sum(ddb.values()), 2), "by_operation": ddb,
                                  "http_attempts": round(delta(a["attempts"], b["attempts"]).get("dynamodb", 0) / n, 2),
                                  "write_units": round(units.get("write", 0) / n, 2),
                                  "gsi_write_units": round(units.get("gsi_write", 0) / n, 2),
                                  "read_units": round(units.get("read", 0) / n, 2),
                                  "by_item": {k: round(v / n, 2) for k, v in sorted(
                                      delta(a["by_item"], b["by_item"]).items(), key=lambda kv: -kv[1])},
                                  "item_bytes_written": round(item_bytes.get("written", 0) / n),
                                  "item_bytes_read": round(item_bytes.get("read", 0) / n)},
            "dynamodb_streams_requests": by_service.get("dynamodbstreams", {}),
            "kms_requests": by_service.get("kms", {}),
            "kafka_requests": {"produce": round(k.get("produce_requests", 0) / n, 2),
                               "fetch": round(k.get("fetch_requests", 0) / n, 2),
                               "offset_commits": round(k.get("offset_commits", 0) / n, 2),
                               "total": round((k.get("produce_requests", 0) + k.get("fetch_requests", 0)
                                               + k.get("offset_commits", 0)) / n, 2),
                               "bytes_in": round(k.get("producer_wire_bytes_sent", 0) / n),
                               "bytes_out": round(k.get("consumer_wire_bytes_received", 0) / n),
                               "record_bytes_produced": round(k.get("produced_batch_bytes", 0) / n),
                               "record_bytes_fetched": round(k.get("fetched_bytes", 0) / n)},
        }


def cost_inputs(per_payment: dict[str, Any], stages: dict[str, Any], n: int, api_ms: float | None) -> dict[str, Any]:
    """What bench/aws_cost.bill needs, from the run's counts and handler times."""
    d = per_payment["dynamodb_requests"]
    return {"dynamodb": {"write": d["write_units"], "gsi_write": d["gsi_write_units"], "read": d["read_units"]},
            "lambda": aws_cost.lambda_use(stages, n, api_ms),
            "msk": {"bytes_in": per_payment["kafka_requests"]["bytes_in"],
                    "bytes_out": per_payment["kafka_requests"]["bytes_out"]},
            "kms_requests": sum(per_payment["kms_requests"].values()), "api_requests": 1}


def run_aws_local(data_dir: Path, n: int, progress: Callable[[str, int], None],
                  probe: RequestProbe | None = None) -> RunResult:
    with servers(data_dir / "logs") as env:
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # the AWS adapters read their endpoints from the environment
        try:
            settings = Settings.from_env()
            provision(AwsSettings.from_env("aws-local"), topics(), settings.partitions)
            with counting_clients(probe.boto if probe else BotoCounter()):
                return run_pipeline(data_dir, n, mode="aws-local", progress=progress, extra_env=env, clients=2,
                                    stall_s=float(os.environ.get("STALL_S", "180")), probe=probe)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def summary(result: RunResult) -> dict[str, Any]:
    return result.summary()
