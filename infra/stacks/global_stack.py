"""The global stack: what exists once for all regions.

Multi-region KMS key (+ replicas), the API key pepper secret (replicated), the DynamoDB global table, the
leases' control table (multi-region strong consistency, control.py), per-tenant IAM roles,
the Glue Schema Registry, CloudTrail, AWS Config in every region and the hosted zone
the regions' health-checked records go into.
"""
from __future__ import annotations

from typing import Any

from cdktn import LocalBackend, TerraformOutput, TerraformStack
from cdktn_provider_aws.data_aws_caller_identity import DataAwsCallerIdentity
from cdktn_provider_aws.data_aws_partition import DataAwsPartition
from cdktn_provider_aws.provider import AwsProvider
from cdktn_provider_aws.route53_zone import Route53Zone
from constructs import Construct

from .. import settings
from .audit import Audit, trail_name
from .common import structs, tags
from .control import ControlTable
from .dynamodb import PaymentsTable
from .kms import PlatformKeys
from .schemas import SchemaRegistry
from .secrets import PepperSecret
from .tenants import TenantRoles


def platform_key_alias() -> str:
    return settings.platform_config.DEFAULTS[settings.platform_config.KMS_KEY_ID]


class GlobalStack(TerraformStack):
    def __init__(self, scope: Construct, id: str, *, cfg: dict[str, Any], tenants: list[settings.Tenant]) -> None:
        super().__init__(scope, id)
        primary = cfg["primary_region"]
        regions = list(cfg["regions"])
        LocalBackend(self, path=f"../../../state/{id}.tfstate")
        AwsProvider(self, "aws", region=primary, default_tags=structs([{"tags": tags()}]))
        DataAwsCallerIdentity(self, "current")
        DataAwsPartition(self, "partition").override_logical_id("current")

        # The platform key also has a replica wherever the control table has one outside the deployment
        # (its replicas are encrypted with it too); everything else lives in the deployment's regions only.
        control_only = [r for r in cfg["control"]["replicas"] if r not in regions]
        self.keys = PlatformKeys(self, "kms", primary_region=primary, regions=regions, table_only_regions=control_only,
                                 alias=platform_key_alias(), trail_name=trail_name())
        key_arns = {r: self.keys.arns[r] for r in regions}
        self.table = PaymentsTable(self, "dynamodb", cfg=cfg, primary_region=primary, key_arns=key_arns)
        self.control = ControlTable(self, "control", cfg=cfg, key_arns=self.keys.arns)
        self.pepper = PepperSecret(self, "pepper", primary_region=primary, key_arns=key_arns)
        self.tenants = TenantRoles(self, "tenants", tenants=tenants, table_name=cfg["dynamodb"]["table_name"],
                                   key_arns=list(key_arns.values()))
        self.schemas = SchemaRegistry(self, "glue", files=settings.event_schemas())
        self.audit = Audit(self, "audit", primary_region=primary, regions=regions, key_arn=self.keys.primary.arn)
        dns = cfg["dns"]
        if dns.get("create_zone"):
            zone = Route53Zone(self, "zone", name=dns["zone_name"], comment="payments platform API", tags=tags())
            TerraformOutput(self, "zone_id", value=zone.zone_id)
        TerraformOutput(self, "table_arn", value=self.table.table.arn)
        TerraformOutput(self, "control_table_arn", value=self.control.table.arn)
        TerraformOutput(self, "platform_key_arn", value=self.keys.primary.arn)
