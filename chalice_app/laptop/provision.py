"""aws-local provisioning: the table, the key and the topics exactly as infra/ makes them in AWS
(`make local-aws`, the aws-local tests and the bench; Lambda never provisions anything)."""
from __future__ import annotations

import os
from typing import Any

from chalicelib import config as C
from chalicelib.adapters.aws.kafka import KafkaBus
from chalicelib.adapters.aws.setup import AwsSettings, clients


def create_table(dynamodb: Any, table: str) -> str:
    """The single table exactly as infra/ defines it; returns its stream ARN. Idempotent."""
    try:
        desc = dynamodb.describe_table(TableName=table)["Table"]
    except dynamodb.exceptions.ResourceNotFoundException:
        attrs = (C.TABLE_PK, C.TABLE_SK, C.STATUS_INDEX_PK, C.STATUS_INDEX_SK)
        dynamodb.create_table(
            TableName=table, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in attrs],
            KeySchema=[{"AttributeName": C.TABLE_PK, "KeyType": "HASH"},
                       {"AttributeName": C.TABLE_SK, "KeyType": "RANGE"}],
            GlobalSecondaryIndexes=[{"IndexName": C.STATUS_INDEX, "Projection": {"ProjectionType": "ALL"},
                                     "KeySchema": [{"AttributeName": C.STATUS_INDEX_PK, "KeyType": "HASH"},
                                                   {"AttributeName": C.STATUS_INDEX_SK, "KeyType": "RANGE"}]}],
            StreamSpecification={"StreamEnabled": True, "StreamViewType": C.OUTBOX_STREAM_VIEW_TYPE})
        dynamodb.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
        dynamodb.update_time_to_live(TableName=table, TimeToLiveSpecification={
            "Enabled": True, "AttributeName": C.TTL_ATTRIBUTE})
        desc = dynamodb.describe_table(TableName=table)["Table"]
    return desc["LatestStreamArn"]


def create_control_table(dynamodb: Any, table: str) -> None:
    """The leases' control table (infra/: multi-region strongly consistent in AWS). Idempotent."""
    try:
        dynamodb.describe_table(TableName=table)
    except dynamodb.exceptions.ResourceNotFoundException:
        dynamodb.create_table(
            TableName=table, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in (C.TABLE_PK, C.TABLE_SK)],
            KeySchema=[{"AttributeName": C.TABLE_PK, "KeyType": "HASH"}, {"AttributeName": C.TABLE_SK, "KeyType": "RANGE"}])
        dynamodb.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})


def create_key(kms: Any, key_id: str) -> str:
    """The platform key behind alias `key_id` (created if the alias is missing); returns the key id."""
    if not key_id.startswith("alias/"):
        return kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyId"]
    try:
        return kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyId"]
    except kms.exceptions.NotFoundException:
        created = kms.create_key(Description="payments platform key (aws-local)")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName=key_id, TargetKeyId=created)
        return created


def provision(aws: AwsSettings, topics: list[str], partitions: int) -> str:
    """Table, key and topics for aws-local; returns the table's stream ARN."""
    c = clients(aws)
    arn = create_table(c["dynamodb"], aws.table)
    create_control_table(c["dynamodb"], os.environ.get(C.CONTROL_TABLE) or C.DEFAULTS[C.CONTROL_TABLE])
    create_key(c["kms"], aws.key_id)
    bus = KafkaBus(aws.bootstrap, aws.security, aws.region, partitions=partitions)
    try:
        bus.ensure_topics(topics)
    finally:
        bus.close()
    return arn


def stream_arn(aws: AwsSettings, dynamodb: Any) -> str:
    """OUTBOX_STREAM_ARN if set, else the table's latest stream."""
    return aws.stream_arn or dynamodb.describe_table(TableName=aws.table)["Table"]["LatestStreamArn"]
