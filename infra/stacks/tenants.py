"""One IAM role and policy per tenant (infra/tenants.json), confined to its own data.

DynamoDB access is limited with dynamodb:LeadingKeys to keys that begin with the
tenant id (every partition key does: chalicelib.config.TABLE_PK); KMS use is limited
to requests whose encryption context names the same tenant.
"""
from __future__ import annotations

from cdktn_provider_aws.iam_role import IamRole
from cdktn_provider_aws.iam_role_policy import IamRolePolicy
from constructs import Construct

from ..settings import Tenant
from .common import ACCOUNT, PARTITION, allow, policy, tags

TABLE_ACTIONS = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:PutItem",
                 "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem",
                 "dynamodb:ConditionCheckItem"]
KMS_ACTIONS = ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"]


def leading_keys(tenant_id: str) -> list[str]:
    """The partition keys a tenant may touch: its id alone or its id as a '#' prefix."""
    return [tenant_id, f"{tenant_id}#*"]


class TenantRoles(Construct):
    def __init__(self, scope: Construct, id: str, *, tenants: list[Tenant], table_name: str,
                 key_arns: list[str]) -> None:
        super().__init__(scope, id)
        table = f"arn:{PARTITION}:dynamodb:*:{ACCOUNT}:table/{table_name}"
        self.roles: dict[str, IamRole] = {}
        for t in tenants:
            role = IamRole(
                self, f"role-{t.name}", name=f"payments-tenant-{t.name}",
                description=f"data access for tenant {t.tenant_id} only",
                assume_role_policy=policy({
                    "Effect": "Allow", "Principal": {"AWS": f"arn:{PARTITION}:iam::{ACCOUNT}:root"},
                    "Action": ["sts:AssumeRole", "sts:TagSession"],
                    "Condition": {"StringEquals": {"aws:PrincipalTag/tenant_id": t.tenant_id}}}),
                max_session_duration=3600, tags=tags(tenant_id=t.tenant_id))
            IamRolePolicy(
                self, f"policy-{t.name}", name=f"tenant-{t.name}-data", role=role.id,
                policy=policy(
                    allow(TABLE_ACTIONS, [table, f"{table}/index/*"], sid="OwnKeysOnly",
                          condition={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": leading_keys(t.tenant_id)}}),
                    allow(KMS_ACTIONS, key_arns, sid="OwnEncryptionContextOnly",
                          condition={"StringEquals": {"kms:EncryptionContext:tenant_id": t.tenant_id}})))
            self.roles[t.tenant_id] = role
