"""Infra inputs: infra/config.json, infra/tenants.json and the platform's own names.

Everything the stacks need to agree with the application (env var names, table
layout, stage topics) is imported from chalicelib, never retyped here.
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INFRA = Path(__file__).resolve().parent
ROOT = INFRA.parent
sys.path.insert(0, str(ROOT / "chalice_app"))

from chalicelib import config as platform_config  # noqa: E402
from chalicelib.domain.events import dlq_topic  # noqa: E402
from chalicelib.stages import STAGES, topics  # noqa: E402

CONFIG_FILE = INFRA / "config.json"
TENANTS_FILE = INFRA / "tenants.json"
SCHEMAS_DIR = ROOT / "schemas" / "events"
OUTDIR = INFRA / "cdktf.out"
# Built by `make package` / `make topic-admin-zip`; synth must work without them.
CHALICE_ZIP = ROOT / "build" / "chalice" / "deployment.zip"
TOPIC_ADMIN_ZIP = ROOT / "build" / "topic-admin.zip"
GLOBAL_STACK = "global"
TENANT_ID = re.compile(r"^[A-Za-z0-9_-]{3,64}$")


class InfraConfigError(ValueError):
    pass


def regional_stack_name(region: str) -> str:
    return f"region-{region}"


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    name: str


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int
    retention_ms: int
    stage: str | None  # consuming stage (None for DLQs)


def load_config(path: Path = CONFIG_FILE) -> dict[str, Any]:
    cfg = json.loads(path.read_text())
    if len(cfg["regions"]) < 2:
        raise InfraConfigError("config.json needs at least two regions")
    if cfg["primary_region"] not in cfg["regions"]:
        raise InfraConfigError(f"primary_region {cfg['primary_region']!r} is not one of the regions")
    for region, rc in cfg["regions"].items():
        if len(rc["azs"]) != 3:
            raise InfraConfigError(f"{region}: exactly 3 availability zones are required")
        vpc = rc["vpc"]
        if not vpc.get("create") and not (vpc.get("vpc_id") and len(vpc.get("private_subnet_ids", [])) == 3):
            raise InfraConfigError(f"{region}: an existing VPC needs vpc_id and 3 private_subnet_ids")
    if cfg["dynamodb"]["capacity_mode"] not in ("on_demand", "provisioned"):
        raise InfraConfigError("dynamodb.capacity_mode must be on_demand or provisioned")
    if not cfg["msk"]["broker_instance_type"].startswith("kafka.m7g."):
        raise InfraConfigError("msk.broker_instance_type must be a Graviton kafka.m7g.* type")
    check_control(cfg)
    return cfg


# DynamoDB multi-region strong consistency: a table's three regions (replicas + witness) must lie in
# one of these sets (DynamoDB API reference, CreateGlobalTableWitnessGroupMemberAction).
MRSC_REGION_SETS = {
    "US": frozenset({"us-east-1", "us-east-2", "us-west-2"}),
    "EU": frozenset({"eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1"}),
    "AP": frozenset({"ap-northeast-1", "ap-northeast-2", "ap-northeast-3"}),
}
# The lease keeper runs 50 s of each minute (app.KEEPER_RUN_S), so about 10 s pass between its last
# renewal and the next invocation's first; a lease must outlast that gap twice over after the skew.
KEEPER_GAP_S = 10


def check_control(cfg: dict[str, Any]) -> None:
    """The control table's placement (`control`) and the lease timings (`leases`) are ones AWS and the
    runtime accept: three MRSC regions in one region set, and a replica for every region to call."""
    ccfg, lcfg = cfg["control"], cfg["leases"]
    replicas, witness = list(ccfg["replicas"]), ccfg.get("witness")
    members = replicas + ([witness] if witness else [])
    if len(members) != 3 or len(set(members)) != 3 or len(replicas) < 2:
        raise InfraConfigError("control: MRSC takes three distinct regions, three replicas or two replicas "
                               f"and a witness; got replicas {replicas} and witness {witness!r}")
    if not any(set(members) <= regions for regions in MRSC_REGION_SETS.values()):
        raise InfraConfigError(f"control: {', '.join(members)} are not in one MRSC region set "
                               f"({'; '.join(f'{k}: {sorted(v)}' for k, v in MRSC_REGION_SETS.items())})")
    endpoints = ccfg.get("endpoints", {})
    for region in cfg["regions"]:
        endpoint = control_region(cfg, region)
        if endpoint not in replicas:
            raise InfraConfigError(f"control.endpoints: {region} calls {endpoint}, which has no replica of "
                                   f"the control table (replicas: {', '.join(replicas)})")
        # A region calling a peer's replica would lose its control store with that peer, exactly when it
        # has to take the peer's payments over.
        if endpoint != region and endpoint in cfg["regions"]:
            raise InfraConfigError(f"control.endpoints: {region} must call its own replica or one outside the "
                                   f"deployment, not {endpoint}'s")
    for region in endpoints:
        if region not in cfg["regions"]:
            raise InfraConfigError(f"control.endpoints names {region}, which is not a deployment region")
    ttl, skew = float(lcfg["ttl_s"]), float(lcfg["skew_s"])
    if not ttl > 2 * skew >= 0:
        raise InfraConfigError(f"leases.ttl_s ({ttl:g}) must exceed twice leases.skew_s ({skew:g})")
    if ttl - skew < 2 * KEEPER_GAP_S:
        raise InfraConfigError(f"leases.ttl_s - leases.skew_s must be at least {2 * KEEPER_GAP_S} s: the gap "
                               "between two lease keeper invocations must not lapse the lease")
    if lcfg["failback"] not in ("handback", "stay"):
        raise InfraConfigError("leases.failback must be handback or stay")


def control_region(cfg: dict[str, Any], region: str) -> str:
    """The region whose control table replica `region`'s Lambdas call: its own unless config says
    otherwise (a deployment region outside the table's region set)."""
    return cfg["control"].get("endpoints", {}).get(region, region)


def load_tenants(path: Path = TENANTS_FILE) -> list[Tenant]:
    rows = json.loads(path.read_text())["tenants"]
    tenants = [Tenant(r["tenant_id"], r["name"]) for r in rows]
    ids = [t.tenant_id for t in tenants]
    if len(set(ids)) != len(ids):
        raise InfraConfigError("tenants.json has duplicate tenant ids")
    for t in tenants:
        if not TENANT_ID.match(t.tenant_id):
            raise InfraConfigError(f"bad tenant id {t.tenant_id!r}")
    return tenants


def platform_topics(cfg: dict[str, Any]) -> list[Topic]:
    """Every stage input topic plus its DLQ, sized from config.json."""
    tcfg = cfg["msk"]["topics"]
    consumer = {t: name for name, m in STAGES.items() for t in m.CONSUMES}
    out = []
    for name in topics():
        spec = {**tcfg["default"], **tcfg.get("overrides", {}).get(name, {})}
        out.append(Topic(name, spec["partitions"], spec["retention_hours"] * 3_600_000, consumer[name]))
        dlq = tcfg["dlq"]
        out.append(Topic(dlq_topic(name), dlq["partitions"], dlq["retention_hours"] * 3_600_000, None))
    return out


# Lambda keeps this much of the account's concurrency unreserved; a reservation that leaves
# less fails (PutFunctionConcurrency: "...decreases account's UnreservedConcurrentExecution
# below its minimum value of [100]").
UNRESERVED_MINIMUM = 100
# Reconciliation is a singleton sweeper (two would check the same payment): always 1. So is the lease
# keeper: one per region renews its leases, and a second invocation overlapping the first (a slow one)
# is throttled and retried by Lambda's async queue rather than run beside it.
SINGLETONS = {"reconciliation": 1, "lease_keeper": 1}


def reserved_concurrency(cfg: dict[str, Any]) -> dict[str, int | None]:
    """Reserved concurrency per function key (stage names, api, outbox_relay, reports,
    topic_admin, reconciliation, lease_keeper); None leaves a function unreserved.

    A Kafka event source mapping runs at most one invocation per partition, so a stage gets
    the partitions of the topics it consumes: less throttles it, more is never used.
    `lambda.reserved_concurrency.enabled: false` reserves nothing but the singletons. The
    total must leave UNRESERVED_MINIMUM of `lambda.account_concurrency` (1000 by default)."""
    lcfg = cfg["lambda"]
    rc = lcfg.get("reserved_concurrency") or {}
    enabled = rc.get("enabled", True)
    partitions = {t.name: t.partitions for t in platform_topics(cfg)}
    out: dict[str, int | None] = {}
    for stage, module in STAGES.items():
        out[stage] = sum(partitions[t] for t in module.CONSUMES) if enabled else None
    for fn in ("api", "outbox_relay", "reports", "topic_admin"):
        out[fn] = rc.get(fn) if enabled else None
    out.update(SINGLETONS)
    total = sum(v for v in out.values() if v)
    quota = int(lcfg.get("account_concurrency", 1000))
    if quota - total < UNRESERVED_MINIMUM:
        raise InfraConfigError(
            f"reserved concurrency totals {total} of the account's {quota}: Lambda keeps {UNRESERVED_MINIMUM} "
            f"unreserved, so at most {quota - UNRESERVED_MINIMUM} can be reserved; raise lambda.account_concurrency "
            "(after a quota increase), lower the partitions, or set lambda.reserved_concurrency.enabled to false")
    return out


def event_schemas() -> list[Path]:
    return sorted(SCHEMAS_DIR.glob("*.json"))


def check_region(cfg: dict[str, Any], region: str) -> None:
    if region not in cfg["regions"]:
        raise InfraConfigError(
            f"unknown REGION={region!r}; configured regions: {', '.join(cfg['regions'])} (infra/config.json)")


__all__ = ["platform_config", "STAGES", "topics", "dlq_topic"]
