"""Every IAM and KMS policy in the synthesized JSON, linted with parliament (pinned in
requirements-infra.txt): unknown actions, conditions that do not apply to an action,
resources of the wrong format. 0 findings, or each accepted one listed with its reason in
infra/policy_lint_skips.json.

Terraform references are replaced by example values of the right shape first (partition
aws, account 123456789012, resource ARNs by the referenced resource's type), so ARN checks
see real formats.
"""
from __future__ import annotations

import json
import re

from parliament import analyze_policy_string

from tests.infra.conftest import ROOT

ACCOUNT = "123456789012"
POLICY_ATTRS = ("policy", "assume_role_policy", "policy_document")
ARNS = {
    "aws_s3_bucket": "arn:aws:s3:::{name}",
    "aws_cloudwatch_log_group": "arn:aws:logs:{region}:{account}:log-group:{name}",
    "aws_msk_cluster": "arn:aws:kafka:{region}:{account}:cluster/{name}/0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d-1",
    "aws_kms_key": "arn:aws:kms:{region}:{account}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "aws_kms_replica_key": "arn:aws:kms:{region}:{account}:key/mrk-1234abcd12ab34cd56ef1234567890ab",
    "aws_sqs_queue": "arn:aws:sqs:{region}:{account}:{name}",
    "aws_sns_topic": "arn:aws:sns:{region}:{account}:{name}",
}


def skips() -> list[dict]:
    return json.loads((ROOT / "infra" / "policy_lint_skips.json").read_text())["skips"]


def concrete(doc: str, region: str) -> str:
    doc = doc.replace("${data.aws_partition.current.partition}", "aws")
    doc = doc.replace("${data.aws_caller_identity.current.account_id}", ACCOUNT)

    def arn(m: re.Match) -> str:
        rtype, name = m.group(1), m.group(2)
        assert rtype in ARNS, f"no example ARN for {rtype}: add one to ARNS"
        return ARNS[rtype].format(region=region, account=ACCOUNT, name=name.lower())
    return re.sub(r"\$\{(aws_[a-z0-9_]+)\.([A-Za-z0-9_-]+)\.arn\}", arn, doc)


def policies(synth, cfg):
    for stack_name, doc in synth.stacks.items():
        region = cfg["primary_region"] if stack_name == "global" else stack_name.removeprefix("region-")
        for rtype, resources in doc.get("resource", {}).items():
            for name, res in resources.items():
                for attr in POLICY_ATTRS:
                    if isinstance(res.get(attr), str) and res[attr].lstrip().startswith("{"):
                        yield stack_name, rtype, name, attr, concrete(res[attr], res.get("region", region))


def accepted(finding, rtype: str, attr: str) -> bool:
    detail = json.dumps(finding.detail) if not isinstance(finding.detail, str) else finding.detail
    return any(s["issue"] == finding.issue and rtype in s["type"] and s["attr"] == attr
               and all(word in detail for word in s.get("detail", "").split()) for s in skips())


def test_every_policy_lints_clean_or_is_explained(synth, cfg):
    linted, unexplained = 0, []
    for stack_name, rtype, name, attr, doc in policies(synth, cfg):
        assert "${" not in doc, f"{stack_name} {rtype}.{name}.{attr}: unresolved reference left for the linter"
        for f in analyze_policy_string(doc).findings:
            if not accepted(f, rtype, attr):
                unexplained.append((stack_name, f"{rtype}.{name}", attr, f.issue, f.detail))
        linted += 1
    assert linted >= 30
    assert unexplained == [], "\n".join(map(str, unexplained))


def test_every_skip_has_a_reason_and_is_still_needed(synth, cfg):
    used = set()
    for _, rtype, _, attr, doc in policies(synth, cfg):
        for f in analyze_policy_string(doc).findings:
            for i, s in enumerate(skips()):
                if accepted(f, rtype, attr) and s["issue"] == f.issue and rtype in s["type"]:
                    used.add(i)
    for i, s in enumerate(skips()):
        assert len(s["reason"].split()) >= 8, s
        assert i in used, f"skip no longer matches any finding, remove it: {s}"


def test_the_linter_catches_what_it_is_here_for():
    """A policy with an invented action, a misplaced condition and a bad ARN is not clean."""
    bad = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "dynamodb:TransactWriteItems", "Resource": "arn:aws:dynamodb:us-east-1:123456789012:table/t"},
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*",
         "Condition": {"StringEquals": {"kms:EncryptionContext:tenant_id": "t"}}},
        {"Effect": "Allow", "Action": "kafka:GetBootstrapBrokers", "Resource": "arn:aws:kafka:us-east-1:123456789012:cluster/c/1"}]})
    issues = {f.issue for f in analyze_policy_string(bad).findings}
    assert {"UNKNOWN_ACTION", "UNKNOWN_CONDITION_FOR_ACTION", "RESOURCE_MISMATCH"} <= issues
