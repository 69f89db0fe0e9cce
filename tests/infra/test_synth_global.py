"""The global stack: KMS multi-region key, DynamoDB global table, tenants, Glue, audit."""
from __future__ import annotations

import json

from chalicelib import config as pc

from infra import settings
from tests.infra.conftest import ref


def test_one_global_stack_and_one_per_region(synth, cfg):
    assert set(synth.stacks) == {"global"} | {f"region-{r}" for r in cfg["regions"]}
    assert len(cfg["regions"]) >= 2


def test_platform_key_is_multi_region_with_rotation_policy_and_replicas(synth, cfg):
    logical, key = synth.one("global", "aws_kms_key")
    assert key["multi_region"] is True and key["enable_key_rotation"] is True
    statements = json.loads(key["policy"])["Statement"]
    assert any(s["Action"] == "kms:*" and s["Principal"]["AWS"].endswith(":root") for s in statements)
    replicas = synth.resources("global", "aws_kms_replica_key").values()
    # A replica in every other deployment region, and where only the control table has a replica.
    table_only = [r for r in cfg["control"]["replicas"] if r not in cfg["regions"]]
    assert sorted(r["region"] for r in replicas) == sorted(
        [r for r in cfg["regions"] if r != cfg["primary_region"]] + table_only)
    for r in replicas:
        assert r["primary_key_arn"] == ref("aws_kms_key", logical, "arn") and json.loads(r["policy"])
        if r["region"] in table_only:  # nothing but the control table runs there: only DynamoDB uses it
            services = {s["Principal"]["Service"] if isinstance(s["Principal"].get("Service"), str) else
                        tuple(s["Principal"]["Service"]) for s in json.loads(r["policy"])["Statement"]
                        if "Service" in s["Principal"]}
            assert services == {("dynamodb.amazonaws.com",)}, services
    aliases = synth.resources("global", "aws_kms_alias").values()
    assert {a["name"] for a in aliases} == {pc.DEFAULTS[pc.KMS_KEY_ID]}
    assert len(aliases) == len(cfg["regions"]) + len(table_only)


def payments_table(synth, cfg) -> dict:
    [table] = [t for t in synth.resources("global", "aws_dynamodb_table").values()
               if t["name"] == cfg["dynamodb"]["table_name"]]
    return table


def test_table_is_a_global_table_with_the_adapter_layout(synth, cfg):
    table = payments_table(synth, cfg)
    key_logical = next(iter(synth.resources("global", "aws_kms_key")))
    assert table["name"] == cfg["dynamodb"]["table_name"] == pc.DEFAULTS[pc.PAYMENTS_TABLE]
    assert (table["hash_key"], table["range_key"]) == (pc.TABLE_PK, pc.TABLE_SK)
    assert table["point_in_time_recovery"] == {"enabled": True}
    assert table["server_side_encryption"] == {"enabled": True, "kms_key_arn": ref("aws_kms_key", key_logical, "arn")}
    assert table["ttl"] == {"attribute_name": pc.TTL_ATTRIBUTE, "enabled": True}
    assert table["stream_enabled"] is True and table["stream_view_type"] == "NEW_AND_OLD_IMAGES"
    assert table["deletion_protection_enabled"] is True
    [gsi] = table["global_secondary_index"]
    assert (gsi["name"], gsi["hash_key"], gsi["range_key"]) == (pc.STATUS_INDEX, pc.STATUS_INDEX_PK, pc.STATUS_INDEX_SK)
    assert {a["name"] for a in table["attribute"]} == {pc.TABLE_PK, pc.TABLE_SK, pc.STATUS_INDEX_PK, pc.STATUS_INDEX_SK}
    assert table["billing_mode"] == "PAY_PER_REQUEST"
    replicas = {r["region_name"]: r for r in table["replica"]}
    assert set(replicas) | {cfg["primary_region"]} == set(cfg["regions"])
    replica_keys = {r["region"]: logical for logical, r in synth.resources("global", "aws_kms_replica_key").items()}
    for region, replica in replicas.items():
        assert replica["kms_key_arn"] == ref("aws_kms_replica_key", replica_keys[region], "arn")
        assert replica["point_in_time_recovery"] is True


def test_provisioned_mode_adds_target_tracking_on_reads_and_writes(tmp_path, cfg):
    """Synthesize the table construct alone with capacity_mode=provisioned."""
    from cdktn import App, TerraformStack
    from cdktn_provider_aws.provider import AwsProvider

    from infra.stacks.dynamodb import PaymentsTable

    app = App(outdir=str(tmp_path))
    stack = TerraformStack(app, "t")
    AwsProvider(stack, "aws", region=cfg["primary_region"])
    pcfg = {**cfg, "dynamodb": {**cfg["dynamodb"], "capacity_mode": "provisioned"}}
    PaymentsTable(stack, "ddb", cfg=pcfg, primary_region=cfg["primary_region"],
                  key_arns={r: f"arn:aws:kms:{r}:1:key/mrk-1" for r in cfg["regions"]})
    app.synth()
    out = json.loads((tmp_path / "stacks" / "t" / "cdk.tf.json").read_text())["resource"]
    assert next(iter(out["aws_dynamodb_table"].values()))["billing_mode"] == "PROVISIONED"
    policies = out["aws_appautoscaling_policy"].values()
    metrics = {(p["region"], p["target_tracking_scaling_policy_configuration"]["predefined_metric_specification"]
                ["predefined_metric_type"]) for p in policies}
    assert metrics == {(r, m) for r in cfg["regions"]
                       for m in ("DynamoDBReadCapacityUtilization", "DynamoDBWriteCapacityUtilization")}
    dims = {t["scalable_dimension"] for t in out["aws_appautoscaling_target"].values()}
    assert dims == {"dynamodb:table:ReadCapacityUnits", "dynamodb:table:WriteCapacityUnits",
                    "dynamodb:index:ReadCapacityUnits", "dynamodb:index:WriteCapacityUnits"}


def test_each_tenant_role_is_confined_to_its_keys_and_encryption_context(synth, tenants):
    assert len(tenants) >= 2
    roles = synth.resources("global", "aws_iam_role")
    policies = [json.loads(p["policy"]) for p in synth.resources("global", "aws_iam_role_policy").values()]
    for t in tenants:
        assert any(r["name"] == f"payments-tenant-{t.name}" for r in roles.values())
        [doc] = [p for p in policies if any(
            s.get("Condition", {}).get("ForAllValues:StringLike", {}).get("dynamodb:LeadingKeys", [None])[0]
            == t.tenant_id for s in p["Statement"])]
        table_st, kms_st = doc["Statement"]
        assert table_st["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"] == [t.tenant_id, f"{t.tenant_id}#*"]
        assert all(a.startswith("dynamodb:") for a in table_st["Action"]) and "dynamodb:Scan" not in table_st["Action"]
        assert kms_st["Condition"] == {"StringEquals": {"kms:EncryptionContext:tenant_id": t.tenant_id}}


def test_glue_registry_holds_every_event_schema(synth):
    _, registry = synth.one("global", "aws_glue_registry")
    schemas = {s["schema_name"]: s for s in synth.resources("global", "aws_glue_schema").values()}
    files = settings.event_schemas()
    assert files and set(schemas) == {p.stem for p in files}
    for p in files:
        assert schemas[p.stem]["data_format"] == "JSON"
        assert json.loads(schemas[p.stem]["schema_definition"]) == json.loads(p.read_text())


def test_cloudtrail_and_config_in_every_region(synth, cfg):
    _, trail = synth.one("global", "aws_cloudtrail")
    assert trail["is_multi_region_trail"] and trail["enable_log_file_validation"] and trail["kms_key_id"]
    recorders = synth.resources("global", "aws_config_configuration_recorder").values()
    assert sorted(r["region"] for r in recorders) == sorted(cfg["regions"])
    rules = synth.resources("global", "aws_config_config_rule").values()
    for region in cfg["regions"]:
        assert len([r for r in rules if r["region"] == region and r["source"]["owner"] == "AWS"]) >= 3
    statuses = synth.resources("global", "aws_config_configuration_recorder_status").values()
    assert all(s["is_enabled"] for s in statuses) and len(statuses) == len(cfg["regions"])
