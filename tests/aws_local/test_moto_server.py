"""The moto launcher's linear-time TransactWriteItems keeps moto's all-or-nothing behaviour."""
from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError

from laptop.provision import create_table

from ..aws_services import services


def records(streams, arn) -> list[dict]:
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    return streams.get_records(ShardIterator=it, Limit=1000)["Records"]


def test_a_write_failing_midway_is_undone_with_its_stream_records():
    db, streams = services().client("dynamodb"), services().client("dynamodbstreams")
    table = f"undo-{uuid.uuid4().hex[:8]}"
    arn = create_table(db, table)
    db.put_item(TableName=table, Item={"pk": {"S": "a"}, "sk": {"S": "1"}, "s": {"S": "text"}})
    with pytest.raises(ClientError):  # ADD to a string: rejected while applying, after the Put of b
        db.transact_write_items(TransactItems=[
            {"Put": {"TableName": table, "Item": {"pk": {"S": "b"}, "sk": {"S": "1"}}}},
            {"Update": {"TableName": table, "Key": {"pk": {"S": "a"}, "sk": {"S": "1"}},
                        "UpdateExpression": "ADD s :one", "ExpressionAttributeValues": {":one": {"N": "1"}}}}])
    assert "Item" not in db.get_item(TableName=table, Key={"pk": {"S": "b"}, "sk": {"S": "1"}})
    assert db.get_item(TableName=table, Key={"pk": {"S": "a"}, "sk": {"S": "1"}})["Item"]["s"] == {"S": "text"}
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in records(streams, arn)] == ["a"]


def test_conditions_see_the_state_before_the_transaction():
    db = services().client("dynamodb")
    table = f"cond-{uuid.uuid4().hex[:8]}"
    create_table(db, table)
    with pytest.raises(ClientError) as e:
        db.transact_write_items(TransactItems=[
            {"Put": {"TableName": table, "Item": {"pk": {"S": "x"}, "sk": {"S": "1"}}}},
            {"ConditionCheck": {"TableName": table, "Key": {"pk": {"S": "x"}, "sk": {"S": "2"}},
                                "ConditionExpression": "attribute_exists(pk)"}}])
    assert [r["Code"] for r in e.value.response["CancellationReasons"]] == ["None", "ConditionalCheckFailed"]
    assert "Item" not in db.get_item(TableName=table, Key={"pk": {"S": "x"}, "sk": {"S": "1"}})
