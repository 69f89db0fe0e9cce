"""The contract suites against the AWS adapters: DynamoDB and KMS on a moto server, Kafka on Tansu.

Servers start once per test run (tests/aws_services.py). Each test's tmp_path gets
its own table, so "same tmp_path = same data, different = isolated" holds.
"""
from __future__ import annotations

import hashlib

import pytest

from chalicelib.adapters.aws.dynamodb import open_store as open_dynamo_store
from chalicelib.adapters.aws.dynamodb_audit import DynamoAuditLog
from chalicelib.adapters.aws.dynamodb_leases import DynamoLeases
from chalicelib.adapters.aws.kafka import KafkaBus
from chalicelib.adapters.aws.kms import KmsDecryptionError, KmsKeys
from laptop import provision as aws

from ..aws_services import services
from .audit_contract import AuditLogContract
from .bus_contract import EventBusContract
from .keys_contract import KeyServiceContract
from .leases_contract import LeasesContract
from .regions_contract import RegionsContract
from .store_ports_contract import STORE_CONTRACTS
from .tenants_contract import TenantDirectoryContract

KEY_ALIAS = "alias/contract-tests"


def table_for(tmp_path) -> str:
    """One table per test directory, created on first use."""
    name = "t-" + hashlib.sha1(str(tmp_path).encode()).hexdigest()[:16]
    aws.create_table(services().client("dynamodb"), name)
    return name


class TestDynamoStore(*STORE_CONTRACTS):
    def make_store(self, tmp_path):
        self.stream = aws.create_table(services().client("dynamodb"), table_for(tmp_path))
        return open_dynamo_store(services().client("dynamodb"), table_for(tmp_path))

    def feed_changes(self, store, reader):
        """The table's stream, as Lambda's mapping hands it over: every record after the last read."""
        streams = services().client("dynamodbstreams")
        seen = getattr(self, "_read", 0)
        records = []
        for shard in streams.describe_stream(StreamArn=self.stream)["StreamDescription"]["Shards"]:
            it = streams.get_shard_iterator(StreamArn=self.stream, ShardId=shard["ShardId"],
                                            ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
            records += streams.get_records(ShardIterator=it, Limit=1000)["Records"]
        self._read = len(records)
        return store.feed.outbox_in(records[seen:])


class TestDynamoLeases(LeasesContract):
    def make_leases(self, tmp_path):
        return DynamoLeases(services().client("dynamodb"), table_for(tmp_path))


class TestDynamoRegions(RegionsContract):
    """Two regions on one table: the global table as each region's replica shows it, after replication."""

    def make_store(self, tmp_path, region="local-1"):
        self.stream = aws.create_table(services().client("dynamodb"), table_for(tmp_path))
        return open_dynamo_store(services().client("dynamodb"), table_for(tmp_path), region=region)

    def feed_changes(self, store, reader):
        """The whole stream (every region's writes, as each replica's stream carries them)."""
        self._read = 0
        return TestDynamoStore.feed_changes(self, store, reader)


class TestDynamoTenants(TenantDirectoryContract):
    def make_tenants(self, tmp_path):
        return open_dynamo_store(services().client("dynamodb"), table_for(tmp_path)).tenants


class TestDynamoAuditLog(AuditLogContract):
    def make_audit(self, tmp_path, signer, region="local-1"):
        return DynamoAuditLog(services().client("dynamodb"), table_for(tmp_path), signer, region)


class TestKafkaBus(EventBusContract):
    poll_timeout = 20.0  # a group join on Tansu takes ~3 s (half the 6 s session timeout)

    def make_bus(self, tmp_path):
        return KafkaBus(services().bootstrap, partitions=4)


class TestKmsKeys(KeyServiceContract):
    decryption_error = KmsDecryptionError

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def platform_key(cls):
        aws.create_key(services().client("kms"), KEY_ALIAS)

    def make_keys(self, tmp_path):
        return KmsKeys(services().client("kms"), services().client("dynamodb"), table_for(tmp_path), KEY_ALIAS)
