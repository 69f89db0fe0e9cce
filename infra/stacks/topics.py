"""Kafka topics: one per stage input plus its DLQ, created by an admin Lambda at deploy.

Terraform invokes the topic-admin Lambda (aws_lambda_invocation) with the full topic
list from chalicelib.stages and infra/config.json; it creates missing topics, raises
partition counts and sets retention, and is re-invoked whenever that list changes.
"""
from __future__ import annotations

import hashlib
import json

from cdktn_provider_aws.lambda_invocation import LambdaInvocation
from constructs import Construct

from .. import settings
from ..settings import platform_config as pc
from .lambdas import Functions


class Topics(Construct):
    def __init__(self, scope: Construct, id: str, *, functions: Functions, bootstrap: str,
                 topics: list[settings.Topic], replication_factor: int, depends_on: list) -> None:
        super().__init__(scope, id)
        spec = [{"name": t.name, "partitions": t.partitions, "replication_factor": replication_factor,
                 "config": {"retention.ms": str(t.retention_ms), "min.insync.replicas": "2"}} for t in topics]
        self.spec = spec
        self.function = functions.function("topic-admin", "handler.handler", functions.concurrency["topic_admin"],
                                           artifact=settings.TOPIC_ADMIN_ZIP,
                                           env={pc.KAFKA_BOOTSTRAP_SERVERS: bootstrap})
        functions.functions["topic_admin"] = self.function  # alarmed like the others
        self.invocation = LambdaInvocation(
            self, "create-topics", function_name=self.function.function_name,
            input=json.dumps({"bootstrap_servers": bootstrap, "topics": spec}),
            triggers={"topics": hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()},
            depends_on=depends_on)
