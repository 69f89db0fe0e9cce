"""One bootstrap: settings -> adapters -> the Platform every entry point uses.

PLATFORM_MODE picks the adapters; nothing downstream knows which it got.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Callable

import orjson

from . import schemas
from .api.ratelimit import SharedRateLimiter
from .audit.chain import HeadSigner
from .clock import SystemClock
from .config import ConfigError, Settings
from .connectors import build_connector, open_config
from .observability import logmask, logs, metrics, tracing
from .ports import AuditLog, Clock, Connector, EventBus, KeyService, Leases, Platform, Store
from .services.audit import audit_mac_key
from .services.ownership import Ownership
from .webhooks import Poster, http_post

PSP_CONFIG = "PSP_CONFIG"  # JSON list of {"name", "type", ...}; default: two simulator PSPs


def psp_configs(settings: Settings, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    raw = (env if env is not None else os.environ).get(PSP_CONFIG)
    if raw:
        try:
            configs = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise ConfigError(f"{PSP_CONFIG} is not valid JSON: {e}") from None
        if not isinstance(configs, list):
            raise ConfigError(f"{PSP_CONFIG} must be a JSON list of PSP definitions")
        return configs
    return [{"name": n, "type": "simulator", "base_url": settings.simulator_url, "timeout_s": settings.psp_timeout_s}
            for n in ("sim-a", "sim-b")]


def build(settings: Settings | None = None, clock: Clock | None = None) -> Platform:
    """The whole Platform for PLATFORM_MODE: logs, tracing and metrics set up, adapters opened."""
    settings = settings or Settings.from_env()
    logs.install(settings.log_level, settings.log_format)
    logmask.install()  # I6, second line of defence: mask anything Luhn-valid in every log record
    tracing.setup(settings)
    metrics.METRICS.configure(settings)
    schemas.warm()
    if settings.mode == "embedded":
        from .adapters.keyring import LocalKeyring
        from .adapters.sqlite.bus import SqliteBus
        from .adapters.sqlite.store import open_store
        return assemble(settings, open_store(settings.store_path, settings.region), SqliteBus(settings.bus_path, settings.partitions),
                        LocalKeyring(settings.keyring_path), clock or SystemClock())
    if settings.mode in ("aws-local", "aws"):
        # DynamoDB + Kafka (MSK / Tansu) + KMS; aws-local points boto3 at moto or LocalStack.
        from .adapters.aws.dynamodb_audit import DynamoAuditLog
        from .adapters.aws.setup import AwsSettings, build_adapters, control_client
        aws = AwsSettings.from_env(settings.mode)
        store, bus, keys, clients = build_adapters(settings, aws)
        from .adapters.aws.dynamodb_leases import DynamoLeases
        return assemble(settings, store, bus, keys, clock or SystemClock(),
                        audit_log=lambda signer: DynamoAuditLog(clients["dynamodb"], aws.table, signer,
                                                                          settings.region),
                        leases=DynamoLeases(control_client(aws, settings.control_region, clients["dynamodb"]),
                                            settings.control_table))
    raise ConfigError(f"PLATFORM_MODE={settings.mode} is not wired")


def assemble(settings: Settings, store: Store, bus: EventBus, keys: KeyService, clock: Clock,
             connectors: dict[str, Connector] | None = None, post_webhook: Poster = http_post,
             audit_log: Callable[[HeadSigner], AuditLog] | None = None, leases: Leases | None = None) -> Platform:
    """A Platform from its adapters. What follows from them is made here: the PSP connectors (sealed
    credentials opened with the keys), the audit log (`audit_log(signer)`; default the embedded
    $DATA_DIR/audit.db) with its head signed under a key only the KeyService can open, and the
    rate limiter over the store's request counters, and this region's view of the home-region leases
    (`leases`; default the embedded control file, CONTROL_STORE)."""
    if connectors is None:
        try:
            connectors = {c["name"]: build_connector(open_config(c, keys)) for c in psp_configs(settings)}
        except ValueError as e:
            raise ConfigError(f"{PSP_CONFIG}: {e}") from None
    if audit_log is None:
        from .adapters.sqlite.audit import SqliteAuditLog

        def audit_log(signer: HeadSigner) -> AuditLog:
            return SqliteAuditLog(settings.data_dir / "audit.db", signer, settings.region)
    opened: list[AuditLog] = []
    log = audit_log(HeadSigner(lambda: audit_mac_key(keys, opened[0])))
    opened.append(log)
    if leases is None:
        from .adapters.sqlite.leases import SqliteLeases
        leases = SqliteLeases(settings.control_path)
    ownership = Ownership(leases, settings.region, settings.lease_skew_s, wall=lambda: clock.now().timestamp())
    return Platform(settings=settings, store=store, bus=bus, keys=keys, clock=clock, connectors=connectors,
                    audit_log=log, post_webhook=post_webhook, ownership=ownership,
                    rate_limiter=SharedRateLimiter(store.requests, settings.rate_limit_per_s, settings.rate_limit_burst))


_platform: Platform | None = None
_lock = threading.Lock()


def get_platform() -> Platform:
    """The process-wide platform (built on first use, as a Lambda container would)."""
    global _platform
    with _lock:
        if _platform is None:
            _platform = build()
        return _platform


def set_platform(platform: Platform | None) -> None:
    """Install a platform for this process (tests, the local runner)."""
    global _platform
    _platform = platform
