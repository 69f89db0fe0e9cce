"""MSK Replicator from this region's cluster to each peer region's cluster.

A replicator lives in its target region (an MSK requirement), so it is created here
with the provider's per-resource `region`; the peer cluster, its private subnets and
its broker security group are looked up there by name/tag. Topics keep their names
prefixed with the source cluster alias (MSK's default, loop-free for two-way
replication); consumer-group offsets are synchronised so a peer can take over a
stage's consumer group on failover.

Rollout in two steps (README "Replication bootstrap"): a replicator needs its peer's
cluster, and its source cluster's multi-VPC connectivity can only be turned on once that
cluster is ACTIVE; so every region is first applied with INFRA_REPLICATION=off (clusters
only), then again with replication on (multi-VPC connectivity, cluster policy, replicators).
"""
from __future__ import annotations

from typing import Any

from cdktn_provider_aws.data_aws_msk_cluster import DataAwsMskCluster
from cdktn_provider_aws.data_aws_security_group import DataAwsSecurityGroup
from cdktn_provider_aws.data_aws_subnets import DataAwsSubnets
from cdktn_provider_aws.iam_role import IamRole
from cdktn_provider_aws.iam_role_policy import IamRolePolicy
from cdktn_provider_aws.msk_replicator import MskReplicator
from constructs import Construct

from .common import structs, ACCOUNT, PARTITION, allow, assume_role, name, policy, tags
from .kafka import Kafka, cluster_name, msk_security_group_name


class Replicators(Construct):
    def __init__(self, scope: Construct, id: str, *, region: str, cfg: dict[str, Any], kafka: Kafka,
                 topic_names: list[str], consumer_groups: list[str]) -> None:
        super().__init__(scope, id)
        peers = [r for r in cfg["regions"] if r != region]
        role = IamRole(self, "role", name=name("replicator", region),
                       assume_role_policy=assume_role("kafka.amazonaws.com"), tags=tags())
        kafka_arn = f"arn:{PARTITION}:kafka:*:{ACCOUNT}"
        IamRolePolicy(self, "role-policy", role=role.id, name="replicate-payments", policy=policy(
            # WriteDataIdempotently: Replicator writes with an idempotent producer (MSK Replicator docs).
            allow(["kafka-cluster:Connect", "kafka-cluster:DescribeCluster", "kafka-cluster:AlterCluster",
                   "kafka-cluster:WriteDataIdempotently"],
                  f"{kafka_arn}:cluster/payments-*/*"),
            allow(["kafka-cluster:DescribeTopic", "kafka-cluster:CreateTopic", "kafka-cluster:AlterTopic",
                   "kafka-cluster:WriteData", "kafka-cluster:ReadData", "kafka-cluster:DescribeTopicDynamicConfiguration",
                   "kafka-cluster:AlterTopicDynamicConfiguration"], f"{kafka_arn}:topic/payments-*/*"),
            allow(["kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"], f"{kafka_arn}:group/payments-*/*")))
        self.replicators: dict[str, MskReplicator] = {}
        for peer in peers:
            pcfg = cfg["regions"][peer]
            peer_cluster = DataAwsMskCluster(self, f"peer-cluster-{peer}", region=peer, cluster_name=cluster_name(peer))
            peer_sg = DataAwsSecurityGroup(self, f"peer-sg-{peer}", region=peer, name=msk_security_group_name(peer))
            if pcfg["vpc"].get("create"):
                peer_subnets = DataAwsSubnets(self, f"peer-subnets-{peer}", region=peer, filter=structs([
                    {"name": "tag:tier", "values": ["private"]}, {"name": "tag:app", "values": ["payments"]},
                    {"name": "vpc-id", "values": [peer_sg.vpc_id]}])).ids
            else:
                peer_subnets = list(pcfg["vpc"]["private_subnet_ids"])
            self.replicators[peer] = MskReplicator(
                self, f"to-{peer}", region=peer, replicator_name=f"payments-{region}-to-{peer}",
                description=f"payments topics and consumer offsets {region} -> {peer}",
                service_execution_role_arn=role.arn,
                kafka_cluster=structs([
                    {"amazon_msk_cluster": {"msk_cluster_arn": kafka.arn},
                     "vpc_config": {"subnet_ids": kafka.subnet_ids, "security_groups_ids": [kafka.security_group_id]}},
                    {"amazon_msk_cluster": {"msk_cluster_arn": peer_cluster.arn},
                     "vpc_config": {"subnet_ids": peer_subnets, "security_groups_ids": [peer_sg.id]}}]),
                replication_info_list={
                    "source_kafka_cluster_arn": kafka.arn, "target_kafka_cluster_arn": peer_cluster.arn,
                    "target_compression_type": "NONE",
                    "topic_replication": structs([{
                        "topics_to_replicate": topic_names, "copy_topic_configurations": True,
                        "copy_access_control_lists_for_topics": True, "detect_and_copy_new_topics": True,
                        "starting_position": {"type": "EARLIEST"}}]),
                    "consumer_group_replication": structs([{
                        "consumer_groups_to_replicate": consumer_groups, "synchronise_consumer_group_offsets": True,
                        "detect_and_copy_new_consumer_groups": True}])},
                depends_on=[kafka.replicator_policy] if kafka.replicator_policy else None, tags=tags())
