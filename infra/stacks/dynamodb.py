"""The single payments table as a DynamoDB global table (version 2019.11.21).

Keys, GSI and TTL attribute come from chalicelib.config, the names the adapter uses.
"""
from __future__ import annotations

from typing import Any

from cdktn_provider_aws.appautoscaling_policy import AppautoscalingPolicy
from cdktn_provider_aws.appautoscaling_target import AppautoscalingTarget
from cdktn_provider_aws.dynamodb_table import DynamodbTable
from constructs import Construct

from ..settings import platform_config as pc
from .common import structs, tags


class PaymentsTable(Construct):
    def __init__(self, scope: Construct, id: str, *, cfg: dict[str, Any], primary_region: str,
                 key_arns: dict[str, str]) -> None:
        super().__init__(scope, id)
        dcfg = cfg["dynamodb"]
        provisioned = dcfg["capacity_mode"] == "provisioned"
        capacity: dict[str, Any] = {"billing_mode": "PAY_PER_REQUEST"}
        gsi_capacity: dict[str, Any] = {}
        if provisioned:
            capacity = {"billing_mode": "PROVISIONED", "read_capacity": dcfg["provisioned"]["read"]["min"],
                        "write_capacity": dcfg["provisioned"]["write"]["min"]}
            gsi_capacity = {"read_capacity": capacity["read_capacity"], "write_capacity": capacity["write_capacity"]}
        self.table = DynamodbTable(
            self, "table", name=dcfg["table_name"], hash_key=pc.TABLE_PK, range_key=pc.TABLE_SK,
            attribute=structs([{"name": n, "type": "S"} for n in
                       (pc.TABLE_PK, pc.TABLE_SK, pc.STATUS_INDEX_PK, pc.STATUS_INDEX_SK)]),
            global_secondary_index=structs([{"name": pc.STATUS_INDEX, "hash_key": pc.STATUS_INDEX_PK,
                                     "range_key": pc.STATUS_INDEX_SK, "projection_type": "ALL", **gsi_capacity}]),
            ttl={"attribute_name": pc.TTL_ATTRIBUTE, "enabled": True},
            point_in_time_recovery={"enabled": True},
            server_side_encryption={"enabled": True, "kms_key_arn": key_arns[primary_region]},
            stream_enabled=True, stream_view_type="NEW_AND_OLD_IMAGES",
            deletion_protection_enabled=True,
            replica=structs([{"region_name": r, "kms_key_arn": arn, "point_in_time_recovery": True, "propagate_tags": True,
                      "deletion_protection_enabled": True}
                     for r, arn in key_arns.items() if r != primary_region]),
            lifecycle={"prevent_destroy": True},
            tags=tags(role="payments-table"), **capacity)
        if provisioned:
            self._autoscale(dcfg["provisioned"], cfg["regions"])

    def _autoscale(self, pcfg: dict[str, Any], regions: dict[str, Any]) -> None:
        """Target tracking on reads and writes, for the table and its GSI, in every region
        (each replica scales on its own traffic)."""
        targets = [(f"table/{self.table.name}", "table", "dynamodb:table"),
                   (f"table/{self.table.name}/index/{pc.STATUS_INDEX}", "gsi", "dynamodb:index")]
        for region in regions:
            for resource_id, kind, dim_prefix in targets:
                for io, metric in (("read", "DynamoDBReadCapacityUtilization"),
                                   ("write", "DynamoDBWriteCapacityUtilization")):
                    spec = pcfg[io]
                    dim = f"{dim_prefix}:{'Read' if io == 'read' else 'Write'}CapacityUnits"
                    target = AppautoscalingTarget(
                        self, f"scale-{region}-{kind}-{io}", region=region, service_namespace="dynamodb",
                        resource_id=resource_id, scalable_dimension=dim,
                        min_capacity=spec["min"], max_capacity=spec["max"], depends_on=[self.table])
                    AppautoscalingPolicy(
                        self, f"scale-{region}-{kind}-{io}-policy", region=region,
                        name=f"{self.table.name}-{kind}-{io}-target-tracking", policy_type="TargetTrackingScaling",
                        service_namespace="dynamodb", resource_id=target.resource_id,
                        scalable_dimension=target.scalable_dimension,
                        target_tracking_scaling_policy_configuration={
                            "target_value": spec["target_utilization"],
                            "predefined_metric_specification": {"predefined_metric_type": metric}})
