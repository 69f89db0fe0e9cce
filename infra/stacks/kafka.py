"""Amazon MSK in the region: provisioned Graviton brokers in 3 AZs, or MSK Serverless.

TLS in transit (client-broker and in-cluster), IAM client auth only, encryption at
rest with the region's CMK, broker logs to CloudWatch.

Cross-region MSK Replicator needs the (provisioned) source cluster to have multi-VPC private
connectivity for IAM and a cluster policy for kafka.amazonaws.com (MSK: "Prepare source and
target clusters"), but MSK turns multi-VPC connectivity on only for an ACTIVE cluster: asked
at creation, CreateCluster fails. So `multi_vpc` is the second step of a region's rollout
(README "Replication bootstrap"): the create step (INFRA_REPLICATION=off) builds the cluster
without it, the replication step turns it on in place and adds the policy and replicators.
Switch `msk.serverless` in infra/config.json to true for MSK Serverless (IAM auth,
TLS and at-rest encryption are built in there; broker type, storage and logs are not
configurable).
"""
from __future__ import annotations

from typing import Any

from cdktn_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktn_provider_aws.msk_cluster import MskCluster
from cdktn_provider_aws.msk_cluster_policy import MskClusterPolicy
from cdktn_provider_aws.msk_configuration import MskConfiguration
from cdktn_provider_aws.msk_serverless_cluster import MskServerlessCluster
from cdktn_provider_aws.security_group import SecurityGroup
from constructs import Construct

from .common import structs, ACCOUNT, policy, tags

IAM_TLS_PORT = 9098  # MSK: IAM auth over TLS


def cluster_name(region: str) -> str:
    return f"payments-{region}"


def msk_security_group_name(region: str) -> str:
    return f"payments-msk-{region}"


class Kafka(Construct):
    """`arn`, `bootstrap` (IAM/TLS brokers), `security_group_id`, `subnet_ids`."""

    def __init__(self, scope: Construct, id: str, *, region: str, cfg: dict[str, Any], vpc_id: str,
                 vpc_cidr: str, subnet_ids: list[str], key_arn: str, client_sg_id: str, multi_vpc: bool) -> None:
        super().__init__(scope, id)
        mcfg = cfg["msk"]
        self.subnet_ids = subnet_ids
        self.replicator_policy: MskClusterPolicy | None = None
        self.serverless = bool(mcfg["serverless"])
        sg = SecurityGroup(
            self, "sg", name=msk_security_group_name(region), vpc_id=vpc_id,
            description="MSK brokers: IAM/TLS from the platform Lambdas, the event source mappings and Replicator",
            ingress=structs([
                {"description": "Kafka IAM/TLS from platform Lambdas", "protocol": "tcp", "from_port": IAM_TLS_PORT,
                 "to_port": IAM_TLS_PORT, "security_groups": [client_sg_id]},
                {"description": "Kafka IAM/TLS from ESM pollers and Replicator (same SG)", "protocol": "tcp",
                 "from_port": IAM_TLS_PORT, "to_port": IAM_TLS_PORT, "self": True}]),
            egress=structs([
                {"description": "ESM pollers and Replicator to brokers", "protocol": "tcp", "from_port": IAM_TLS_PORT,
                 "to_port": IAM_TLS_PORT, "self": True},
                {"description": "ESM pollers to Lambda and STS APIs", "protocol": "tcp", "from_port": 443,
                 "to_port": 443, "cidr_blocks": ["0.0.0.0/0"]}]),
            tags=tags())
        self.security_group_id = sg.id
        if self.serverless:
            cluster = MskServerlessCluster(
                self, "serverless", cluster_name=cluster_name(region),
                client_authentication={"sasl": {"iam": {"enabled": True}}},
                vpc_config=structs([{"subnet_ids": subnet_ids, "security_group_ids": [sg.id]}]), tags=tags())
            self.arn, self.bootstrap = cluster.arn, cluster.bootstrap_brokers_sasl_iam
            self.cluster = cluster
            return
        logs = CloudwatchLogGroup(self, "broker-logs", name=f"/payments/{region}/msk-brokers",
                                  retention_in_days=mcfg["log_retention_days"], kms_key_id=key_arn, tags=tags())
        server_properties = "\n".join([
            "auto.create.topics.enable=false",  # topics come from infra (topic admin Lambda), never from typos
            f"default.replication.factor={mcfg['replication_factor']}",
            f"min.insync.replicas={mcfg['min_insync_replicas']}",
            "unclean.leader.election.enable=false",
            "allow.everyone.if.no.acl.found=false",
        ])
        configuration = MskConfiguration(self, "config", name=f"payments-{region}",
                                          kafka_versions=[mcfg["kafka_version"]], server_properties=server_properties)
        azs = len(subnet_ids)
        cluster = MskCluster(
            self, "cluster", cluster_name=cluster_name(region), kafka_version=mcfg["kafka_version"],
            number_of_broker_nodes=mcfg["brokers_per_az"] * azs,
            broker_node_group_info={
                "instance_type": mcfg["broker_instance_type"], "client_subnets": subnet_ids,
                "security_groups": [sg.id], "storage_info": {"ebs_storage_info": {"volume_size": mcfg["ebs_volume_gb"]}},
                "connectivity_info": {"public_access": {"type": "DISABLED"},
                                      **({"vpc_connectivity": {"client_authentication": {"sasl": {"iam": True}}}}
                                         if multi_vpc else {})}},
            encryption_info={"encryption_at_rest_kms_key_arn": key_arn,
                             "encryption_in_transit": {"client_broker": "TLS", "in_cluster": True}},
            client_authentication={"sasl": {"iam": True}, "unauthenticated": False},
            configuration_info={"arn": configuration.arn, "revision": configuration.latest_revision},
            logging_info={"broker_logs": {"cloudwatch_logs": {"enabled": True, "log_group": logs.name}}},
            enhanced_monitoring="PER_TOPIC_PER_PARTITION",
            open_monitoring={"prometheus": {"jmx_exporter": {"enabled_in_broker": True},
                                            "node_exporter": {"enabled_in_broker": True}}},
            tags=tags())
        if not multi_vpc:
            self.arn, self.bootstrap = cluster.arn, cluster.bootstrap_brokers_sasl_iam
            self.cluster = cluster
            return
        # MSK Replicator (a service principal) reads this cluster over multi-VPC connectivity.
        self.replicator_policy = MskClusterPolicy(self, "replicator-policy", cluster_arn=cluster.arn, policy=policy({
            "Sid": "ReplicatorReads", "Effect": "Allow", "Principal": {"Service": "kafka.amazonaws.com"},
            "Action": ["kafka:CreateVpcConnection", "kafka:GetBootstrapBrokers", "kafka:DescribeClusterV2"],
            "Resource": cluster.arn, "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}}}),
            depends_on=[cluster])
        self.arn, self.bootstrap = cluster.arn, cluster.bootstrap_brokers_sasl_iam
        self.cluster = cluster
