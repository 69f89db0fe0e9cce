"""`make bench`'s request counters (bench/counters.py) against the real servers: a known sequence of
calls is counted exactly, and a client or bus without the counter counts nothing."""
from __future__ import annotations

import time
import uuid

from chalicelib.adapters.aws.kafka import KafkaBus
from chalicelib.adapters.aws.setup import AwsSettings
from chalicelib.ports import OutRecord

from bench.counters import BotoCounter, KafkaCounter, counting_clients

from ..aws_services import services


def _table(client, name: str) -> None:
    client.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                              {"AttributeName": "sk", "AttributeType": "S"}],
                        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                   {"AttributeName": "sk", "KeyType": "RANGE"}])


def test_boto_counter_counts_each_call_by_operation_and_its_units():
    s = services()
    counted, plain = BotoCounter(), BotoCounter()
    ddb = counted.attach(s.client("dynamodb"))
    other = s.client("dynamodb")  # negative control: plain is never attached to it
    table = f"bench-{uuid.uuid4().hex[:8]}"
    _table(ddb, table)
    for i in range(3):
        ddb.put_item(TableName=table, Item={"pk": {"S": f"p{i}"}, "sk": {"S": "x"}, "v": {"S": "y" * 1500}})
    ddb.get_item(TableName=table, Key={"pk": {"S": "p0"}, "sk": {"S": "x"}}, ConsistentRead=True)
    ddb.get_item(TableName=table, Key={"pk": {"S": "nope"}, "sk": {"S": "x"}})
    ddb.transact_write_items(TransactItems=[{"Put": {"TableName": table, "Item": {"pk": {"S": "t"}, "sk": {"S": "x"}}}}])
    for _ in range(4):
        other.get_item(TableName=table, Key={"pk": {"S": "p0"}, "sk": {"S": "x"}})
    got = counted.snapshot()
    assert got["calls"] == {"dynamodb.CreateTable": 1, "dynamodb.PutItem": 3, "dynamodb.GetItem": 2,
                            "dynamodb.TransactWriteItems": 1}
    assert got["attempts"] == {"dynamodb": 7}
    # 3 puts of ~1.5 KB: 2 units each; a transactional put of a tiny item: 2
    assert got["units"]["write"] == 3 * 2 + 2
    assert got["units"]["read"] == 1 + 0.5  # a consistent read of 1.5 KB, an eventual miss
    assert plain.snapshot()["calls"] == {}  # the hook, not the servers, did the counting


def test_counting_clients_counts_what_the_platform_clients_send_and_stops_after():
    s = services()
    aws = AwsSettings.from_env("aws-local", s.env())
    from chalicelib.adapters.aws import setup
    counter = BotoCounter()
    with counting_clients(counter):
        c = setup.clients(aws)
        c["dynamodb"].list_tables()
    setup.clients(aws)["dynamodb"].list_tables()  # made after: not counted
    c["kms"].list_keys()
    assert counter.snapshot()["calls"] == {"dynamodb.ListTables": 1, "kms.ListKeys": 1}


def test_kafka_counter_reads_produce_and_fetch_requests_from_the_clients_sensors():
    s = services()
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    bus, plain_bus = KafkaBus(s.bootstrap, partitions=1), KafkaBus(s.bootstrap, partitions=1)
    counter, plain = KafkaCounter(), KafkaCounter()
    try:
        bus.ensure_topics([topic])
        counter.instrument(bus)
        consumer = bus.consumer(f"g-{topic}", [topic])
        for i in range(3):  # three publishes, each flushed: three produce requests
            bus.publish([OutRecord(topic, f"k{i}", b"v" * 100, ())])
        seen, deadline = [], time.monotonic() + 30
        while len(seen) < 3 and time.monotonic() < deadline:
            seen += consumer.poll(10)
        assert len(seen) == 3
        consumer.commit({(topic, 0): 3})
        plain_bus.publish([OutRecord(topic, "k", b"v", ())])  # negative control: never instrumented
        got = counter.snapshot()
        assert got["produce_requests"] == 3
        assert got["fetch_requests"] >= 1 and got["offset_commits"] == 1
        assert got["produced_batch_bytes"] >= 300 and got["fetched_bytes"] >= 300
        assert got["producer_wire_bytes_sent"] > got["produced_batch_bytes"]  # requests carry more than records
        assert plain.snapshot() == {"offset_commits": 0}
        consumer.close()
    finally:
        bus.close()
        plain_bus.close()
