"""Small helpers shared by the stacks: naming, tags, IAM policy documents."""
from __future__ import annotations

import json
from typing import Any

APP = "payments"
ACCOUNT = "${data.aws_caller_identity.current.account_id}"
PARTITION = "${data.aws_partition.current.partition}"


def name(*parts: str) -> str:
    return "-".join((APP,) + parts)


def tags(**extra: str) -> dict[str, str]:
    return {"app": APP, "managed-by": "cdktn", **extra}


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(actions: list[str], resources: list[str] | str, sid: str | None = None,
          condition: dict[str, Any] | None = None) -> dict[str, Any]:
    st: dict[str, Any] = {"Effect": "Allow", "Action": actions,
                          "Resource": resources if isinstance(resources, list) else [resources]}
    if sid:
        st["Sid"] = sid
    if condition:
        st["Condition"] = condition
    return st


def assume_role(service: str) -> str:
    return policy({"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"})


def logs_principal(region: str) -> str:
    """CloudWatch Logs calls KMS as its regional principal (AWS: "Encrypt log data in CloudWatch
    Logs using AWS KMS"); a key policy naming logs.amazonaws.com makes CreateLogGroup fail."""
    return f"logs.{region}.amazonaws.com"


def key_policy(region: str, services: list[str], *, logs: bool = True, trail_name: str | None = None,
               account: str = ACCOUNT, partition: str = PARTITION) -> str:
    """An explicit key policy: the account administers; named services may use the key only
    from this account (aws:SourceAccount). CloudWatch Logs (regional principal, log groups of
    this account and region) and CloudTrail (this account's trails) get the statements their
    documentation gives, with the encryption context each service sends."""
    root = f"arn:{partition}:iam::{account}:root"
    statements: list[dict[str, Any]] = [
        {"Sid": "AccountAdministers", "Effect": "Allow", "Principal": {"AWS": root},
         "Action": "kms:*", "Resource": "*"},
    ]
    if services:
        statements.append({
            "Sid": "ServicesUseFromThisAccount", "Effect": "Allow",
            "Principal": {"Service": services},
            "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceAccount": account}},
        })
    if logs:
        statements.append({
            "Sid": "CloudWatchLogsOfThisRegion", "Effect": "Allow",
            "Principal": {"Service": logs_principal(region)},
            "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
            "Resource": "*",
            "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn":
                                      f"arn:{partition}:logs:{region}:{account}:log-group:*"}},
        })
    if trail_name:
        trail = f"arn:{partition}:cloudtrail:{region}:{account}:trail/{trail_name}"
        statements += [
            {"Sid": "CloudTrailEncryptsLogs", "Effect": "Allow", "Principal": {"Service": "cloudtrail.amazonaws.com"},
             "Action": "kms:GenerateDataKey*", "Resource": "*",
             "Condition": {"StringEquals": {"aws:SourceArn": trail},
                           "StringLike": {"kms:EncryptionContext:aws:cloudtrail:arn":
                                          f"arn:{partition}:cloudtrail:*:{account}:trail/*"}}},
            {"Sid": "CloudTrailDescribesKey", "Effect": "Allow", "Principal": {"Service": "cloudtrail.amazonaws.com"},
             "Action": "kms:DescribeKey", "Resource": "*",
             "Condition": {"StringEquals": {"aws:SourceArn": trail}}},
        ]
    return policy(*statements)


_MAPS = {"tags", "variables", "dimensions"}  # user-keyed maps: keys stay as written


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def structs(value: Any) -> Any:
    """jsii converts snake_case keys of struct kwargs, but not of dicts inside lists:
    write those as the camelCase the JS side expects."""
    if isinstance(value, list):
        return [structs(v) for v in value]
    if isinstance(value, dict):
        return {_camel(k): (v if k in _MAPS else structs(v)) for k, v in value.items()}
    return value
