"""The platform key: one multi-region primary key and a replica in every other region.

Replicas live in the global stack (set per resource with the AWS provider's `region`
argument) because the DynamoDB global table's replica blocks need their ARNs; the
regional stacks find their copy by alias (KMS_KEY_ID = alias/payments-platform).
"""
from __future__ import annotations

from cdktn_provider_aws.kms_alias import KmsAlias
from cdktn_provider_aws.kms_key import KmsKey
from cdktn_provider_aws.kms_replica_key import KmsReplicaKey
from constructs import Construct

from .common import key_policy, tags

# CloudWatch Logs (regional principal) and CloudTrail get statements of their own (common.key_policy).
KEY_SERVICES = ["dynamodb.amazonaws.com", "config.amazonaws.com", "sns.amazonaws.com", "s3.amazonaws.com"]


class PlatformKeys(Construct):
    """`arns[region]` is the platform key (primary or replica) in that region.

    `table_only_regions` (outside the deployment, where only the control table has a replica) get a
    replica that only DynamoDB may use: nothing else of the platform runs there."""

    def __init__(self, scope: Construct, id: str, *, primary_region: str, regions: list[str],
                 alias: str, trail_name: str, table_only_regions: list[str] = ()) -> None:
        super().__init__(scope, id)
        self.primary = KmsKey(
            self, "primary", description="payments platform key (tenant data keys, table, audit)",
            multi_region=True, enable_key_rotation=True, rotation_period_in_days=365,
            deletion_window_in_days=30, policy=key_policy(primary_region, KEY_SERVICES, trail_name=trail_name),
            tags=tags(role="platform-key"))
        KmsAlias(self, f"alias-{primary_region}", name=alias, target_key_id=self.primary.key_id)
        self.arns = {primary_region: self.primary.arn}
        self.replicas: dict[str, KmsReplicaKey] = {}
        for region in [*regions, *table_only_regions]:
            if region == primary_region:
                continue
            policy = (key_policy(region, ["dynamodb.amazonaws.com"], logs=False) if region in table_only_regions
                      else key_policy(region, KEY_SERVICES))
            replica = KmsReplicaKey(
                self, f"replica-{region}", region=region, primary_key_arn=self.primary.arn,
                description=f"payments platform key replica in {region}", deletion_window_in_days=30,
                policy=policy, tags=tags(role="platform-key"))
            KmsAlias(self, f"alias-{region}", region=region, name=alias, target_key_id=replica.key_id)
            self.replicas[region] = replica
            self.arns[region] = replica.arn
