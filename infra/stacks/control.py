"""The control table: the home regions' leases and the PSP-call intents (adapters/aws/dynamodb_leases.py),
a DynamoDB global table in multi-region strong consistency (MRSC) mode.

A conditional write there is checked against the table's regions at once, which the main table's
last-writer-wins replicas cannot do: the lease is the cross-region fence (README "Regions").

MRSC has rules of its own (DynamoDB developer guide, "How DynamoDB global tables work"; Terraform
AWS provider, aws_dynamodb_table "Global Tables with Multi-Region Strong Consistency"):
- exactly three regions: three replicas, or two replicas and a witness (which takes no reads or
  writes); in Terraform the table's own region plus `replica` blocks with consistency_mode STRONG,
  and a `global_table_witness` block only beside a single replica;
- all three in one region set (US: us-east-1, us-east-2, us-west-2; EU: eu-west-1, eu-west-2,
  eu-west-3, eu-central-1; AP: ap-northeast-1, -2, -3). A deployment in us-east-1 and eu-west-1
  spans two sets, so the table cannot have a replica in each: `control.endpoints` in config.json
  names the replica each region calls (settings.check_control);
- no TTL and no local secondary indexes; no transactions. Streams are allowed (not used for its
  replication) but nothing reads this table's changes, so it has none.
"""
from __future__ import annotations

from typing import Any

from cdktn_provider_aws.dynamodb_table import DynamodbTable
from constructs import Construct

from ..settings import platform_config as pc
from .common import structs, tags

STRONG = "STRONG"


class ControlTable(Construct):
    def __init__(self, scope: Construct, id: str, *, cfg: dict[str, Any], key_arns: dict[str, str]) -> None:
        super().__init__(scope, id)
        ccfg = cfg["control"]
        first, *others = ccfg["replicas"]
        witness = ccfg.get("witness")
        self.table = DynamodbTable(
            self, "table", name=ccfg["table_name"], region=first, hash_key=pc.TABLE_PK, range_key=pc.TABLE_SK,
            attribute=structs([{"name": n, "type": "S"} for n in (pc.TABLE_PK, pc.TABLE_SK)]),
            billing_mode="PAY_PER_REQUEST",  # a handful of items, a few writes a second at most
            point_in_time_recovery={"enabled": True},
            server_side_encryption={"enabled": True, "kms_key_arn": key_arns[first]},
            deletion_protection_enabled=True,
            replica=structs([{"region_name": r, "consistency_mode": STRONG, "kms_key_arn": key_arns[r],
                              "point_in_time_recovery": True, "propagate_tags": True,
                              "deletion_protection_enabled": True} for r in others]),
            **({"global_table_witness": {"region_name": witness}} if witness else {}),
            lifecycle={"prevent_destroy": True},
            tags=tags(role="control-table"))
