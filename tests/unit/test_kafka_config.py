"""Kafka client settings per KAFKA_SECURITY, and the MSK IAM token, built without a broker."""
from __future__ import annotations

import base64
import time
from urllib.parse import parse_qs, urlparse

import pytest
from botocore.credentials import CredentialProvider, Credentials

from chalicelib.adapters.aws.kafka import MskIamTokenProvider, client_config


class StaticCredentials(CredentialProvider):
    METHOD = "static"

    def __init__(self):
        super().__init__()
        self.loads = 0

    def load(self):
        self.loads += 1
        return Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")


def test_plaintext_for_local_brokers():
    cfg = client_config("127.0.0.1:9092, 127.0.0.1:9093")
    assert cfg == {"bootstrap_servers": ["127.0.0.1:9092", "127.0.0.1:9093"], "security_protocol": "PLAINTEXT"}


def test_tls_checks_the_broker_hostname():
    cfg = client_config("b-1.payments.kafka.eu-west-1.amazonaws.com:9094", "tls")
    assert cfg["security_protocol"] == "SSL" and cfg["ssl_check_hostname"] is True
    assert "sasl_mechanism" not in cfg


def test_iam_is_sasl_oauthbearer_over_tls_with_an_msk_token_provider():
    cfg = client_config("b-1.payments.kafka.eu-west-1.amazonaws.com:9098", "iam", region="eu-west-1")
    assert (cfg["security_protocol"], cfg["sasl_mechanism"]) == ("SASL_SSL", "OAUTHBEARER")
    provider = cfg["sasl_oauth_token_provider"]
    assert isinstance(provider, MskIamTokenProvider) and provider.region == "eu-west-1"


@pytest.mark.parametrize("bootstrap, security, region", [
    ("", "plaintext", None), (" , ", "plaintext", None), ("h:9098", "iam", None), ("h:9092", "sasl", None),
    ("h:9092", "PLAINTEXT", None)])
def test_bad_settings_are_refused_with_the_variable_named(bootstrap, security, region):
    with pytest.raises(ValueError, match="KAFKA_"):
        client_config(bootstrap, security, region)


def test_msk_iam_token_is_a_presigned_connect_url_reused_until_near_expiry():
    creds = StaticCredentials()
    now = [time.time()]
    provider = MskIamTokenProvider("eu-west-1", credentials_provider=creds, clock=lambda: now[0])
    token = provider.token()
    url = urlparse(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode())
    query = parse_qs(url.query)
    assert url.scheme == "https" and url.hostname == "kafka.eu-west-1.amazonaws.com"
    assert query["Action"] == ["kafka-cluster:Connect"]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"] and query["X-Amz-Signature"][0]
    assert query["X-Amz-Credential"][0].startswith("AKIDEXAMPLE/") and "/eu-west-1/kafka-cluster/" in \
        query["X-Amz-Credential"][0]
    assert "wJalrXUtnFEMI" not in token  # the secret never travels
    assert provider.token() == token and creds.loads == 1  # cached
    now[0] += 7 * 24 * 3600  # far past the 15-minute expiry: a fresh token
    provider.token()
    assert creds.loads == 2  # re-signed (within the same second SigV4 gives the same signature)
