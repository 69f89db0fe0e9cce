"""The API key pepper in AWS: a Secrets Manager secret under the platform key, read at cold start.

Production Lambdas had no API_KEY_PEPPER, so keys were hashed under the public local default
(defect 8). The last tests hand the Lambda environment the stacks synthesize to the platform's
own config loader: `aws` mode must refuse to start with the default.
"""
from __future__ import annotations

import json
from fnmatch import fnmatchcase

import pytest
from chalicelib import config as pc

from infra.stacks.secrets import PEPPER_SECRET_NAME
from tests.infra.conftest import ref


def lambda_env(synth, region: str, fn: str = "payments-api") -> dict[str, str]:
    [f] = [f for f in synth.resources(f"region-{region}", "aws_lambda_function").values() if f["function_name"] == fn]
    return dict(f["environment"]["variables"])


def test_pepper_secret_is_under_the_platform_key_in_every_region(synth, cfg):
    logical, secret = synth.one("global", "aws_secretsmanager_secret")
    assert secret["name"] == PEPPER_SECRET_NAME
    key_logical = next(iter(synth.resources("global", "aws_kms_key")))
    assert secret["kms_key_id"] == ref("aws_kms_key", key_logical, "arn")
    replica_keys = {k["region"]: n for n, k in synth.resources("global", "aws_kms_replica_key").items()
                    if k["region"] in cfg["regions"]}  # not the control table's own (control.py)
    replicas = {r["region"]: r["kms_key_id"] for r in secret["replica"]}
    assert replicas == {r: ref("aws_kms_replica_key", n, "arn") for r, n in replica_keys.items()}
    assert set(replicas) | {cfg["primary_region"]} == set(cfg["regions"])
    _, version = synth.one("global", "aws_secretsmanager_secret_version")
    assert version["secret_id"] == ref("aws_secretsmanager_secret", logical, "id")
    # A new pepper would orphan every stored key hash: Terraform sets it once and never again.
    assert version["lifecycle"]["ignore_changes"] == ["secret_string"]


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1"])
def test_every_platform_lambda_names_the_secret_and_may_read_it(synth, region):
    for f in synth.resources(f"region-{region}", "aws_lambda_function").values():
        env = f["environment"]["variables"]
        if f["function_name"] == "payments-topic-admin":
            continue
        assert env[pc.API_KEY_PEPPER_SECRET] == PEPPER_SECRET_NAME and pc.API_KEY_PEPPER not in env
    [role] = [n for n, r in synth.resources(f"region-{region}", "aws_iam_role").items()
              if r["name"] == f"payments-lambda-{region}"]
    docs = [json.loads(p["policy"]) for p in synth.resources(f"region-{region}", "aws_iam_role_policy").values()
            if p["role"] == ref("aws_iam_role", role, "id")]
    arn = (f"arn:${{data.aws_partition.current.partition}}:secretsmanager:{region}:"
           f"${{data.aws_caller_identity.current.account_id}}:secret:{PEPPER_SECRET_NAME}-AbCdEf")
    assert any("secretsmanager:GetSecretValue" in s["Action"] and any(fnmatchcase(arn, r) for r in s["Resource"])
               for d in docs for s in d["Statement"])
    # Secrets Manager decrypts with the caller's rights on the platform key (by its alias).
    assert any("kms:Decrypt" in s["Action"] and s.get("Condition", {}).get("ForAnyValue:StringEquals", {})
               .get("kms:ResourceAliases") == [pc.DEFAULTS[pc.KMS_KEY_ID]] for d in docs for s in d["Statement"])


def test_the_synthesized_environment_loads_the_pepper_from_the_secret(synth):
    env = lambda_env(synth, "us-east-1")
    asked = []
    settings = pc.Settings.from_env(env, read_secret=lambda sid: asked.append(sid) or "s3cr3t-pepper-from-aws")
    assert settings.mode == "aws" and settings.api_key_pepper == b"s3cr3t-pepper-from-aws"
    assert asked == [PEPPER_SECRET_NAME]


def test_aws_mode_refuses_to_start_with_the_local_default_pepper(synth):
    env = lambda_env(synth, "eu-west-1")
    default = pc.DEFAULTS[pc.API_KEY_PEPPER]
    with pytest.raises(pc.ConfigError, match="refuses"):
        pc.Settings.from_env(env, read_secret=lambda _: default)  # the secret holds the default
    without_secret = {k: v for k, v in env.items() if k != pc.API_KEY_PEPPER_SECRET}
    with pytest.raises(pc.ConfigError, match="refuses"):
        pc.Settings.from_env(without_secret)  # nothing set: the default would be used
    with pytest.raises(pc.ConfigError, match="refuses"):
        pc.Settings.from_env({**without_secret, pc.API_KEY_PEPPER: default})
    # The other modes keep the default for laptops and tests.
    assert pc.Settings.from_env({**without_secret, pc.PLATFORM_MODE: "embedded"}).api_key_pepper == default.encode()
