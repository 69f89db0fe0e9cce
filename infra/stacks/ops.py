"""CloudWatch alarms for one region: failure-queue depth, consumer lag, Lambda errors and throttles."""
from __future__ import annotations

from typing import Any

from cdktn_provider_aws.cloudwatch_metric_alarm import CloudwatchMetricAlarm
from cdktn_provider_aws.sns_topic import SnsTopic
from constructs import Construct

from .lambdas import Functions, consumer_group
from .common import name, tags
from .. import settings


class Alarms(Construct):
    def __init__(self, scope: Construct, id: str, *, region: str, cfg: dict[str, Any], functions: Functions,
                 cluster_name: str, key_arn: str) -> None:
        super().__init__(scope, id)
        acfg = cfg["alarms"]
        self.topic = SnsTopic(self, "alarms", name=name("alarms", region), kms_master_key_id=key_arn, tags=tags())
        common = {"alarm_actions": [self.topic.arn], "ok_actions": [self.topic.arn], "period": acfg["period_s"],
                  "evaluation_periods": 1, "treat_missing_data": "notBreaching", "tags": tags()}
        self.alarms: dict[str, CloudwatchMetricAlarm] = {}
        # Dead letters: records the event source mappings gave up on, and failed async invocations.
        queues = {**{f"{k}-failures": q for k, q in functions.failure_queues.items()}, "async-dlq": functions.async_dlq}
        for label, queue in queues.items():
            self.alarms[f"dlq-{label}"] = CloudwatchMetricAlarm(
                self, f"dlq-{label}", alarm_name=name(region, "dlq-depth", label), namespace="AWS/SQS",
                metric_name="ApproximateNumberOfMessagesVisible", dimensions={"QueueName": queue.name},
                statistic="Maximum", comparison_operator="GreaterThanOrEqualToThreshold",
                threshold=acfg["dlq_depth_threshold"], alarm_description=f"{label}: dead letters waiting", **common)
        for stage, module in settings.STAGES.items():
            for topic in module.CONSUMES:
                group = consumer_group(region, stage, topic)
                self.alarms[f"lag-{group}"] = CloudwatchMetricAlarm(
                    self, f"lag-{stage}-{topic.replace('.', '-')}", alarm_name=name(region, "lag", stage, topic),
                    namespace="AWS/Kafka", metric_name="MaxOffsetLag",
                    dimensions={"Cluster Name": cluster_name, "Consumer Group": group, "Topic": topic},
                    statistic="Maximum", comparison_operator="GreaterThanThreshold",
                    threshold=acfg["max_offset_lag_threshold"], alarm_description=f"{stage} falls behind on {topic}",
                    **common)
        for fn, function in functions.functions.items():
            for metric, threshold in (("Errors", acfg["lambda_errors_threshold"]),
                                      ("Throttles", acfg["lambda_throttles_threshold"])):
                self.alarms[f"{metric.lower()}-{fn}"] = CloudwatchMetricAlarm(
                    self, f"{metric.lower()}-{fn}", alarm_name=name(region, fn, metric.lower()),
                    namespace="AWS/Lambda", metric_name=metric, dimensions={"FunctionName": function.function_name},
                    statistic="Sum", comparison_operator="GreaterThanOrEqualToThreshold", threshold=threshold,
                    alarm_description=f"{fn}: Lambda {metric}", **common)
