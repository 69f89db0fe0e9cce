"""Topic admin Lambda: makes the MSK cluster's topics match the list it is invoked with.

Invoked by Terraform at deploy (aws_lambda_invocation in infra/stacks/topics.py) with
{"bootstrap_servers": "...", "topics": [{"name", "partitions", "replication_factor", "config"}]}.
Creates missing topics, raises partition counts (never lowers them: Kafka cannot),
and applies the topic configs (retention). Authenticates with MSK IAM over TLS.
"""
from __future__ import annotations

import os
from typing import Any


def plan(wanted: list[dict[str, Any]], existing: dict[str, int]) -> dict[str, list]:
    """What to do, given the wanted topics and the existing topics' partition counts."""
    create = [t for t in wanted if t["name"] not in existing]
    grow = [(t["name"], t["partitions"]) for t in wanted
            if t["name"] in existing and t["partitions"] > existing[t["name"]]]
    configure = [(t["name"], t.get("config", {})) for t in wanted if t.get("config")]
    return {"create": create, "grow": grow, "configure": configure}


def _admin(bootstrap: str):  # pragma: no cover - needs a real MSK cluster
    from aws_msk_iam_sasl_signer import MSKAuthTokenProvider
    from kafka.admin import KafkaAdminClient
    from kafka.sasl.oauth import AbstractTokenProvider

    region = os.environ["AWS_REGION"]

    class Token(AbstractTokenProvider):
        def token(self):
            return MSKAuthTokenProvider.generate_auth_token(region)[0]

    return KafkaAdminClient(bootstrap_servers=bootstrap.split(","), security_protocol="SASL_SSL",
                            sasl_mechanism="OAUTHBEARER", sasl_oauth_token_provider=Token(),
                            client_id="payments-topic-admin")


def handler(event: dict[str, Any], context: Any, admin=None) -> dict[str, Any]:
    from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic

    admin = admin or _admin(event["bootstrap_servers"])
    existing = {m["topic"]: len(m["partitions"]) for m in admin.describe_topics()}
    todo = plan(event["topics"], existing)
    if todo["create"]:
        admin.create_topics([NewTopic(t["name"], t["partitions"], t["replication_factor"],
                                      topic_configs=t.get("config", {})) for t in todo["create"]])
    if todo["grow"]:
        admin.create_partitions({name: NewPartitions(total) for name, total in todo["grow"]})
    if todo["configure"]:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs=cfg)
                             for name, cfg in todo["configure"]])
    return {"created": [t["name"] for t in todo["create"]], "grown": [n for n, _ in todo["grow"]],
            "configured": len(todo["configure"])}
