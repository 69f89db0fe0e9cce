"""Each regional stack: MSK, topics, Replicator, Lambdas and mappings, API, health checks, alarms."""
from __future__ import annotations

import ast
import json
from itertools import permutations

import pytest

from chalicelib import config as pc
from chalicelib.domain.events import dlq_topic
from chalicelib.stages import STAGES, topics
from infra import settings
from infra.stacks.artifacts import PLACEHOLDER_HASH, source_hash
from tests.infra.conftest import ROOT, ref

REQUIRED_ENV = {pc.PLATFORM_MODE, pc.PLATFORM_REGION, pc.PAYMENTS_TABLE, pc.KAFKA_BOOTSTRAP_SERVERS,
                pc.KAFKA_SECURITY, pc.KMS_KEY_ID}
ADOT_ENV = {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_PROPAGATORS"}


def regions(cfg):
    return list(cfg["regions"])


@pytest.fixture(params=["us-east-1", "eu-west-1"])
def region(request, cfg):
    assert request.param in cfg["regions"]
    return request.param


def stack(region):
    return f"region-{region}"


def functions(synth, region):
    return {f["function_name"]: (logical, f) for logical, f in synth.resources(stack(region), "aws_lambda_function").items()}


def test_msk_is_graviton_in_three_azs_with_tls_iam_cmk_and_logs(synth, cfg, region):
    logical, cluster = synth.one(stack(region), "aws_msk_cluster")
    nodes = cluster["broker_node_group_info"]
    assert nodes["instance_type"].startswith("kafka.m7g.")
    assert len(nodes["client_subnets"]) == 3
    subnets = synth.resources(stack(region), "aws_subnet")
    azs = {subnets[s.split(".")[1]]["availability_zone"] for s in nodes["client_subnets"]}
    assert azs == set(cfg["regions"][region]["azs"])
    assert cluster["number_of_broker_nodes"] == 3 * cfg["msk"]["brokers_per_az"]
    assert cluster["encryption_info"]["encryption_in_transit"] == {"client_broker": "TLS", "in_cluster": True}
    assert cluster["encryption_info"]["encryption_at_rest_kms_key_arn"] == ref("aws_kms_key", "infra-key", "arn")
    assert cluster["client_authentication"] == {"sasl": {"iam": True}, "unauthenticated": False}
    assert cluster["logging_info"]["broker_logs"]["cloudwatch_logs"]["enabled"] is True
    assert not synth.resources(stack(region), "aws_msk_serverless_cluster")


def test_serverless_switch_builds_msk_serverless(tmp_path, cfg):
    from cdktn import App

    from infra.stacks.regional_stack import RegionalStack

    scfg = {**cfg, "msk": {**cfg["msk"], "serverless": True}}
    app = App(outdir=str(tmp_path))
    RegionalStack(app, "r", region="eu-west-1", cfg=scfg)
    app.synth()
    res = json.loads((tmp_path / "stacks" / "r" / "cdk.tf.json").read_text())["resource"]
    assert "aws_msk_cluster" not in res
    [cluster] = res["aws_msk_serverless_cluster"].values()
    assert cluster["client_authentication"] == {"sasl": {"iam": {"enabled": True}}}
    env = next(iter(res["aws_lambda_function"].values()))["environment"]["variables"]
    assert "aws_msk_serverless_cluster" in env[pc.KAFKA_BOOTSTRAP_SERVERS]


def test_topic_admin_creates_every_stage_topic_and_its_dlq(synth, cfg, region):
    _, invocation = synth.one(stack(region), "aws_lambda_invocation")
    spec = json.loads(invocation["input"])
    names = [t["name"] for t in spec["topics"]]
    assert sorted(names) == sorted(topics() + [dlq_topic(t) for t in topics()])
    for t in spec["topics"]:
        kind = "dlq" if t["name"].endswith(".dlq") else "default"
        expected = {**cfg["msk"]["topics"][kind], **cfg["msk"]["topics"]["overrides"].get(t["name"], {})}
        assert t["partitions"] == expected["partitions"]
        assert int(t["config"]["retention.ms"]) == expected["retention_hours"] * 3_600_000
    fns = functions(synth, region)
    assert invocation["function_name"] == ref("aws_lambda_function", fns["payments-topic-admin"][0], "function_name")
    assert "aws_msk_cluster" in spec["bootstrap_servers"]


def test_replicator_for_every_ordered_region_pair(synth, cfg):
    seen = set()
    for src, dst in permutations(regions(cfg), 2):
        reps = [r for r in synth.resources(stack(src), "aws_msk_replicator").values() if r["region"] == dst]
        assert len(reps) == 1, (src, dst)
        rep = reps[0]
        local, _ = synth.one(stack(src), "aws_msk_cluster")
        info = rep["replication_info_list"]
        assert info["source_kafka_cluster_arn"] == ref("aws_msk_cluster", local, "arn")
        peers = {d["cluster_name"]: logical for logical, d in synth.data(stack(src), "aws_msk_cluster").items()}
        assert info["target_kafka_cluster_arn"] == ref("aws_msk_cluster", peers[f"payments-{dst}"], "arn", data=True)
        assert synth.data(stack(src), "aws_msk_cluster")[peers[f"payments-{dst}"]]["region"] == dst
        [topic_rep] = info["topic_replication"]
        assert set(topic_rep["topics_to_replicate"]) >= set(topics())
        [groups] = info["consumer_group_replication"]
        assert groups["synchronise_consumer_group_offsets"] is True
        # Only the source region's own groups, named for it: never a group the target's stages use.
        assert groups["consumer_groups_to_replicate"] and all(
            g.startswith(f"payments-{src}-") for g in groups["consumer_groups_to_replicate"])
        seen.add((src, dst))
    assert len(seen) == len(regions(cfg)) * (len(regions(cfg)) - 1)


def test_every_lambda_is_arm64_traced_with_adot_and_reserved_concurrency(synth, cfg, region):
    fns = functions(synth, region)
    expected = {f"payments-{s}" for s in STAGES} | {"payments-api", "payments-outbox-relay", "payments-topic-admin",
                                                    "payments-reconciliation", "payments-reports",
                                                    "payments-lease-keeper"}
    assert set(fns) == expected
    for name, (_, f) in fns.items():
        assert f["architectures"] == ["arm64"], name
        assert f["tracing_config"] == {"mode": "Active"}
        assert f["layers"] == [cfg["regions"][region]["adot_layer_arn"]] and ":layer:aws-otel-python-arm64" in f["layers"][0]
        assert len(f["vpc_config"]["subnet_ids"]) == 3
    for stage in STAGES:
        assert fns[f"payments-{stage}"][1]["handler"] == f"app.{stage}"
        assert fns[f"payments-{stage}"][1]["filename"].endswith("/build/chalice/deployment.zip")
    assert fns["payments-api"][1]["handler"] == "app.app"
    assert fns["payments-outbox-relay"][1]["handler"] == "app.outbox_relay"
    assert fns["payments-reports"][1]["handler"] == "app.reports"
    conc = cfg["lambda"]["reserved_concurrency"]
    assert fns["payments-api"][1]["reserved_concurrent_executions"] == conc["api"]


def test_stage_reservations_cover_their_partitions_and_leave_100_unreserved(synth, cfg, region):
    """20 per stage throttled capture (36 partitions), settlement and notification, and 297 in
    all left under 100 of the default 1,000 unreserved, which Lambda refuses (defect 6)."""
    fns = functions(synth, region)
    partitions = {t.name: t.partitions for t in settings.platform_topics(cfg)}
    for stage, module in STAGES.items():
        assert fns[f"payments-{stage}"][1]["reserved_concurrent_executions"] == sum(
            partitions[t] for t in module.CONSUMES), stage
    total = sum(f.get("reserved_concurrent_executions", 0) for _, f in fns.values())
    assert cfg["lambda"]["account_concurrency"] - total >= settings.UNRESERVED_MINIMUM == 100


def test_reservations_are_optional_and_checked_against_the_quota(cfg):
    off = {**cfg, "lambda": {**cfg["lambda"], "reserved_concurrency": {"enabled": False}}}
    assert {k: v for k, v in settings.reserved_concurrency(off).items() if v} == {"reconciliation": 1,
                                                                                  "lease_keeper": 1}
    wide = {**cfg, "msk": {**cfg["msk"], "topics": {**cfg["msk"]["topics"],
                                                      "default": {"partitions": 96, "retention_hours": 1}}}}
    with pytest.raises(settings.InfraConfigError, match="unreserved"):
        settings.reserved_concurrency(wide)


def stream_decorators() -> dict[str, str]:
    """starting_position of each @app.on_dynamodb_record in chalice_app/app.py, by name."""
    tree = ast.parse((ROOT / "chalice_app" / "app.py").read_text())
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "on_dynamodb_record":
            kw = {k.arg: k.value.value for k in node.keywords if isinstance(k.value, ast.Constant)}
            found[kw["name"]] = kw["starting_position"]
    return found


def test_stream_mappings_start_where_the_handlers_decorators_say(synth, region):
    """The relay started at LATEST: outbox items written before the mapping existed, or while it
    was replaced, were never relayed (defect 7)."""
    decorators = stream_decorators()
    assert decorators["outbox_relay"] == "TRIM_HORIZON"
    fns = functions(synth, region)
    by_fn = {m["function_name"]: m for m in synth.resources(stack(region), "aws_lambda_event_source_mapping").values()}
    for name, fn in (("outbox_relay", "payments-outbox-relay"), ("reports", "payments-reports")):
        mapping = by_fn[ref("aws_lambda_function", fns[fn][0], "arn")]
        assert mapping["starting_position"] == decorators[name], name


def test_lambda_env_uses_the_config_module_names(synth, cfg, region):
    constants = {v for k, v in vars(pc).items() if k.isupper() and isinstance(v, str) and k == v}
    for name, (_, f) in functions(synth, region).items():
        env = f["environment"]["variables"]
        assert set(env) - ADOT_ENV <= constants, (name, set(env) - ADOT_ENV - constants)
        if name != "payments-topic-admin":
            assert REQUIRED_ENV <= set(env)
            assert env[pc.PLATFORM_MODE] == "aws" and env[pc.KAFKA_SECURITY] == "iam"
            assert env[pc.PLATFORM_REGION] == region
            assert env[pc.PAYMENTS_TABLE] == cfg["dynamodb"]["table_name"]
            assert env[pc.KMS_KEY_ID] == pc.DEFAULTS[pc.KMS_KEY_ID]
            local, _ = synth.one(stack(region), "aws_msk_cluster")
            assert env[pc.KAFKA_BOOTSTRAP_SERVERS] == ref("aws_msk_cluster", local, "bootstrap_brokers_sasl_iam")


def test_msk_mapping_per_stage_topic_with_on_failure_destination(synth, cfg, region):
    fns = {ref("aws_lambda_function", logical, "arn"): name for name, (logical, _) in functions(synth, region).items()}
    cluster, _ = synth.one(stack(region), "aws_msk_cluster")
    queues = synth.resources(stack(region), "aws_sqs_queue")
    esm = cfg["lambda"]["esm"]
    pairs = set()
    for m in synth.resources(stack(region), "aws_lambda_event_source_mapping").values():
        if m["event_source_arn"] != ref("aws_msk_cluster", cluster, "arn"):
            continue
        [topic] = m["topics"]
        pairs.add((fns[m["function_name"]], topic))
        assert m["batch_size"] == esm["batch_size"]
        assert m["maximum_batching_window_in_seconds"] == esm["batch_window_s"]
        dest = m["destination_config"]["on_failure"]["destination_arn"]
        assert dest.startswith("${aws_sqs_queue.") and dest.split(".")[1] in queues
        assert m["amazon_managed_kafka_event_source_config"]["consumer_group_id"].startswith(f"payments-{region}-")
    assert pairs == {(f"payments-{s}", t) for s, m in STAGES.items() for t in m.CONSUMES}


def test_reports_consumer_reads_the_same_stream_outbox_inserts_only(synth, cfg, region):
    fns = functions(synth, region)
    reports = ref("aws_lambda_function", fns["payments-reports"][0], "arn")
    relay = ref("aws_lambda_function", fns["payments-outbox-relay"][0], "arn")
    mappings = synth.resources(stack(region), "aws_lambda_event_source_mapping").values()
    [m] = [m for m in mappings if m["function_name"] == reports]
    [r] = [m for m in mappings if m["function_name"] == relay]
    assert m["event_source_arn"] == r["event_source_arn"]  # its own mapping on this region's table stream
    [f] = m["filter_criteria"]["filter"]
    assert json.loads(f["pattern"]) == pc.outbox_stream_filter(region)
    assert json.loads(f["pattern"])["dynamodb"]["NewImage"]["origin"] == {"S": [region]}
    [g] = r["filter_criteria"]["filter"]  # the relay too: another region's items are never re-published
    assert json.loads(g["pattern"]) == pc.outbox_stream_filter(region)
    assert m["bisect_batch_on_function_error"] is True and m["maximum_retry_attempts"] >= 1
    assert m["destination_config"]["on_failure"]["destination_arn"].startswith("${aws_sqs_queue.")


def test_relay_reads_this_regions_table_stream(synth, cfg, region):
    fns = functions(synth, region)
    relay = ref("aws_lambda_function", fns["payments-outbox-relay"][0], "arn")
    [m] = [m for m in synth.resources(stack(region), "aws_lambda_event_source_mapping").values()
           if m["function_name"] == relay]
    [(logical, table)] = synth.data(stack(region), "aws_dynamodb_table").items()
    assert table["name"] == cfg["dynamodb"]["table_name"]
    assert m["event_source_arn"] == ref("aws_dynamodb_table", logical, "stream_arn", data=True)
    assert m["destination_config"]["on_failure"]["destination_arn"].startswith("${aws_sqs_queue.")


def every_minute(synth, region: str, function_logical: str) -> None:
    """The function is the target of exactly one rate(1 minute) rule that may invoke it."""
    rules = synth.resources(stack(region), "aws_cloudwatch_event_rule")
    [target] = [t for t in synth.resources(stack(region), "aws_cloudwatch_event_target").values()
                if t["arn"] == ref("aws_lambda_function", function_logical, "arn")]
    [rule_logical] = [n for n in rules if target["rule"] == ref("aws_cloudwatch_event_rule", n, "name")]
    assert rules[rule_logical]["schedule_expression"] == "rate(1 minute)"
    [perm] = [p for p in synth.resources(stack(region), "aws_lambda_permission").values()
              if p["principal"] == "events.amazonaws.com"
              and p["function_name"] == ref("aws_lambda_function", function_logical, "function_name")]
    assert perm["source_arn"] == ref("aws_cloudwatch_event_rule", rule_logical, "arn")


def test_reconciliation_runs_every_minute_from_an_eventbridge_rule(synth, region):
    logical, fn = functions(synth, region)["payments-reconciliation"]
    assert fn["handler"] == "app.reconcile_unknown_outcomes" and fn["architectures"] == ["arm64"]
    assert fn["reserved_concurrent_executions"] == 1  # one sweeper: no two workers check the same payment
    every_minute(synth, region, logical)


def test_regional_api_proxies_to_the_api_lambda_with_a_health_check(synth, cfg, region):
    api_logical, api = synth.one(stack(region), "aws_api_gateway_rest_api")
    assert api["endpoint_configuration"]["types"] == ["REGIONAL"]
    fns = functions(synth, region)
    integrations = synth.resources(stack(region), "aws_api_gateway_integration").values()
    assert len(integrations) == 2
    for i in integrations:
        assert i["type"] == "AWS_PROXY"
        assert i["uri"] == ref("aws_lambda_function", fns["payments-api"][0], "invoke_arn")
    assert any(r["path_part"] == "{proxy+}" for r in synth.resources(stack(region), "aws_api_gateway_resource").values())
    hc_logical, hc = synth.one(stack(region), "aws_route53_health_check")
    assert hc["type"] == "HTTPS" and hc["resource_path"] == f"/{cfg['api']['stage']}/health"
    assert ref("aws_api_gateway_rest_api", api_logical, "id") in hc["fqdn"] and region in hc["fqdn"]
    [record] = [r for r in synth.resources(stack(region), "aws_route53_record").values() if "set_identifier" in r]
    assert record["health_check_id"] == ref("aws_route53_health_check", hc_logical, "id")
    assert record["set_identifier"] == region
    assert record.get("latency_routing_policy") == {"region": region} or "failover_routing_policy" in record
    # A dead region leaves DNS answers within 10 s x 2 checks, and resolvers follow within the TTL
    # (a CNAME carries ours; an alias would carry API Gateway's).
    assert (hc["request_interval"], hc["failure_threshold"]) == (10, 2)
    assert record["type"] == "CNAME" and record["ttl"] <= 10 and "alias" not in record
    domain = synth.one(stack(region), "aws_api_gateway_domain_name")[0]
    assert record["records"] == [ref("aws_api_gateway_domain_name", domain, "regional_domain_name")]


def test_alarms_cover_dlq_depth_lag_errors_and_throttles(synth, region):
    alarms = list(synth.resources(stack(region), "aws_cloudwatch_metric_alarm").values())
    by_metric = {}
    for a in alarms:
        by_metric.setdefault((a["namespace"], a["metric_name"]), []).append(a)
        assert a["alarm_actions"]
    groups = {a["dimensions"]["Consumer Group"] for a in by_metric[("AWS/Kafka", "MaxOffsetLag")]}
    mappings = synth.resources(stack(region), "aws_lambda_event_source_mapping").values()
    assert groups == {m["amazon_managed_kafka_event_source_config"]["consumer_group_id"]
                      for m in mappings if "amazon_managed_kafka_event_source_config" in m}
    queues = {ref("aws_sqs_queue", logical, "name") for logical in synth.resources(stack(region), "aws_sqs_queue")}
    assert {a["dimensions"]["QueueName"] for a in by_metric[("AWS/SQS", "ApproximateNumberOfMessagesVisible")]} == queues
    names = set(synth.resources(stack(region), "aws_lambda_function"))
    for metric in ("Errors", "Throttles"):
        assert {a["dimensions"]["FunctionName"] for a in by_metric[("AWS/Lambda", metric)]} == {
            ref("aws_lambda_function", logical, "function_name")
            for logical in synth.resources(stack(region), "aws_lambda_function")}
    assert len(names) == len(by_metric[("AWS/Lambda", "Errors")])


def test_artifact_hash_is_a_placeholder_until_the_zip_exists(tmp_path):
    missing = tmp_path / "deployment.zip"
    assert source_hash(missing) == PLACEHOLDER_HASH
    missing.write_bytes(b"zip")
    assert source_hash(missing) != PLACEHOLDER_HASH and len(source_hash(missing)) == 44
