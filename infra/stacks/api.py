"""API Gateway REST API (REGIONAL) proxying every path to the API Lambda, behind AWS WAF,
a REGIONAL custom domain named like the routing record, and this region's Route 53 health
check and record.

One name served from several regions: each region's API has a REGIONAL custom domain of the
record's own name (api.<zone>) with a certificate in that region, and the region's routing
record is an alias to it (API Gateway: "Configure custom health checks for DNS failover").
A CNAME to an execute-api host cannot work: API Gateway routes by the Host header, which
would be the record's name, not the API's. The certificate comes from config
(api.certificate_arns[region]) or is issued by ACM with DNS validation in the zone.
"""
from __future__ import annotations

from typing import Any

from cdktn import Fn
from cdktn_provider_aws.acm_certificate import AcmCertificate
from cdktn_provider_aws.acm_certificate_validation import AcmCertificateValidation
from cdktn_provider_aws.api_gateway_account import ApiGatewayAccount
from cdktn_provider_aws.api_gateway_base_path_mapping import ApiGatewayBasePathMapping
from cdktn_provider_aws.api_gateway_deployment import ApiGatewayDeployment
from cdktn_provider_aws.api_gateway_domain_name import ApiGatewayDomainName
from cdktn_provider_aws.api_gateway_integration import ApiGatewayIntegration
from cdktn_provider_aws.api_gateway_method import ApiGatewayMethod
from cdktn_provider_aws.api_gateway_method_settings import ApiGatewayMethodSettings
from cdktn_provider_aws.api_gateway_request_validator import ApiGatewayRequestValidator
from cdktn_provider_aws.api_gateway_resource import ApiGatewayResource
from cdktn_provider_aws.api_gateway_rest_api import ApiGatewayRestApi
from cdktn_provider_aws.api_gateway_stage import ApiGatewayStage
from cdktn_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktn_provider_aws.data_aws_route53_zone import DataAwsRoute53Zone
from cdktn_provider_aws.iam_role import IamRole
from cdktn_provider_aws.iam_role_policy_attachment import IamRolePolicyAttachment
from cdktn_provider_aws.lambda_function import LambdaFunction
from cdktn_provider_aws.lambda_permission import LambdaPermission
from cdktn_provider_aws.route53_health_check import Route53HealthCheck
from cdktn_provider_aws.route53_record import Route53Record
from constructs import Construct

from .common import PARTITION, assume_role, name, tags
from .waf import Waf

ACCESS_LOG_FORMAT = ('{"requestId":"$context.requestId","ip":"$context.identity.sourceIp",'
                     '"method":"$context.httpMethod","path":"$context.path","status":"$context.status",'
                     '"latencyMs":"$context.responseLatency","correlationId":"$context.requestId"}')


class Api(Construct):
    def __init__(self, scope: Construct, id: str, *, region: str, cfg: dict[str, Any], handler: LambdaFunction,
                 key_arn: str) -> None:
        super().__init__(scope, id)
        acfg, dns = cfg["api"], cfg["dns"]
        self.rest_api = ApiGatewayRestApi(self, "rest-api", name=name("api", region),
                                          endpoint_configuration={"types": ["REGIONAL"]},
                                          lifecycle={"create_before_destroy": True}, tags=tags())
        validator = ApiGatewayRequestValidator(self, "validator", rest_api_id=self.rest_api.id, name="parameters",
                                               validate_request_parameters=True, validate_request_body=False)
        proxy = ApiGatewayResource(self, "proxy", rest_api_id=self.rest_api.id,
                                   parent_id=self.rest_api.root_resource_id, path_part="{proxy+}")
        integrations = []
        for label, resource_id in (("root", self.rest_api.root_resource_id), ("proxy", proxy.id)):
            # The app authenticates tenants itself (Bearer API keys, chalicelib.services.tenants).
            method = ApiGatewayMethod(self, f"any-{label}", rest_api_id=self.rest_api.id, resource_id=resource_id,
                                      http_method="ANY", authorization="NONE",
                                      request_validator_id=validator.id)
            integrations.append(ApiGatewayIntegration(
                self, f"lambda-{label}", rest_api_id=self.rest_api.id, resource_id=resource_id,
                http_method=method.http_method, type="AWS_PROXY", integration_http_method="POST",
                uri=handler.invoke_arn))
        LambdaPermission(self, "invoke", statement_id="AllowApiGateway", action="lambda:InvokeFunction",
                         function_name=handler.function_name, principal="apigateway.amazonaws.com",
                         source_arn=f"{self.rest_api.execution_arn}/*/*")
        deployment = ApiGatewayDeployment(
            self, "deployment", rest_api_id=self.rest_api.id,
            triggers={"redeploy": Fn.sha1(Fn.jsonencode([proxy.id] + [i.id for i in integrations]))},
            lifecycle={"create_before_destroy": True}, depends_on=integrations)
        cw_role = IamRole(self, "cloudwatch-role", name=name("apigw-logs", region),
                          assume_role_policy=assume_role("apigateway.amazonaws.com"), tags=tags())
        IamRolePolicyAttachment(self, "cloudwatch-role-managed", role=cw_role.name, policy_arn=(
            f"arn:{PARTITION}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"))
        account = ApiGatewayAccount(self, "account", cloudwatch_role_arn=cw_role.arn)
        access_logs = CloudwatchLogGroup(self, "access-logs", name=f"/payments/{region}/api-access",
                                         retention_in_days=365, kms_key_id=key_arn, tags=tags())
        self.stage = ApiGatewayStage(
            self, "stage", rest_api_id=self.rest_api.id, deployment_id=deployment.id, stage_name=acfg["stage"],
            xray_tracing_enabled=True, tags=tags(), depends_on=[account],
            access_log_settings={"destination_arn": access_logs.arn, "format": ACCESS_LOG_FORMAT})
        ApiGatewayMethodSettings(self, "settings", rest_api_id=self.rest_api.id, stage_name=self.stage.stage_name,
                                 method_path="*/*", settings={"metrics_enabled": True, "logging_level": "INFO",
                                                              "data_trace_enabled": False})
        self.host = f"{self.rest_api.id}.execute-api.{region}.amazonaws.com"
        self.health_check = Route53HealthCheck(
            self, "health", type="HTTPS", fqdn=self.host, port=443,
            # Fast checks (10 s, the shortest Route 53 offers) on a /health that answers 503 when the
            # region should not take traffic (store, bus or its lease gone): a dead region is out of
            # DNS answers in interval x threshold, then clients follow within the record's TTL.
            resource_path=f"/{acfg['stage']}/health", request_interval=dns["health_check_interval_s"],
            failure_threshold=dns["health_check_failure_threshold"],
            measure_latency=True, tags=tags(Name=name("health", region)))
        self.waf = Waf(self, "waf", region=region, cfg=cfg, stage_arn=self.stage.arn, key_arn=key_arn)
        zone = DataAwsRoute53Zone(self, "zone", name=dns["zone_name"], private_zone=False)
        public_name = f"{dns['record_name']}.{dns['zone_name']}"
        certificate = (acfg.get("certificate_arns") or {}).get(region) or self._certificate(public_name, zone)
        self.domain = ApiGatewayDomainName(
            self, "domain", domain_name=public_name, regional_certificate_arn=certificate,
            endpoint_configuration={"types": ["REGIONAL"]}, security_policy="TLS_1_2", tags=tags())
        ApiGatewayBasePathMapping(self, "mapping", api_id=self.rest_api.id, stage_name=self.stage.stage_name,
                                  base_path=acfg["stage"], domain_name=self.domain.domain_name)
        routing: dict[str, Any]
        if dns["routing"] == "failover":
            primary = region == cfg["primary_region"]
            routing = {"failover_routing_policy": {"type": "PRIMARY" if primary else "SECONDARY"}}
        else:
            routing = {"latency_routing_policy": {"region": region}}
        # A CNAME, not an alias: an alias answer carries its target's TTL (API Gateway's, which we
        # cannot set), a CNAME ours, so resolvers drop a failed region's answer within ttl_s.
        self.record = Route53Record(
            self, "record", zone_id=zone.zone_id, name=public_name, type="CNAME", ttl=dns["ttl_s"],
            records=[self.domain.regional_domain_name],
            set_identifier=region, health_check_id=self.health_check.id, **routing)

    def _certificate(self, public_name: str, zone: DataAwsRoute53Zone) -> str:
        """An ACM certificate for the record's name in this region, validated through the zone.
        Every region's certificate for the name asks for the same validation record, hence
        allow_overwrite."""
        cert = AcmCertificate(self, "certificate", domain_name=public_name, validation_method="DNS",
                              lifecycle={"create_before_destroy": True}, tags=tags())
        option = cert.domain_validation_options.get(0)
        record = Route53Record(self, "certificate-validation", zone_id=zone.zone_id,
                               name=option.resource_record_name, type=option.resource_record_type,
                               records=[option.resource_record_value], ttl=60, allow_overwrite=True)
        return AcmCertificateValidation(self, "certificate-valid", certificate_arn=cert.arn,
                                        validation_record_fqdns=[record.fqdn]).certificate_arn
