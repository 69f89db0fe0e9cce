"""AWS wiring for the aws-local and aws modes: clients, adapters, and local provisioning.

aws-local: boto3 clients come from a localstack-client session pointed at
AWS_ENDPOINT_URL (a moto server or a real LocalStack); Kafka is Tansu (plaintext).
aws: the default credential chain and regional endpoints; Kafka security from
KAFKA_SECURITY (tls or iam on MSK). In AWS the table, stream, key and topics come
from infra/; `provision()` creates them only for aws-local.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from ... import config as C

DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class AwsSettings:
    mode: str
    table: str
    bootstrap: str
    security: str
    key_id: str
    endpoint_url: str
    region: str
    stream_arn: str

    @classmethod
    def from_env(cls, mode: str, env: dict[str, str] | None = None) -> AwsSettings:
        env = dict(os.environ if env is None else env)
        get = lambda name: env.get(name) or C.DEFAULTS.get(name, "")  # noqa: E731
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
        return cls(mode, get(C.PAYMENTS_TABLE), get(C.KAFKA_BOOTSTRAP_SERVERS), get(C.KAFKA_SECURITY),
                   get(C.KMS_KEY_ID), get(C.AWS_ENDPOINT_URL), region, env.get(C.OUTBOX_STREAM_ARN, ""))

    @property
    def endpoint_host(self) -> str:
        u = urlparse(self.endpoint_url)
        return f"{u.hostname or '127.0.0.1'}:{u.port or 4566}"


def clients(aws: AwsSettings) -> dict[str, Any]:
    """dynamodb, dynamodbstreams and kms clients for the mode."""
    from botocore.config import Config  # noqa: PLC0415 - boto3 only in the aws modes
    cfg = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=64,
                 connect_timeout=5, read_timeout=30)
    if aws.mode == "aws-local":
        from localstack_client.session import Session  # noqa: PLC0415
        session: Any = Session(region_name=aws.region, localstack_host=aws.endpoint_host)
        # localstack-client prefers $AWS_ENDPOINT_URL when set; keep them the same endpoint.
        return {name: session.client(name, config=cfg) for name in ("dynamodb", "dynamodbstreams", "kms")}
    import boto3  # noqa: PLC0415
    session = boto3.session.Session(region_name=aws.region)
    return {name: session.client(name, config=cfg) for name in ("dynamodb", "dynamodbstreams", "kms")}


def control_client(aws: AwsSettings, region: str, dynamodb: Any) -> Any:
    """The DynamoDB client for the control table: `dynamodb` itself unless the replica to call is in
    another region (CONTROL_REGION: a deployment region outside the table's MRSC region set)."""
    if not region or region == aws.region or aws.mode != "aws":
        return dynamodb
    return clients(AwsSettings(**{**aws.__dict__, "region": region}))["dynamodb"]


def build_adapters(settings: Any, aws: AwsSettings | None = None) -> tuple[Any, Any, Any, dict[str, Any]]:
    """(store, bus, keys, clients) for the aws-local or aws mode."""
    from .dynamodb import open_store  # noqa: PLC0415
    from .kafka import KafkaBus  # noqa: PLC0415
    from .kms import KmsKeys  # noqa: PLC0415
    aws = aws or AwsSettings.from_env(settings.mode)
    c = clients(aws)
    # The table's stream relay publishes fresh outbox records; the polling relay only sweeps old ones.
    store = open_store(c["dynamodb"], aws.table, outbox_grace_s=OUTBOX_SWEEP_AFTER_S, region=settings.region)
    bus = KafkaBus(aws.bootstrap, aws.security, aws.region, partitions=settings.partitions)
    keys = KmsKeys(c["kms"], c["dynamodb"], aws.table, aws.key_id)
    return store, bus, keys, c


OUTBOX_SWEEP_AFTER_S = 30.0
