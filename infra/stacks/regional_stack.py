"""One stack per region: network, MSK (+ topics, Replicator to peers), the Lambdas with
their event source mappings, the EDGE API with its health check, and alarms.

Reads what the global stack made (table stream, platform key alias, hosted zone) by
name, so a region can be planned on its own once the global stack is applied.
"""
from __future__ import annotations

import os
from typing import Any

from cdktn import LocalBackend, TerraformOutput, TerraformStack
from cdktn_provider_aws.data_aws_caller_identity import DataAwsCallerIdentity
from cdktn_provider_aws.data_aws_partition import DataAwsPartition
from cdktn_provider_aws.kms_alias import KmsAlias
from cdktn_provider_aws.kms_key import KmsKey
from constructs import Construct

from .. import settings
from .api import Api
from .common import structs, key_policy, tags
from .global_stack import platform_key_alias
from .kafka import Kafka, cluster_name
from .lambdas import Functions, consumer_group, lambda_security_group, platform_env
from .network import Network
from .ops import Alarms
from .replicator import Replicators
from .topics import Topics

# CloudWatch Logs is granted as its regional principal by key_policy itself.
INFRA_KEY_SERVICES = ["sqs.amazonaws.com", "sns.amazonaws.com", "kafka.amazonaws.com",
                      "lambda.amazonaws.com", "cloudwatch.amazonaws.com"]


def replication_enabled() -> bool:
    return os.environ.get("INFRA_REPLICATION", "on").lower() not in ("off", "0", "false")


class RegionalStack(TerraformStack):
    def __init__(self, scope: Construct, id: str, *, region: str, cfg: dict[str, Any]) -> None:
        super().__init__(scope, id)
        from cdktn_provider_aws.provider import AwsProvider
        rcfg = cfg["regions"][region]
        LocalBackend(self, path=f"../../../state/{id}.tfstate")
        AwsProvider(self, "aws", region=region, default_tags=structs([{"tags": tags(region=region)}]))
        DataAwsCallerIdentity(self, "current")
        DataAwsPartition(self, "partition").override_logical_id("current")
        # The region's infrastructure key (MSK at rest, logs, queues, Lambda env); tenant data
        # uses the multi-region platform key from the global stack.
        key = KmsKey(self, "infra-key", description=f"payments infrastructure key {region}",
                     enable_key_rotation=True, rotation_period_in_days=365, deletion_window_in_days=30,
                     policy=key_policy(region, INFRA_KEY_SERVICES), tags=tags(role="infra-key"))
        KmsAlias(self, "infra-key-alias", name=f"alias/payments-infra-{region}", target_key_id=key.key_id)

        self.network = Network(self, "network", region=region, rcfg=rcfg, key_arn=key.arn)
        lambda_sg = lambda_security_group(self, region, self.network.vpc_id, self.network.vpc_cidr)
        self.kafka = Kafka(self, "kafka", region=region, cfg=cfg, vpc_id=self.network.vpc_id,
                           vpc_cidr=self.network.vpc_cidr, subnet_ids=self.network.private_subnet_ids,
                           key_arn=key.arn, client_sg_id=lambda_sg.id, multi_vpc=replication_enabled())
        alias = platform_key_alias()
        self.functions = Functions(self, "lambda", region=region, cfg=cfg,
                                   env=platform_env(region, cfg, self.kafka.bootstrap, alias),
                                   subnet_ids=self.network.private_subnet_ids, security_group_id=lambda_sg.id,
                                   kafka_arn=self.kafka.arn, key_arn=key.arn, platform_key_alias=alias)
        topics = settings.platform_topics(cfg)
        self.topics = Topics(self, "topics", functions=self.functions, bootstrap=self.kafka.bootstrap, topics=topics,
                             replication_factor=cfg["msk"]["replication_factor"], depends_on=[self.kafka.cluster])
        # Stage consumers start only once their topics exist.
        for mapping in self.functions.mappings.values():
            mapping.add_override("depends_on", [f"aws_lambda_invocation.{self.topics.invocation.friendly_unique_id}"])
        self.replicators = None
        if replication_enabled():
            groups = sorted({consumer_group(region, s, t) for s, m in settings.STAGES.items() for t in m.CONSUMES})
            self.replicators = Replicators(self, "replicator", region=region, cfg=cfg, kafka=self.kafka,
                                           topic_names=[t.name for t in topics], consumer_groups=groups)
        self.api = Api(self, "api", region=region, cfg=cfg, handler=self.functions.functions["api"], key_arn=key.arn)
        self.alarms = Alarms(self, "alarms", region=region, cfg=cfg, functions=self.functions,
                             cluster_name=cluster_name(region), key_arn=key.arn)
        TerraformOutput(self, "api_url", value=self.api.stage.invoke_url)
        TerraformOutput(self, "kafka_bootstrap", value=self.kafka.bootstrap)
