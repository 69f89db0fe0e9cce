"""AWS WAF on the regional API stage (PCI DSS 6.4.2: detect and block web attacks).

AWS managed rule groups (core rule set, known bad inputs), a rate-based rule per client IP
set above what the app lets one tenant send (chalicelib.config RATE_LIMIT_*), so WAF stops
floods and the app's token bucket keeps shaping tenants. Logs go to a CloudWatch log group
(WAF requires the aws-waf-logs- prefix) under the region's CMK, the Authorization header
(tenants' Bearer API keys) redacted.
"""
from __future__ import annotations

import math
from typing import Any

from cdktn_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktn_provider_aws.cloudwatch_log_resource_policy import CloudwatchLogResourcePolicy
from cdktn_provider_aws.wafv2_web_acl import Wafv2WebAcl
from cdktn_provider_aws.wafv2_web_acl_association import Wafv2WebAclAssociation
from cdktn_provider_aws.wafv2_web_acl_logging_configuration import Wafv2WebAclLoggingConfiguration
from constructs import Construct

from ..settings import platform_config as pc
from .common import ACCOUNT, PARTITION, name, policy, structs, tags

MANAGED_RULE_GROUPS = ["AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet"]


def rate_limit(cfg: dict[str, Any]) -> int:
    """Requests per client IP per window: one tenant's full bucket plus its refill over the
    window (the app's defaults), with headroom."""
    window = cfg["waf"]["rate_window_s"]
    per_tenant = int(pc.DEFAULTS[pc.RATE_LIMIT_BURST]) + float(pc.DEFAULTS[pc.RATE_LIMIT_PER_S]) * window
    return math.ceil(per_tenant * cfg["waf"]["rate_headroom"])


def _visibility(metric: str) -> dict[str, Any]:
    return {"cloudwatch_metrics_enabled": True, "metric_name": metric, "sampled_requests_enabled": True}


def _rule(rule: dict[str, Any]) -> dict[str, Any]:
    """jsii converts the rule's typed blocks; `statement` is untyped JSON in the provider
    bindings, so it goes through as Terraform writes it (snake_case)."""
    out = structs({k: v for k, v in rule.items() if k != "statement"})
    out["statement"] = rule["statement"]
    return out


class Waf(Construct):
    def __init__(self, scope: Construct, id: str, *, region: str, cfg: dict[str, Any], stage_arn: str,
                 key_arn: str) -> None:
        super().__init__(scope, id)
        rules = [{
            "name": "rate-per-ip", "priority": 0, "action": {"block": {}},
            "statement": {"rate_based_statement": {"limit": rate_limit(cfg), "aggregate_key_type": "IP",
                                                   "evaluation_window_sec": cfg["waf"]["rate_window_s"]}},
            "visibility_config": _visibility("payments-rate-per-ip")}]
        for i, group in enumerate(MANAGED_RULE_GROUPS, start=1):
            rules.append({
                "name": group, "priority": i, "override_action": {"none": {}},
                "statement": {"managed_rule_group_statement": {"name": group, "vendor_name": "AWS"}},
                "visibility_config": _visibility(f"payments-{group}")})
        self.acl = Wafv2WebAcl(
            self, "acl", name=name("api", region), scope="REGIONAL", description="payments API",
            default_action={"allow": {}}, rule=[_rule(r) for r in rules], visibility_config=_visibility("payments-api"),
            tags=tags())
        Wafv2WebAclAssociation(self, "association", resource_arn=stage_arn, web_acl_arn=self.acl.arn)
        self.logs = CloudwatchLogGroup(self, "logs", name=f"aws-waf-logs-payments-{region}", retention_in_days=365,
                                       kms_key_id=key_arn, tags=tags())
        # WAF delivers through CloudWatch Logs' log delivery service (WAF: "Sending web ACL
        # traffic logs to an Amazon CloudWatch Logs log group").
        delivery = CloudwatchLogResourcePolicy(self, "delivery", policy_name=name("waf-logs", region), policy_document=policy({
            "Sid": "WafLogDelivery", "Effect": "Allow", "Principal": {"Service": "delivery.logs.amazonaws.com"},
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"], "Resource": f"{self.logs.arn}:*",
            "Condition": {"ArnLike": {"aws:SourceArn": f"arn:{PARTITION}:logs:{region}:{ACCOUNT}:*"},
                          "StringEquals": {"aws:SourceAccount": ACCOUNT}}}))
        self.logging = Wafv2WebAclLoggingConfiguration(
            self, "logging", resource_arn=self.acl.arn, log_destination_configs=[self.logs.arn],
            redacted_fields=structs([{"single_header": {"name": "authorization"}}]), depends_on=[delivery])
