"""What each AWS-managed integration documents it needs, checked on the synthesized JSON.

Each test is written from AWS's documented minimum policy for the integration (named in the
docstring), not from what the stacks happen to contain: a service principal that AWS would
refuse, or a documented permission that is missing, fails here before `terraform apply` would.
"""
from __future__ import annotations

import json
from fnmatch import fnmatchcase

import pytest

from tests.infra.conftest import ref

GLOBAL = "global"


def stack(region: str) -> str:
    return f"region-{region}"


def statements(doc: str | dict) -> list[dict]:
    doc = json.loads(doc) if isinstance(doc, str) else doc
    st = doc["Statement"]
    return st if isinstance(st, list) else [st]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def allows(statement: dict, action: str) -> bool:
    """Does this Allow statement grant `action` (IAM wildcards, case-insensitive)?"""
    return statement["Effect"] == "Allow" and any(
        fnmatchcase(action.lower(), a.lower()) for a in as_list(statement.get("Action", [])))


def services(statement: dict) -> list[str]:
    principal = statement.get("Principal", {})
    return as_list(principal.get("Service", [])) if isinstance(principal, dict) else []


def granted(policies: list[str | dict], action: str) -> bool:
    return any(allows(s, action) for p in policies for s in statements(p))


def role_policies(synth, stack_name: str, role_logical: str) -> list[str]:
    """Inline policies of one role (aws_iam_role_policy.role = the role's id)."""
    role_id = ref("aws_iam_role", role_logical, "id")
    return [p["policy"] for p in synth.resources(stack_name, "aws_iam_role_policy").values() if p["role"] == role_id]


def managed_policies(synth, stack_name: str, role_logical: str) -> set[str]:
    role_name = ref("aws_iam_role", role_logical, "name")
    return {a["policy_arn"].rsplit("/", 1)[-1] for a in synth.resources(stack_name, "aws_iam_role_policy_attachment")
            .values() if a["role"] == role_name}


def role_named(synth, stack_name: str, name: str) -> str:
    [logical] = [k for k, r in synth.resources(stack_name, "aws_iam_role").items() if r["name"] == name]
    return logical


def key_policy_of(synth, stack_name: str, key_ref: str) -> tuple[str, list[dict]]:
    """The key a `${aws_kms_key.x.arn}`-style reference points at: its region and statements."""
    rtype, logical = key_ref.strip("${}").split(".")[:2]
    key = synth.resources(stack_name, rtype)[logical]
    return key.get("region"), statements(key["policy"])


# ---- CloudWatch Logs with KMS -------------------------------------------------------------
# AWS: "Encrypt log data in CloudWatch Logs using AWS KMS" -- the key policy allows the regional
# principal logs.<region>.amazonaws.com kms:Encrypt*, Decrypt*, ReEncrypt*, GenerateDataKey*,
# Describe*, conditioned on kms:EncryptionContext:aws:logs:arn.
LOGS_KMS_ACTIONS = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey",
                    "kms:DescribeKey"]


def encrypted_log_groups(synth, cfg):
    for region in cfg["regions"]:
        for name, group in synth.resources(stack(region), "aws_cloudwatch_log_group").items():
            yield stack(region), region, name, group
    for name, group in synth.resources(GLOBAL, "aws_cloudwatch_log_group").items():
        yield GLOBAL, group.get("region", cfg["primary_region"]), name, group


def test_every_encrypted_log_group_key_lets_cloudwatch_logs_of_its_region_use_it(synth, cfg):
    seen = 0
    for stack_name, region, name, group in encrypted_log_groups(synth, cfg):
        assert group.get("kms_key_id"), f"{stack_name}/{name}: log group without a CMK"
        key_region, key_statements = key_policy_of(synth, stack_name, group["kms_key_id"])
        assert key_region in (None, region), (name, key_region)
        [st] = [s for s in key_statements if f"logs.{region}.amazonaws.com" in services(s)]
        for action in LOGS_KMS_ACTIONS:
            assert allows(st, action), (name, action)
        context = st["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
        assert context.startswith("arn:") and f":logs:{region}:" in context and context.endswith(":log-group:*")
        seen += 1
    assert seen >= 10


def test_no_key_policy_names_the_global_logs_principal(synth, cfg):
    """logs.amazonaws.com is not the principal CloudWatch Logs uses with KMS (defect 1)."""
    for stack_name in synth.stacks:
        for rtype in ("aws_kms_key", "aws_kms_replica_key"):
            for name, key in synth.resources(stack_name, rtype).items():
                for st in statements(key["policy"]):
                    assert "logs.amazonaws.com" not in services(st), (stack_name, name)


# ---- CloudTrail ---------------------------------------------------------------------------
# AWS: "Configure AWS KMS key policies for CloudTrail" -- cloudtrail.amazonaws.com may
# kms:GenerateDataKey* with kms:EncryptionContext:aws:cloudtrail:arn of the account's trails, and
# kms:DescribeKey; the trail's CloudWatch Logs role may logs:CreateLogStream and logs:PutLogEvents.

def test_cloudtrail_may_encrypt_with_the_trail_key_as_documented(synth, cfg):
    _, trail = synth.one(GLOBAL, "aws_cloudtrail")
    key_region, key_statements = key_policy_of(synth, GLOBAL, trail["kms_key_id"])
    assert key_region in (None, cfg["primary_region"])
    trail_sts = [s for s in key_statements if "cloudtrail.amazonaws.com" in services(s)]
    [encrypt] = [s for s in trail_sts if allows(s, "kms:GenerateDataKey")]
    assert encrypt["Condition"]["StringLike"]["kms:EncryptionContext:aws:cloudtrail:arn"].endswith(":trail/*")
    assert encrypt["Condition"]["StringEquals"]["aws:SourceArn"].endswith(f":trail/{trail['name']}")
    assert any(allows(s, "kms:DescribeKey") for s in trail_sts)


def test_cloudtrail_logs_role_is_trusted_by_cloudtrail_and_may_deliver(synth):
    _, trail = synth.one(GLOBAL, "aws_cloudtrail")
    role_logical = trail["cloud_watch_logs_role_arn"].split(".")[1]
    role = synth.resources(GLOBAL, "aws_iam_role")[role_logical]
    assert services(statements(role["assume_role_policy"])[0]) == ["cloudtrail.amazonaws.com"]
    policies = role_policies(synth, GLOBAL, role_logical)
    assert granted(policies, "logs:CreateLogStream") and granted(policies, "logs:PutLogEvents")


# ---- service principals -------------------------------------------------------------------
# Every Service principal the stacks name, in trust policies, key policies, bucket and
# resource policies and Lambda permissions, must be one AWS documents for that integration.
DOCUMENTED_PRINCIPALS = {
    "lambda.amazonaws.com", "apigateway.amazonaws.com", "kafka.amazonaws.com", "cloudtrail.amazonaws.com",
    "config.amazonaws.com", "vpc-flow-logs.amazonaws.com", "events.amazonaws.com", "dynamodb.amazonaws.com",
    "sns.amazonaws.com", "sqs.amazonaws.com", "s3.amazonaws.com", "cloudwatch.amazonaws.com",
    "delivery.logs.amazonaws.com",
}


def every_principal(synth):
    for stack_name, doc in synth.stacks.items():
        for rtype, resources in doc.get("resource", {}).items():
            for name, res in resources.items():
                for attr in ("assume_role_policy", "policy", "policy_document"):
                    if isinstance(res.get(attr), str) and res[attr].lstrip().startswith("{"):
                        for st in statements(res[attr]):
                            for svc in services(st):
                                yield stack_name, f"{rtype}.{name}", svc
                if rtype == "aws_lambda_permission":
                    yield stack_name, f"{rtype}.{name}", res["principal"]


def test_every_service_principal_is_a_documented_one(synth, cfg):
    regional_logs = {f"logs.{r}.amazonaws.com" for r in cfg["regions"]}
    found = set()
    for stack_name, where, svc in every_principal(synth):
        assert svc in DOCUMENTED_PRINCIPALS | regional_logs, (stack_name, where, svc)
        found.add(svc)
    assert regional_logs <= found


@pytest.fixture(params=["us-east-1", "eu-west-1"])
def region(request, cfg):
    assert request.param in cfg["regions"]
    return request.param


# ---- MSK Replicator -----------------------------------------------------------------------
# AWS (MSK, "Prepare source and target clusters", "Network requirements"): for cross-region
# replication the provisioned source cluster has multi-VPC private connectivity for IAM and a
# cluster policy letting kafka.amazonaws.com kafka:CreateVpcConnection, kafka:GetBootstrapBrokers
# and kafka:DescribeClusterV2. MSK turns multi-VPC connectivity on only for an ACTIVE cluster.
REPLICATOR_CLUSTER_POLICY = ["kafka:CreateVpcConnection", "kafka:GetBootstrapBrokers", "kafka:DescribeClusterV2"]


@pytest.fixture(scope="module")
def create_step(tmp_path_factory, cfg):
    """One regional stack as its first apply synthesizes it (INFRA_REPLICATION=off)."""
    from cdktn import App

    from infra.stacks.regional_stack import RegionalStack

    mp = pytest.MonkeyPatch()
    mp.setenv("INFRA_REPLICATION", "off")
    try:
        out = tmp_path_factory.mktemp("create-step")
        app = App(outdir=str(out))
        RegionalStack(app, "r", region="eu-west-1", cfg=cfg)
        app.synth()
    finally:
        mp.undo()
    return json.loads((out / "stacks" / "r" / "cdk.tf.json").read_text())["resource"]


def test_the_create_step_asks_msk_for_no_multi_vpc_connectivity(create_step):
    """CreateCluster with multi-VPC connectivity fails (defect 2): the first apply leaves it out."""
    [cluster] = create_step["aws_msk_cluster"].values()
    assert "vpc_connectivity" not in cluster["broker_node_group_info"]["connectivity_info"]
    assert "aws_msk_cluster_policy" not in create_step and "aws_msk_replicator" not in create_step


def test_the_replication_step_turns_multi_vpc_on_with_the_documented_cluster_policy(synth, region):
    logical, cluster = synth.one(stack(region), "aws_msk_cluster")
    vpc = cluster["broker_node_group_info"]["connectivity_info"]["vpc_connectivity"]
    assert vpc == {"client_authentication": {"sasl": {"iam": True}}}
    policy_logical, cluster_policy = synth.one(stack(region), "aws_msk_cluster_policy")
    assert cluster_policy["cluster_arn"] == ref("aws_msk_cluster", logical, "arn")
    [st] = statements(cluster_policy["policy"])
    assert services(st) == ["kafka.amazonaws.com"]
    assert sorted(as_list(st["Action"])) == sorted(REPLICATOR_CLUSTER_POLICY)
    for rep in synth.resources(stack(region), "aws_msk_replicator").values():
        assert f"aws_msk_cluster_policy.{policy_logical}" in rep["depends_on"]


# AWS managed policy AWSMSKReplicatorExecutionRole (the Replicator's service execution role):
# cluster, topic and group permissions on source and target, including WriteDataIdempotently.
# Each action is checked on the resource type it authorizes (MSK: "IAM access control",
# semantics of actions and resources): the managed policy also lists topic actions on its
# cluster statement, where they authorize nothing.
REPLICATOR_ROLE = {
    "cluster": ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster", "kafka-cluster:AlterCluster",
                "kafka-cluster:WriteDataIdempotently"],
    "topic": ["kafka-cluster:DescribeTopic", "kafka-cluster:CreateTopic", "kafka-cluster:AlterTopic",
              "kafka-cluster:WriteData", "kafka-cluster:ReadData", "kafka-cluster:DescribeTopicDynamicConfiguration",
              "kafka-cluster:AlterTopicDynamicConfiguration"],
    "group": ["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"],
}


def resource_grants(policies: list[str], action: str, resource: str) -> bool:
    return any(allows(s, action) and any(fnmatchcase(resource, r) for r in as_list(s["Resource"]))
               for p in policies for s in statements(p))


def test_replicator_role_has_the_documented_permissions_on_both_clusters(synth, cfg, region):
    [rep] = [r for r in synth.resources(stack(region), "aws_msk_replicator").values()]
    role_logical = rep["service_execution_role_arn"].split(".")[1]
    role = synth.resources(stack(region), "aws_iam_role")[role_logical]
    assert services(statements(role["assume_role_policy"])[0]) == ["kafka.amazonaws.com"]
    policies = role_policies(synth, stack(region), role_logical)
    account = "${data.aws_caller_identity.current.account_id}"
    for r in cfg["regions"]:  # the source here and the target in the peer region
        base = f"arn:${{data.aws_partition.current.partition}}:kafka:{r}:{account}"
        name = f"payments-{r}"
        for kind, resource in (("cluster", f"{base}:cluster/{name}/uuid-1"),
                               ("topic", f"{base}:topic/{name}/uuid-1/payments.initiated"),
                               ("group", f"{base}:group/{name}/uuid-1/payments-risk-payments.validated")):
            for action in REPLICATOR_ROLE[kind]:
                assert resource_grants(policies, action, resource), (r, kind, action)


# ---- Lambda MSK event source mapping --------------------------------------------------------
# AWS: "Configuring Lambda permissions for Amazon MSK event source mappings" (the managed policy
# AWSLambdaMSKExecutionRole holds the minimum), plus the on-failure destination's sqs:SendMessage
# and, for a queue under a CMK, kms:Decrypt and kms:GenerateDataKey.
MSK_ESM_ACTIONS = ["kafka:DescribeClusterV2", "kafka:GetBootstrapBrokers", "ec2:CreateNetworkInterface",
                   "ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcs", "ec2:DeleteNetworkInterface",
                   "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups", "logs:CreateLogGroup",
                   "logs:CreateLogStream", "logs:PutLogEvents"]
ON_FAILURE_SQS_ACTIONS = ["sqs:SendMessage", "kms:Decrypt", "kms:GenerateDataKey"]
# What the AWS managed policies the stacks attach grant (their documented JSON), so the test can
# read the role whole without an AWS account.
MANAGED = {
    "AWSLambdaVPCAccessExecutionRole": [
        {"Effect": "Allow", "Resource": "*", "Action": [
            "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "ec2:CreateNetworkInterface",
            "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets", "ec2:DeleteNetworkInterface",
            "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"]}],
    "AWSXRayDaemonWriteAccess": [
        {"Effect": "Allow", "Resource": "*", "Action": [
            "xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules",
            "xray:GetSamplingTargets", "xray:GetSamplingStatisticSummaries"]}],
}


def lambda_role(synth, region):
    logical = role_named(synth, stack(region), f"payments-lambda-{region}")
    docs = role_policies(synth, stack(region), logical)
    for managed in managed_policies(synth, stack(region), logical):
        docs.append({"Statement": MANAGED[managed]})
    return docs


def test_lambda_role_has_what_an_msk_event_source_mapping_needs(synth, region):
    """ec2:DescribeVpcs and ec2:DescribeSecurityGroups were missing (defect 4)."""
    policies = lambda_role(synth, region)
    for action in MSK_ESM_ACTIONS + ON_FAILURE_SQS_ACTIONS:
        assert granted(policies, action), action


def test_on_failure_queues_are_reachable_from_the_cluster_subnets(synth, region):
    """Lambda needs a VPC endpoint for an MSK mapping's on-failure destination (defect 5)."""
    cluster_logical, cluster = synth.one(stack(region), "aws_msk_cluster")
    subnets = cluster["broker_node_group_info"]["client_subnets"]
    endpoints = [e for e in synth.resources(stack(region), "aws_vpc_endpoint").values()
                 if e["service_name"] == f"com.amazonaws.{region}.sqs"]
    [sqs] = endpoints
    assert sqs["vpc_endpoint_type"] == "Interface" and sqs["private_dns_enabled"] is True
    assert sorted(sqs["subnet_ids"]) == sorted(subnets)
    [sg_ref] = sqs["security_group_ids"]
    sg = synth.resources(stack(region), "aws_security_group")[sg_ref.split(".")[1]]
    assert any(r["from_port"] <= 443 <= r["to_port"] for r in sg["ingress"])
    mappings = [m for m in synth.resources(stack(region), "aws_lambda_event_source_mapping").values()
                if m["event_source_arn"] == ref("aws_msk_cluster", cluster_logical, "arn")]
    assert mappings and all(m["destination_config"]["on_failure"]["destination_arn"].startswith("${aws_sqs_queue.")
                            for m in mappings)


def test_msk_mappings_bound_retries_and_record_age(synth, cfg, region):
    """Without limits a failing batch is retried until retention expires, holding its partition
    (defect 5); Lambda offers the limits for Kafka in provisioned mode only."""
    esm = cfg["lambda"]["esm"]
    cluster_logical, _ = synth.one(stack(region), "aws_msk_cluster")
    mappings = [m for m in synth.resources(stack(region), "aws_lambda_event_source_mapping").values()
                if m["event_source_arn"] == ref("aws_msk_cluster", cluster_logical, "arn")]
    for m in mappings:
        pollers = m["provisioned_poller_config"]
        assert 1 <= pollers["minimum_pollers"] <= pollers["maximum_pollers"]
        assert 0 <= m["maximum_retry_attempts"] == esm["retry_attempts"] <= 10_000
        assert 60 <= m["maximum_record_age_in_seconds"] == esm["max_record_age_s"] <= 604_800
        assert m["bisect_batch_on_function_error"] is True
        # the handlers' partial-batch answers count: without this, failed records are skipped as done
        assert m["function_response_types"] == ["ReportBatchItemFailures"]
