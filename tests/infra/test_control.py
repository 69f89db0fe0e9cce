"""The leases' control table (multi-region strong consistency) and the lease keeper in every region."""
from __future__ import annotations

import copy
import json

import pytest
from chalicelib import config as pc

from infra import settings
from tests.infra.conftest import ref

REGIONS = ["us-east-1", "eu-west-1"]


def stack(region: str) -> str:
    return settings.regional_stack_name(region)


def control_table(synth, cfg) -> tuple[str, dict]:
    found = [(n, t) for n, t in synth.resources("global", "aws_dynamodb_table").items()
             if t["name"] == cfg["control"]["table_name"]]
    assert len(found) == 1, found
    return found[0]


def functions(synth, region: str) -> dict[str, tuple[str, dict]]:
    return {f["function_name"]: (n, f) for n, f in synth.resources(stack(region), "aws_lambda_function").items()}


def test_control_table_exists_once_in_the_global_stack_only(synth, cfg):
    control_table(synth, cfg)
    assert cfg["control"]["table_name"] == pc.DEFAULTS[pc.CONTROL_TABLE]
    for region in REGIONS:
        assert not [t for t in synth.resources(stack(region), "aws_dynamodb_table").values()
                    if t["name"] == cfg["control"]["table_name"]]


def test_control_table_is_mrsc_two_replicas_and_a_witness_in_one_region_set(synth, cfg):
    _, table = control_table(synth, cfg)
    first, *others = cfg["control"]["replicas"]
    assert table["region"] == first
    assert [r["region_name"] for r in table["replica"]] == others
    assert all(r["consistency_mode"] == "STRONG" for r in table["replica"])
    # The provider takes a witness only beside a single STRONG replica (three regions in all).
    assert len(table["replica"]) == 1 and table["global_table_witness"] == {"region_name": cfg["control"]["witness"]}
    members = {first, *others, cfg["control"]["witness"]}
    assert len(members) == 3
    assert any(members <= s for s in settings.MRSC_REGION_SETS.values())


def test_control_table_keys_billing_encryption_pitr_and_protection(synth, cfg):
    _, table = control_table(synth, cfg)
    assert (table["hash_key"], table["range_key"]) == (pc.TABLE_PK, pc.TABLE_SK)
    assert table["attribute"] == [{"name": pc.TABLE_PK, "type": "S"}, {"name": pc.TABLE_SK, "type": "S"}]
    assert table["billing_mode"] == "PAY_PER_REQUEST"
    key_logical = next(iter(synth.resources("global", "aws_kms_key")))
    assert table["server_side_encryption"] == {"enabled": True, "kms_key_arn": ref("aws_kms_key", key_logical, "arn")}
    replica_keys = {k["region"]: n for n, k in synth.resources("global", "aws_kms_replica_key").items()}
    for replica in table["replica"]:
        assert replica["kms_key_arn"] == ref("aws_kms_replica_key", replica_keys[replica["region_name"]], "arn")
        assert replica["point_in_time_recovery"] is True and replica["deletion_protection_enabled"] is True
    assert table["point_in_time_recovery"] == {"enabled": True}
    assert table["deletion_protection_enabled"] is True and table["lifecycle"] == {"prevent_destroy": True}


def test_control_table_has_no_ttl_no_stream_and_no_indexes(synth, cfg):
    """MRSC takes no TTL and no local secondary indexes; nothing reads its changes, so no stream."""
    _, table = control_table(synth, cfg)
    for absent in ("ttl", "stream_enabled", "stream_view_type", "local_secondary_index", "global_secondary_index"):
        assert absent not in table, absent


@pytest.mark.parametrize("region", REGIONS)
def test_lease_keeper_runs_every_minute_alone_for_a_minute(synth, cfg, region):
    fns = functions(synth, region)
    logical, keeper = fns["payments-lease-keeper"]
    _, api = fns["payments-api"]
    assert keeper["handler"] == "app.lease_keeper"
    assert keeper["timeout"] == 60 and keeper["reserved_concurrent_executions"] == 1
    for same in ("role", "vpc_config", "layers", "architectures", "tracing_config", "kms_key_arn",
                 "dead_letter_config", "code_signing_config_arn", "filename", "environment"):
        assert keeper[same] == api[same], same
    from tests.infra.test_synth_regional import every_minute
    every_minute(synth, region, logical)


def test_keeper_runs_inside_its_timeout():
    import ast
    from pathlib import Path

    from infra.stacks.lambdas import KEEPER_TIMEOUT_S
    tree = ast.parse((Path(settings.ROOT) / "chalice_app" / "app.py").read_text())
    [run_s] = [n.value.value for n in tree.body if isinstance(n, ast.Assign)
               and getattr(n.targets[0], "id", "") == "KEEPER_RUN_S"]
    assert run_s == 50 and KEEPER_TIMEOUT_S == 60
    assert KEEPER_TIMEOUT_S - run_s == settings.KEEPER_GAP_S


def control_statements(synth, region: str) -> list[dict]:
    out = []
    for pol in synth.resources(stack(region), "aws_iam_role_policy").values():
        for st in json.loads(pol["policy"])["Statement"]:
            if any("payments-control" in r for r in st["Resource"]):
                out.append((pol["role"], st))
    return out


@pytest.mark.parametrize("region", REGIONS)
def test_every_platform_lambda_role_reaches_its_control_replica_and_nothing_wider(synth, cfg, region):
    fns = functions(synth, region)
    platform_roles = {f["role"] for name, (_, f) in fns.items() if name != "payments-topic-admin"}
    role_logical = [n for n, r in synth.resources(stack(region), "aws_iam_role").items()
                    if ref("aws_iam_role", n, "arn") in platform_roles]
    assert len(role_logical) == 1  # API, stages, relay, reports, reconciliation and the keeper share it
    [(role, st)] = control_statements(synth, region)
    assert role == ref("aws_iam_role", role_logical[0], "id")
    endpoint = settings.control_region(cfg, region)
    assert st["Resource"] == [f"arn:${{data.aws_partition.current.partition}}:dynamodb:{endpoint}:"
                              f"${{data.aws_caller_identity.current.account_id}}:table/{cfg['control']['table_name']}"]
    assert sorted(st["Action"]) == sorted(["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                                           "dynamodb:DeleteItem", "dynamodb:Query", "dynamodb:Scan"])
    assert "Condition" not in st
    # No other statement of any role names the control table, or DynamoDB everywhere.
    for pol in synth.resources(stack(region), "aws_iam_role_policy").values():
        for other in json.loads(pol["policy"])["Statement"]:
            if other is not st and any(a.startswith("dynamodb:") and a != "dynamodb:ListStreams"
                                       for a in other["Action"]):
                assert "*" not in other["Resource"] and not any(":table/*" in r for r in other["Resource"])


@pytest.mark.parametrize("region", REGIONS)
def test_lambda_env_carries_the_lease_settings(synth, cfg, region):
    for name, (_, f) in functions(synth, region).items():
        if name == "payments-topic-admin":
            continue
        env = f["environment"]["variables"]
        assert env[pc.CONTROL_TABLE] == cfg["control"]["table_name"], name
        assert env[pc.CONTROL_REGION] == settings.control_region(cfg, region)
        assert env[pc.TAKEOVER_REGIONS].split(",") == [r for r in cfg["regions"] if r != region]
        assert env[pc.LEASE_TTL_S] == "30" and env[pc.LEASE_SKEW_S] == "2"
        assert env[pc.FAILBACK] == "handback"
    # The runtime accepts them (LEASE_TTL_S > 2 x LEASE_SKEW_S, TAKEOVER_REGIONS without itself).
    _, api = functions(synth, region)["payments-api"]
    env = {k: v for k, v in api["environment"]["variables"].items() if "${" not in v and k != pc.API_KEY_PEPPER_SECRET}
    s = pc.Settings.from_env({**env, pc.PLATFORM_MODE: "embedded"})
    assert (s.lease_ttl_s, s.lease_skew_s, s.failback) == (30.0, 2.0, "handback")
    assert s.control_region == settings.control_region(cfg, region)


def test_us_east_1_calls_its_own_replica_and_eu_west_1_one_outside_the_deployment(cfg):
    assert settings.control_region(cfg, "us-east-1") == "us-east-1"
    eu = settings.control_region(cfg, "eu-west-1")
    assert eu in cfg["control"]["replicas"] and eu not in cfg["regions"]


@pytest.mark.parametrize("change, match", [
    (lambda c: c["control"].update(replicas=["us-east-1", "eu-west-1"], witness="us-west-2"), "region set"),
    (lambda c: c["control"].update(witness=None), "three distinct regions"),
    (lambda c: c["control"].update(witness="us-east-1"), "three distinct regions"),
    (lambda c: c["control"].update(endpoints={}), "eu-west-1 calls eu-west-1"),
    (lambda c: c["control"].update(endpoints={"eu-west-1": "us-east-1"}), "own replica or one outside"),
    (lambda c: c["control"].update(endpoints={"eu-west-1": "us-east-2", "ap-south-1": "us-east-2"}),
     "not a deployment region"),
    (lambda c: c["leases"].update(ttl_s=4, skew_s=2), "twice"),
    (lambda c: c["leases"].update(ttl_s=15, skew_s=2), "gap between two lease keeper invocations"),
    (lambda c: c["leases"].update(failback="maybe"), "handback or stay"),
])
def test_control_placement_and_lease_timings_are_checked(cfg, change, match):
    bad = copy.deepcopy(cfg)
    change(bad)
    with pytest.raises(settings.InfraConfigError, match=match):
        settings.check_control(bad)


def test_three_replicas_without_a_witness_are_accepted(cfg):
    ok = copy.deepcopy(cfg)
    ok["control"].update(replicas=["us-east-1", "us-east-2", "us-west-2"], witness=None)
    settings.check_control(ok)
