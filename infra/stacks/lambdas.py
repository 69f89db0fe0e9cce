"""The platform's Lambdas in one region, from `chalice package`'s deployment.zip.

One function per stage (handler app.<stage>, as chalice_app/app.py names them), the
API (app.app), the outbox relay (app.outbox_relay), reconciliation of unknown PSP outcomes
(app.reconcile_unknown_outcomes) and the lease keeper (app.lease_keeper), the last two every minute by
an EventBridge rule; arm64, X-Ray tracing with the
ADOT layer, reserved concurrency derived from partitions (settings.reserved_concurrency),
the env var names of chalicelib.config. Each stage topic gets an MSK event source mapping
with an SQS on-failure destination (reached through the SQS interface endpoint, network.py)
and, in provisioned mode, retry and record-age limits so a failing batch cannot hold its
partition until retention; the relay reads the table's stream in this region.
"""
from __future__ import annotations

import json
from typing import Any

from cdktn_provider_aws.cloudwatch_event_rule import CloudwatchEventRule
from cdktn_provider_aws.cloudwatch_event_target import CloudwatchEventTarget
from cdktn_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktn_provider_aws.data_aws_dynamodb_table import DataAwsDynamodbTable
from cdktn_provider_aws.iam_role import IamRole
from cdktn_provider_aws.iam_role_policy import IamRolePolicy
from cdktn_provider_aws.iam_role_policy_attachment import IamRolePolicyAttachment
from cdktn_provider_aws.lambda_code_signing_config import LambdaCodeSigningConfig
from cdktn_provider_aws.lambda_event_source_mapping import LambdaEventSourceMapping
from cdktn_provider_aws.lambda_function import LambdaFunction
from cdktn_provider_aws.lambda_permission import LambdaPermission
from cdktn_provider_aws.security_group import SecurityGroup
from cdktn_provider_aws.signer_signing_profile import SignerSigningProfile
from cdktn_provider_aws.sqs_queue import SqsQueue
from constructs import Construct

from .. import settings
from ..settings import platform_config as pc
from .artifacts import source_hash, tf_path
from .common import ACCOUNT, PARTITION, allow, assume_role, name, policy, structs, tags
from .secrets import PEPPER_SECRET_NAME

# The lease keeper's timeout is a minute whatever lambda.timeout_s says: app.KEEPER_RUN_S (50 s of
# renewals per invocation) is chosen to end inside it, and the next scheduled invocation carries on.
KEEPER_TIMEOUT_S = 60
# What the leases need of the control table (adapters/aws/dynamodb_leases.py): single-item conditional
# writes, strongly consistent reads, deletes of intents; MRSC has no transactions, so no batch actions.
CONTROL_ACTIONS = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
                   "dynamodb:Query", "dynamodb:Scan"]

# The ADOT layer's collector extension listens on localhost:4318; chalicelib.observability.tracing runs
# its own SDK (X-Ray id generator and propagator) and exports OTLP to it -- no exec wrapper, so
# the layer's auto-instrumentation does not install a second tracer provider.
OTEL_ENV = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318", "OTEL_PROPAGATORS": "xray"}


def consumer_group(region: str, stage: str, topic: str) -> str:
    """A stage's consumer group in one region. Named per region: MSK Replicator copies a group's
    offsets into the same-named group of the peer cluster, and AWS documents that the sync does not
    land while that group is active there -- which a shared name always would be (the peer's own
    stage). Per-region names keep each region's offsets its own, and the copy of a region's offsets
    (for replaying its mirrored topics) lands."""
    return f"payments-{region}-{stage}-{topic}"


def lambda_security_group(scope: Construct, region: str, vpc_id: str, vpc_cidr: str) -> SecurityGroup:
    return SecurityGroup(
        scope, "lambda-sg", name=f"payments-lambda-{region}", vpc_id=vpc_id, description="platform Lambdas",
        egress=structs([{"description": "HTTPS to PSPs and AWS APIs", "protocol": "tcp", "from_port": 443, "to_port": 443,
                 "cidr_blocks": ["0.0.0.0/0"]},
                {"description": "Kafka IAM/TLS to MSK brokers", "protocol": "tcp", "from_port": 9098,
                 "to_port": 9098, "cidr_blocks": [vpc_cidr]}]),
        tags=tags())


class Functions(Construct):
    def __init__(self, scope: Construct, id: str, *, region: str, cfg: dict[str, Any], env: dict[str, str],
                 subnet_ids: list[str], security_group_id: str, kafka_arn: str, key_arn: str,
                 platform_key_alias: str) -> None:
        super().__init__(scope, id)
        lcfg, table_name = cfg["lambda"], cfg["dynamodb"]["table_name"]
        self.region, self.cfg, self.env = region, cfg, env
        self.subnet_ids, self.sg, self.key_arn = subnet_ids, security_group_id, key_arn
        table = f"arn:{PARTITION}:dynamodb:{region}:{ACCOUNT}:table/{table_name}"
        # The control table replica this region calls (its own, or one in the table's region set).
        self.control_arn = (f"arn:{PARTITION}:dynamodb:{settings.control_region(cfg, region)}:{ACCOUNT}:"
                            f"table/{cfg['control']['table_name']}")
        cluster = f"arn:{PARTITION}:kafka:{region}:{ACCOUNT}"
        self.role = IamRole(self, "role", name=name("lambda", region),
                            assume_role_policy=assume_role("lambda.amazonaws.com"), tags=tags())
        for managed in ("AWSLambdaVPCAccessExecutionRole", "AWSXRayDaemonWriteAccess"):
            IamRolePolicyAttachment(self, f"role-{managed}", role=self.role.name,
                                    policy_arn=f"arn:{PARTITION}:iam::aws:policy/"
                                               + ("service-role/" if managed.startswith("AWSLambda") else "")
                                               + managed)
        # ec2:DescribeVpcs and DescribeSecurityGroups: MSK event source mappings describe the
        # cluster's network (AWSLambdaMSKExecutionRole); the VPC access managed policy has neither.
        IamRolePolicy(self, "role-policy", role=self.role.id, name="payments-platform", policy=policy(
            allow(["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:PutItem",
                   "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem",
                   "dynamodb:ConditionCheckItem"],  # transactions are authorized per item action
                  [table, f"{table}/index/*"], sid="Table"),
            allow(["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"],
                  f"{table}/stream/*", sid="Stream"),
            allow(CONTROL_ACTIONS, self.control_arn, sid="ControlTable"),
            allow(["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                  [f"arn:{PARTITION}:kms:{region}:{ACCOUNT}:key/*"], sid="Keys",
                  condition={"ForAnyValue:StringEquals": {"kms:ResourceAliases": [platform_key_alias]}}),
            allow(["kms:Decrypt", "kms:GenerateDataKey"], key_arn, sid="InfraKey"),
            # The API key pepper, read once per cold start (its replica in this region).
            allow(["secretsmanager:GetSecretValue"],
                  f"arn:{PARTITION}:secretsmanager:{region}:{ACCOUNT}:secret:{PEPPER_SECRET_NAME}-*", sid="Pepper"),
            allow(["kafka:DescribeCluster", "kafka:DescribeClusterV2"], kafka_arn, sid="MskDescribe"),
            # These support no resource-level permissions (service authorization reference): "*".
            allow(["kafka:GetBootstrapBrokers", "dynamodb:ListStreams", "ec2:DescribeVpcs",
                   "ec2:DescribeSecurityGroups"], "*", sid="NoResourceLevel"),
            allow(["kafka-cluster:Connect", "kafka-cluster:DescribeCluster", "kafka-cluster:DescribeTopic",
                   "kafka-cluster:CreateTopic", "kafka-cluster:AlterTopic", "kafka-cluster:DescribeTopicDynamicConfiguration",
                   "kafka-cluster:AlterTopicDynamicConfiguration", "kafka-cluster:ReadData",
                   "kafka-cluster:WriteData", "kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"],
                  [f"{cluster}:cluster/payments-{region}/*", f"{cluster}:topic/payments-{region}/*",
                   f"{cluster}:group/payments-{region}/*"], sid="KafkaData"),
            allow(["sqs:SendMessage"], f"arn:{PARTITION}:sqs:{region}:{ACCOUNT}:payments-*", sid="FailureQueues")))
        profile = SignerSigningProfile(self, "signing-profile", platform_id="AWSLambda-SHA384-ECDSA",
                                       name_prefix="payments", tags=tags())
        # Warn, not Enforce: deployment.zip is unsigned until CI signs it with this profile.
        self.signing = LambdaCodeSigningConfig(
            self, "code-signing", description="payments Lambda code signing",
            allowed_publishers={"signing_profile_version_arns": [profile.version_arn]},
            policies={"untrusted_artifact_on_deployment": "Warn"})
        self.async_dlq = self.queue("async-dlq", "lambda-async-dlq")
        self.functions: dict[str, LambdaFunction] = {}
        self.failure_queues: dict[str, SqsQueue] = {}
        self.concurrency = conc = settings.reserved_concurrency(cfg)
        for stage in settings.STAGES:
            self.functions[stage] = self.function(stage, f"app.{stage}", conc[stage])
        self.functions["api"] = self.function("api", "app.app", conc["api"])
        self.functions["outbox_relay"] = self.function("outbox-relay", "app.outbox_relay", conc["outbox_relay"])
        self.functions["reports"] = self.function("reports", "app.reports", conc["reports"])
        self.functions["reconciliation"] = self.function("reconciliation", "app.reconcile_unknown_outcomes",
                                                         conc["reconciliation"])
        self.functions["lease_keeper"] = self.function("lease-keeper", "app.lease_keeper", conc["lease_keeper"],
                                                       timeout=KEEPER_TIMEOUT_S)
        self._stage_mappings(kafka_arn)
        self._relay_mapping(table_name)
        self._reports_mapping()
        self.reconciliation_rule = self._every_minute(
            "reconciliation", "due status checks of unknown PSP outcomes (chalicelib/stages/reconciliation.py)")
        self.lease_keeper_rule = self._every_minute(
            "lease_keeper", "renew this region's lease, take over lapsed ones (chalicelib/services/takeover.py)")

    def queue(self, id: str, queue_name: str) -> SqsQueue:
        return SqsQueue(self, id, name=f"payments-{queue_name}", kms_master_key_id=self.key_arn,
                        kms_data_key_reuse_period_seconds=300, message_retention_seconds=14 * 86400, tags=tags())

    def function(self, fn: str, handler: str, reserved: int | None, artifact=None, env=None,
                 timeout: int | None = None) -> LambdaFunction:
        lcfg = self.cfg["lambda"]
        artifact = artifact or settings.CHALICE_ZIP
        fname = f"payments-{fn}"
        logs = CloudwatchLogGroup(self, f"logs-{fn}", name=f"/aws/lambda/{fname}",
                                  retention_in_days=lcfg["log_retention_days"], kms_key_id=self.key_arn, tags=tags())
        return LambdaFunction(
            self, f"fn-{fn}", function_name=fname, role=self.role.arn, handler=handler, runtime=lcfg["runtime"],
            architectures=["arm64"], filename=tf_path(artifact), source_code_hash=source_hash(artifact),
            memory_size=lcfg["memory_mb"], timeout=timeout or lcfg["timeout_s"],
            **({"reserved_concurrent_executions": reserved} if reserved else {}),
            layers=[self.cfg["regions"][self.region]["adot_layer_arn"]], tracing_config={"mode": "Active"},
            vpc_config={"subnet_ids": self.subnet_ids, "security_group_ids": [self.sg]},
            environment={"variables": {**(env if env is not None else self.env), **OTEL_ENV}},
            kms_key_arn=self.key_arn, dead_letter_config={"target_arn": self.async_dlq.arn},
            code_signing_config_arn=self.signing.arn, depends_on=[logs], tags=tags(function=fn))

    def _stage_mappings(self, kafka_arn: str) -> None:
        esm = self.cfg["lambda"]["esm"]
        # Retry and record-age limits exist for Kafka mappings in provisioned mode only (Lambda:
        # "Configuring error handling controls for Kafka event sources"); without them a batch
        # that keeps failing is retried until its records leave retention, blocking the partition.
        # So does the partial batch response: the stage handlers answer {"batchItemFailures": [...]},
        # which Lambda ignores unless ReportBatchItemFailures is on -- it would then count a batch
        # with failed records as done and move past them (I2). Should Lambda not accept an item
        # identifier, it fails the whole batch: retried, never skipped (handlers are idempotent).
        limits: dict[str, Any] = {}
        if esm.get("provisioned_pollers"):
            pollers = esm["provisioned_pollers"]
            limits = {"provisioned_poller_config": {"minimum_pollers": pollers["minimum"],
                                                    "maximum_pollers": pollers["maximum"]},
                      "maximum_retry_attempts": esm["retry_attempts"],
                      "maximum_record_age_in_seconds": esm["max_record_age_s"],
                      "bisect_batch_on_function_error": bool(esm.get("bisect_on_error", True)),
                      "function_response_types": ["ReportBatchItemFailures"]}
        self.mappings: dict[tuple[str, str], LambdaEventSourceMapping] = {}
        for stage, module in settings.STAGES.items():
            failures = self.failure_queues[stage] = self.queue(f"failures-{stage}", f"{stage}-failures")
            for topic in module.CONSUMES:
                self.mappings[(stage, topic)] = LambdaEventSourceMapping(
                    self, f"esm-{stage}-{topic.replace('.', '-')}", event_source_arn=kafka_arn,
                    function_name=self.functions[stage].arn, topics=[topic],
                    starting_position=esm["starting_position"], batch_size=esm["batch_size"],
                    maximum_batching_window_in_seconds=esm["batch_window_s"],
                    amazon_managed_kafka_event_source_config={"consumer_group_id": consumer_group(self.region, stage, topic)},
                    destination_config={"on_failure": {"destination_arn": failures.arn}}, tags=tags(stage=stage),
                    **limits)

    def _relay_mapping(self, table_name: str) -> None:
        rcfg = self.cfg["lambda"]["relay_stream"]
        failures = self.failure_queues["outbox_relay"] = self.queue("failures-outbox-relay", "outbox-relay-failures")
        # This region's replica of the global table (and so its own stream), looked up by name.
        table = DataAwsDynamodbTable(self, "table", name=table_name)
        self.relay_mapping = LambdaEventSourceMapping(
            self, "esm-outbox-relay", event_source_arn=table.stream_arn,
            function_name=self.functions["outbox_relay"].arn, starting_position=rcfg["starting_position"],
            batch_size=rcfg["batch_size"], maximum_batching_window_in_seconds=rcfg["batch_window_s"],
            maximum_retry_attempts=rcfg["retry_attempts"], bisect_batch_on_function_error=True,
            function_response_types=["ReportBatchItemFailures"],
            # Only the outbox items this region wrote: the stream also carries the other regions'
            # replicated items, which their own relays publish.
            filter_criteria={"filter": [{"pattern": json.dumps(pc.outbox_stream_filter(self.region))}]},
            destination_config={"on_failure": {"destination_arn": failures.arn}}, tags=tags(stage="outbox-relay"))
        self.stream_table = table

    def _reports_mapping(self) -> None:
        """The reporting consumer: a second reader of the same stream, this region's outbox inserts only."""
        rcfg = self.cfg["lambda"]["reports_stream"]
        failures = self.failure_queues["reports"] = self.queue("failures-reports", "reports-failures")
        self.reports_mapping = LambdaEventSourceMapping(
            self, "esm-reports", event_source_arn=self.stream_table.stream_arn,
            function_name=self.functions["reports"].arn, starting_position=rcfg["starting_position"],
            batch_size=rcfg["batch_size"], maximum_batching_window_in_seconds=rcfg["batch_window_s"],
            maximum_retry_attempts=rcfg["retry_attempts"], bisect_batch_on_function_error=True,
            filter_criteria={"filter": [{"pattern": json.dumps(pc.outbox_stream_filter(self.region))}]},
            destination_config={"on_failure": {"destination_arn": failures.arn}}, tags=tags(stage="reports"))


    def _every_minute(self, key: str, description: str) -> CloudwatchEventRule:
        """Work that comes due with time, not with an event: an EventBridge rule every minute."""
        fn, slug = self.functions[key], key.replace("_", "-")
        rule = CloudwatchEventRule(self, f"{slug}-schedule", name=f"payments-{slug}", schedule_expression="rate(1 minute)",
                                   description=description, tags=tags())
        CloudwatchEventTarget(self, f"{slug}-target", rule=rule.name, arn=fn.arn)
        LambdaPermission(self, f"{slug}-invoke", statement_id="AllowEventBridge", action="lambda:InvokeFunction",
                         function_name=fn.function_name, principal="events.amazonaws.com", source_arn=rule.arn)
        return rule


def platform_env(region: str, cfg: dict[str, Any], bootstrap: str, platform_key_alias: str) -> dict[str, str]:
    """The Lambda environment, keyed by chalicelib.config's constants (never retyped).

    Lease timings (config.json `leases`): the keeper renews every ttl/3 and runs 50 s of each minute,
    so about 10 s pass between one invocation's last renewal and the next one's first. With ttl 30 s
    and skew 2 s the holder may act for 28 s after a renewal: an invocation that starts up to ~18 s
    late keeps the lease (a whole missed minute does lapse it; the peer then takes over and, with
    FAILBACK=handback, hands it back). A peer acts at most ttl + skew = 32 s after the dead region's
    last renewal, seen at its next step (every 10 s, ~10 s between invocations): about 32-45 s from
    a region's death to the peer's takeover, plus the scan. Route 53 moves traffic in 20 s. Skew 2 s
    is generous for Lambda clocks (Amazon Time Sync); the laptop defaults (10 s / 2 s) are shorter
    because the simulation and drill want quick takeovers."""
    leases = cfg["leases"]
    return {
        pc.PLATFORM_MODE: "aws",
        pc.PLATFORM_REGION: region,
        pc.PAYMENTS_TABLE: cfg["dynamodb"]["table_name"],
        pc.KAFKA_BOOTSTRAP_SERVERS: bootstrap,
        pc.KAFKA_SECURITY: "iam",
        pc.KMS_KEY_ID: platform_key_alias,
        pc.API_KEY_PEPPER_SECRET: PEPPER_SECRET_NAME,  # never API_KEY_PEPPER itself: aws mode refuses the default
        pc.BUS_PARTITIONS: str(cfg["msk"]["topics"]["default"]["partitions"]),
        pc.BATCH_SIZE: str(cfg["lambda"]["esm"]["batch_size"]),
        pc.MAX_ATTEMPTS: pc.DEFAULTS[pc.MAX_ATTEMPTS],
        pc.LOG_LEVEL: "INFO",
        pc.CONTROL_TABLE: cfg["control"]["table_name"],
        pc.CONTROL_REGION: settings.control_region(cfg, region),
        pc.TAKEOVER_REGIONS: ",".join(r for r in cfg["regions"] if r != region),
        pc.LEASE_TTL_S: f"{leases['ttl_s']:g}",
        pc.LEASE_SKEW_S: f"{leases['skew_s']:g}",
        pc.FAILBACK: leases["failback"],
    }
