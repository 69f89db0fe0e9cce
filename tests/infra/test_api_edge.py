"""The API's public face: REGIONAL custom domains behind the routing record, and AWS WAF.

Defect 9: an EDGE API behind a CNAME answered nobody (API Gateway routes by Host, and the
record's name was no domain of the API). Defect 10 (PCI DSS 6.4.2): no web application
firewall in front of a public payments API.
"""
from __future__ import annotations

import json
import re

from chalicelib import config as pc

from infra.stacks.waf import rate_limit
from tests.infra.conftest import ROOT, ref
from tests.infra.test_synth_regional import region, stack  # noqa: F401 - the region fixture, per region


def test_the_routing_record_points_at_a_regional_domain_of_its_own_name(synth, cfg, region):
    dns = cfg["dns"]
    public_name = f"{dns['record_name']}.{dns['zone_name']}"
    domain_logical, domain = synth.one(stack(region), "aws_api_gateway_domain_name")
    assert domain["domain_name"] == public_name
    assert domain["endpoint_configuration"] == {"types": ["REGIONAL"]}
    assert domain["regional_certificate_arn"] and "certificate_arn" not in domain  # certificate_arn is EDGE's
    assert domain["security_policy"] == "TLS_1_2"
    api_logical, api = synth.one(stack(region), "aws_api_gateway_rest_api")
    assert api["endpoint_configuration"]["types"] == ["REGIONAL"]
    _, mapping = synth.one(stack(region), "aws_api_gateway_base_path_mapping")
    assert mapping["api_id"] == ref("aws_api_gateway_rest_api", api_logical, "id")
    assert mapping["domain_name"] == ref("aws_api_gateway_domain_name", domain_logical, "domain_name")
    [record] = [r for r in synth.resources(stack(region), "aws_route53_record").values() if r["name"] == public_name]
    # A CNAME to the custom domain's regional name (AWS: "a CNAME or alias record to the regional
    # domain name"), never to the REST API's own host, whose certificate is not for our name. A CNAME
    # rather than an alias so the answer carries our short TTL (an alias carries its target's).
    assert record["type"] == "CNAME" and "alias" not in record and record["ttl"] == dns["ttl_s"]
    assert record["records"] == [ref("aws_api_gateway_domain_name", domain_logical, "regional_domain_name")]
    assert record["set_identifier"] == region and record["health_check_id"]
    for r in synth.resources(stack(region), "aws_route53_record").values():
        assert r["type"] != "CNAME" or "aws_api_gateway_rest_api" not in json.dumps(r.get("records", []))


def test_the_certificate_is_for_the_public_name_in_this_region(synth, cfg, region):
    dns = cfg["dns"]
    _, cert = synth.one(stack(region), "aws_acm_certificate")
    assert cert["domain_name"] == f"{dns['record_name']}.{dns['zone_name']}" and cert["validation_method"] == "DNS"
    assert "region" not in cert  # a REGIONAL domain's certificate lives in the API's own region
    v_logical, _ = synth.one(stack(region), "aws_acm_certificate_validation")
    _, domain = synth.one(stack(region), "aws_api_gateway_domain_name")
    assert domain["regional_certificate_arn"] == ref("aws_acm_certificate_validation", v_logical, "certificate_arn")


def test_a_web_acl_with_managed_rules_and_a_rate_limit_guards_the_stage(synth, cfg, region):
    acl_logical, acl = synth.one(stack(region), "aws_wafv2_web_acl")
    assert acl["scope"] == "REGIONAL" and acl["default_action"] == {"allow": {}}
    groups = {r["statement"]["managed_rule_group_statement"]["name"]: r for r in acl["rule"]
              if "managed_rule_group_statement" in r["statement"]}
    assert set(groups) >= {"AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet"}
    for rule in groups.values():
        assert rule["statement"]["managed_rule_group_statement"]["vendor_name"] == "AWS"
        assert rule["override_action"] == {"none": {}}  # the groups' own block actions apply
    [rate] = [r for r in acl["rule"] if "rate_based_statement" in r["statement"]]
    stmt = rate["statement"]["rate_based_statement"]
    assert rate["action"] == {"block": {}} and stmt["aggregate_key_type"] == "IP"
    window = stmt["evaluation_window_sec"]
    assert window in (60, 120, 300, 600)
    # Above one tenant's whole allowance in the window: the app shapes tenants, WAF stops floods.
    tenant = int(pc.DEFAULTS[pc.RATE_LIMIT_BURST]) + float(pc.DEFAULTS[pc.RATE_LIMIT_PER_S]) * window
    assert stmt["limit"] == rate_limit(cfg) > tenant
    assert len({r["priority"] for r in acl["rule"]}) == len(acl["rule"])
    _, assoc = synth.one(stack(region), "aws_wafv2_web_acl_association")
    stage_logical, _ = synth.one(stack(region), "aws_api_gateway_stage")
    assert assoc == {**assoc, "resource_arn": ref("aws_api_gateway_stage", stage_logical, "arn"),
                     "web_acl_arn": ref("aws_wafv2_web_acl", acl_logical, "arn")}


def test_waf_logs_go_to_an_encrypted_waf_log_group_without_api_keys(synth, region):
    acl_logical, _ = synth.one(stack(region), "aws_wafv2_web_acl")
    _, logging = synth.one(stack(region), "aws_wafv2_web_acl_logging_configuration")
    assert logging["resource_arn"] == ref("aws_wafv2_web_acl", acl_logical, "arn")
    [dest] = logging["log_destination_configs"]
    group = synth.resources(stack(region), "aws_cloudwatch_log_group")[dest.split(".")[1]]
    assert group["name"].startswith("aws-waf-logs-")  # WAF refuses any other name
    assert group["kms_key_id"] == ref("aws_kms_key", "infra-key", "arn")
    assert {"single_header": {"name": "authorization"}} in logging["redacted_fields"]


def test_the_waf_checkov_skip_is_gone():
    assert not re.search(r"^\s*-\s*CKV2_AWS_29\b", (ROOT / "infra" / ".checkov.yaml").read_text(), re.M)
