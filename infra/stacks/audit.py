"""CloudTrail (one multi-region trail) and AWS Config (a recorder and managed rules per region)."""
from __future__ import annotations

from cdktn_provider_aws.cloudtrail import Cloudtrail
from cdktn_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktn_provider_aws.config_config_rule import ConfigConfigRule
from cdktn_provider_aws.config_configuration_recorder import ConfigConfigurationRecorder
from cdktn_provider_aws.config_configuration_recorder_status import ConfigConfigurationRecorderStatus
from cdktn_provider_aws.config_delivery_channel import ConfigDeliveryChannel
from cdktn_provider_aws.iam_role import IamRole
from cdktn_provider_aws.iam_role_policy import IamRolePolicy
from cdktn_provider_aws.iam_role_policy_attachment import IamRolePolicyAttachment
from cdktn_provider_aws.s3_bucket import S3Bucket
from cdktn_provider_aws.s3_bucket_lifecycle_configuration import S3BucketLifecycleConfiguration
from cdktn_provider_aws.s3_bucket_ownership_controls import S3BucketOwnershipControls
from cdktn_provider_aws.s3_bucket_policy import S3BucketPolicy
from cdktn_provider_aws.s3_bucket_public_access_block import S3BucketPublicAccessBlock
from cdktn_provider_aws.s3_bucket_server_side_encryption_configuration import (
    S3BucketServerSideEncryptionConfigurationA,
)
from cdktn_provider_aws.s3_bucket_versioning import S3BucketVersioningA
from constructs import Construct

from .common import structs, ACCOUNT, PARTITION, allow, assume_role, name, policy, tags

# Managed rules that watch the properties this platform depends on.
CONFIG_RULES = {
    "dynamodb-pitr-enabled": "DYNAMODB_PITR_ENABLED",
    "cloudtrail-enabled": "CLOUD_TRAIL_ENABLED",
    "cmk-not-scheduled-for-deletion": "KMS_CMK_NOT_SCHEDULED_FOR_DELETION",
    "msk-in-cluster-node-require-tls": "MSK_IN_CLUSTER_NODE_REQUIRE_TLS",
    "lambda-inside-vpc": "LAMBDA_INSIDE_VPC",
}


def trail_name() -> str:
    """The one trail's name; the platform key's policy lets exactly this trail use it."""
    return name("trail")


class Audit(Construct):
    def __init__(self, scope: Construct, id: str, *, primary_region: str, regions: list[str],
                 key_arn: str) -> None:
        super().__init__(scope, id)
        bucket = S3Bucket(self, "bucket", bucket=f"{name('audit')}-{ACCOUNT}", force_destroy=False,
                          tags=tags(role="audit"))
        S3BucketPublicAccessBlock(self, "bucket-pab", bucket=bucket.id, block_public_acls=True,
                                  block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True)
        S3BucketOwnershipControls(self, "bucket-owner", bucket=bucket.id,
                                  rule={"object_ownership": "BucketOwnerEnforced"})
        S3BucketVersioningA(self, "bucket-versioning", bucket=bucket.id,
                            versioning_configuration={"status": "Enabled"})
        S3BucketServerSideEncryptionConfigurationA(
            self, "bucket-sse", bucket=bucket.id,
            rule=structs([{"apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms",
                                                               "kms_master_key_id": key_arn},
                   "bucket_key_enabled": True}]))
        S3BucketLifecycleConfiguration(
            self, "bucket-lifecycle", bucket=bucket.id,
            rule=structs([{"id": "archive-then-expire", "status": "Enabled", "filter": [{"prefix": ""}],
                   "transition": [{"days": 90, "storage_class": "GLACIER"}],
                   "expiration": [{"days": 2555}],
                   "abort_incomplete_multipart_upload": [{"days_after_initiation": 7}],
                   "noncurrent_version_expiration": [{"noncurrent_days": 365}]}]))
        services = {"Service": ["cloudtrail.amazonaws.com", "config.amazonaws.com"]}
        bucket_policy = S3BucketPolicy(self, "bucket-policy", bucket=bucket.id, policy=policy(
            {"Sid": "AclCheck", "Effect": "Allow", "Principal": services, "Action": "s3:GetBucketAcl",
             "Resource": bucket.arn, "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}}},
            {"Sid": "Write", "Effect": "Allow", "Principal": services, "Action": "s3:PutObject",
             "Resource": f"{bucket.arn}/*/AWSLogs/{ACCOUNT}/*",
             "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}}},
            {"Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
             "Resource": [bucket.arn, f"{bucket.arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}}))

        # CloudTrail also streams to CloudWatch Logs so metric filters and alarms can watch it.
        trail_logs = CloudwatchLogGroup(self, "trail-logs", name=f"/aws/cloudtrail/{trail_name()}",
                                        retention_in_days=365, kms_key_id=key_arn, tags=tags())
        trail_role = IamRole(self, "trail-role", name=name("cloudtrail-logs"),
                             assume_role_policy=assume_role("cloudtrail.amazonaws.com"), tags=tags())
        IamRolePolicy(self, "trail-role-policy", role=trail_role.id, name="deliver-to-logs", policy=policy(
            allow(["logs:CreateLogStream", "logs:PutLogEvents"], f"{trail_logs.arn}:*")))
        self.trail = Cloudtrail(
            self, "trail", name=trail_name(), s3_bucket_name=bucket.id, s3_key_prefix="cloudtrail",
            is_multi_region_trail=True, include_global_service_events=True, enable_log_file_validation=True,
            kms_key_id=key_arn, cloud_watch_logs_group_arn=f"{trail_logs.arn}:*",
            cloud_watch_logs_role_arn=trail_role.arn, depends_on=[bucket_policy], tags=tags())

        config_role = IamRole(self, "config-role", name=name("config"),
                              assume_role_policy=assume_role("config.amazonaws.com"), tags=tags())
        IamRolePolicyAttachment(self, "config-role-managed", role=config_role.name,
                                policy_arn=f"arn:{PARTITION}:iam::aws:policy/service-role/AWS_ConfigRole")
        IamRolePolicy(self, "config-role-bucket", role=config_role.id, name="deliver-to-audit-bucket",
                      policy=policy(allow(["s3:PutObject", "s3:GetBucketAcl"], [bucket.arn, f"{bucket.arn}/*"]),
                                    allow(["kms:GenerateDataKey", "kms:Decrypt"], key_arn)))
        self.recorders = {}
        for region in regions:
            recorder = ConfigConfigurationRecorder(
                self, f"recorder-{region}", region=region, name=name("recorder"), role_arn=config_role.arn,
                recording_group={"all_supported": True, "include_global_resource_types": region == primary_region})
            channel = ConfigDeliveryChannel(self, f"channel-{region}", region=region, name=name("delivery"),
                                            s3_bucket_name=bucket.id, s3_key_prefix=f"config/{region}",
                                            s3_kms_key_arn=key_arn, depends_on=[recorder, bucket_policy])
            ConfigConfigurationRecorderStatus(self, f"recorder-status-{region}", region=region,
                                              name=recorder.name, is_enabled=True, depends_on=[channel])
            for rule_name, identifier in CONFIG_RULES.items():
                ConfigConfigRule(self, f"rule-{region}-{rule_name}", region=region, name=rule_name,
                                 source={"owner": "AWS", "source_identifier": identifier},
                                 depends_on=[recorder], tags=tags())
            self.recorders[region] = recorder
        self.bucket = bucket
