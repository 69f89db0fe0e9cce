"""The control table's client: this region's unless CONTROL_REGION names another replica."""
from __future__ import annotations

from chalicelib.adapters.aws.setup import AwsSettings, control_client


def aws(mode: str = "aws", region: str = "eu-west-1") -> AwsSettings:
    return AwsSettings(mode, "payments-platform", "b:9098", "iam", "alias/k", "", region, "")


def test_own_region_or_none_reuses_the_store_client():
    store_client = object()
    assert control_client(aws(), "", store_client) is store_client
    assert control_client(aws(), "eu-west-1", store_client) is store_client
    assert control_client(aws("aws-local"), "us-east-2", store_client) is store_client  # one local endpoint


def test_another_region_gets_a_client_there():
    client = control_client(aws(), "us-east-2", object())
    assert client.meta.region_name == "us-east-2" and client.meta.service_model.service_name == "dynamodb"
