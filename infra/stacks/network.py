"""The region's network: a VPC with 3 private subnets in 3 AZs (or an existing VPC).

Private subnets hold the MSK brokers and the Lambdas; one NAT gateway per AZ gives
the Lambdas a way out to PSPs and AWS APIs; DynamoDB is reached through a gateway
endpoint. SQS has an interface endpoint in the private subnets (in an existing VPC too):
the MSK event source mappings send records they give up on to SQS from the cluster's
subnets, and Lambda requires a VPC endpoint for that on-failure destination. Flow logs go
to an encrypted log group.
"""
from __future__ import annotations

import ipaddress
from typing import Any

from cdktn_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktn_provider_aws.default_security_group import DefaultSecurityGroup
from cdktn_provider_aws.eip import Eip
from cdktn_provider_aws.flow_log import FlowLog
from cdktn_provider_aws.iam_role import IamRole
from cdktn_provider_aws.iam_role_policy import IamRolePolicy
from cdktn_provider_aws.internet_gateway import InternetGateway
from cdktn_provider_aws.nat_gateway import NatGateway
from cdktn_provider_aws.route_table import RouteTable
from cdktn_provider_aws.route_table_association import RouteTableAssociation
from cdktn_provider_aws.security_group import SecurityGroup
from cdktn_provider_aws.subnet import Subnet
from cdktn_provider_aws.vpc import Vpc
from cdktn_provider_aws.vpc_endpoint import VpcEndpoint
from constructs import Construct

from .common import structs, allow, assume_role, name, policy, tags


class Network(Construct):
    """`vpc_id`, `vpc_cidr` and `private_subnet_ids` (3, one per AZ) for the rest of the stack."""

    def __init__(self, scope: Construct, id: str, *, region: str, rcfg: dict[str, Any], key_arn: str) -> None:
        super().__init__(scope, id)
        vcfg = rcfg["vpc"]
        if not vcfg.get("create"):
            self.vpc_id = vcfg["vpc_id"]
            self.vpc_cidr = vcfg["cidr"]
            self.private_subnet_ids = list(vcfg["private_subnet_ids"])
            self.sqs_endpoint = self._sqs_endpoint(region)
            return
        cidr = ipaddress.ip_network(vcfg["cidr"])
        blocks = list(cidr.subnets(new_prefix=20))
        vpc = Vpc(self, "vpc", cidr_block=str(cidr), enable_dns_hostnames=True, enable_dns_support=True,
                  tags=tags(Name=name(region)))
        self.vpc_id, self.vpc_cidr = vpc.id, str(cidr)
        # Deny everything on the default security group; every resource gets its own.
        DefaultSecurityGroup(self, "default-sg", vpc_id=vpc.id, ingress=[], egress=[], tags=tags())
        igw = InternetGateway(self, "igw", vpc_id=vpc.id, tags=tags(Name=name(region)))
        public_rt = RouteTable(self, "public-rt", vpc_id=vpc.id,
                               route=structs([{"cidr_block": "0.0.0.0/0", "gateway_id": igw.id}]), tags=tags(tier="public"))
        private_rts = []
        self.private_subnet_ids = []
        for i, az in enumerate(rcfg["azs"]):
            public = Subnet(self, f"public-{az}", vpc_id=vpc.id, availability_zone=az, cidr_block=str(blocks[i + 8]),
                            map_public_ip_on_launch=False, tags=tags(tier="public", Name=name("public", az)))
            RouteTableAssociation(self, f"public-rta-{az}", subnet_id=public.id, route_table_id=public_rt.id)
            eip = Eip(self, f"nat-eip-{az}", domain="vpc", tags=tags(Name=name("nat", az)))
            nat = NatGateway(self, f"nat-{az}", allocation_id=eip.id, subnet_id=public.id,
                             tags=tags(Name=name("nat", az)))
            private = Subnet(self, f"private-{az}", vpc_id=vpc.id, availability_zone=az, cidr_block=str(blocks[i]),
                             tags=tags(tier="private", Name=name("private", az)))
            rt = RouteTable(self, f"private-rt-{az}", vpc_id=vpc.id,
                            route=structs([{"cidr_block": "0.0.0.0/0", "nat_gateway_id": nat.id}]), tags=tags(tier="private"))
            RouteTableAssociation(self, f"private-rta-{az}", subnet_id=private.id, route_table_id=rt.id)
            private_rts.append(rt.id)
            self.private_subnet_ids.append(private.id)
        self.sqs_endpoint = self._sqs_endpoint(region)
        VpcEndpoint(self, "dynamodb-endpoint", vpc_id=vpc.id, service_name=f"com.amazonaws.{region}.dynamodb",
                    vpc_endpoint_type="Gateway", route_table_ids=private_rts, tags=tags())
        flow_logs = CloudwatchLogGroup(self, "flow-logs", name=f"/payments/{region}/vpc-flow-logs",
                                       retention_in_days=365, kms_key_id=key_arn, tags=tags())
        flow_role = IamRole(self, "flow-role", name=name("flow-logs", region),
                            assume_role_policy=assume_role("vpc-flow-logs.amazonaws.com"), tags=tags())
        IamRolePolicy(self, "flow-role-policy", role=flow_role.id, name="deliver-flow-logs", policy=policy(
            allow(["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"], f"{flow_logs.arn}:*")))
        FlowLog(self, "flow-log", vpc_id=vpc.id, traffic_type="ALL", log_destination=flow_logs.arn,
                iam_role_arn=flow_role.arn, tags=tags())

    def _sqs_endpoint(self, region: str) -> VpcEndpoint:
        """SQS reachable from the private subnets by its public name (private DNS)."""
        sg = SecurityGroup(
            self, "sqs-endpoint-sg", name=name("sqs-endpoint", region), vpc_id=self.vpc_id,
            description="SQS interface endpoint: HTTPS from the VPC (event source mapping pollers, Lambdas)",
            ingress=structs([{"description": "HTTPS from the VPC", "protocol": "tcp", "from_port": 443,
                              "to_port": 443, "cidr_blocks": [self.vpc_cidr]}]),
            egress=structs([{"description": "replies within the VPC", "protocol": "tcp", "from_port": 443,
                             "to_port": 443, "cidr_blocks": [self.vpc_cidr]}]),
            tags=tags())
        return VpcEndpoint(self, "sqs-endpoint", vpc_id=self.vpc_id, service_name=f"com.amazonaws.{region}.sqs",
                           vpc_endpoint_type="Interface", subnet_ids=self.private_subnet_ids,
                           security_group_ids=[sg.id], private_dns_enabled=True, tags=tags(Name=name("sqs", region)))
