"""The API key pepper: a Secrets Manager secret under the platform key, replicated to every region.

The Lambdas read it once at cold start (chalicelib.config, API_KEY_PEPPER_SECRET); `aws`
mode refuses to start with the public local default. Its value is generated once by
Secrets Manager (GetRandomPassword) and never changed by Terraform afterwards
(ignore_changes): every stored API key hash depends on it, so a new pepper would lock every
tenant out. It is not rotated for the same reason (infra/.checkov.yaml, CKV2_AWS_57).
"""
from __future__ import annotations

from cdktn_provider_aws.data_aws_secretsmanager_random_password import DataAwsSecretsmanagerRandomPassword
from cdktn_provider_aws.secretsmanager_secret import SecretsmanagerSecret
from cdktn_provider_aws.secretsmanager_secret_version import SecretsmanagerSecretVersion
from constructs import Construct

from .common import name, structs, tags

PEPPER_SECRET_NAME = f"{name('api-key-pepper')}"


class PepperSecret(Construct):
    def __init__(self, scope: Construct, id: str, *, primary_region: str, key_arns: dict[str, str]) -> None:
        super().__init__(scope, id)
        self.secret = SecretsmanagerSecret(
            self, "secret", name=PEPPER_SECRET_NAME, kms_key_id=key_arns[primary_region],
            description="HMAC pepper of the API key hashes (read by the Lambdas at cold start; never rotate)",
            recovery_window_in_days=30,
            replica=structs([{"region": r, "kms_key_id": arn} for r, arn in key_arns.items() if r != primary_region]),
            tags=tags(role="api-key-pepper"))
        value = DataAwsSecretsmanagerRandomPassword(self, "value", password_length=64, exclude_punctuation=True)
        SecretsmanagerSecretVersion(self, "version", secret_id=self.secret.id, secret_string=value.random_password,
                                    lifecycle={"ignore_changes": ["secret_string"]})
