"""One bootstrap: settings -> adapters -> the Platform every entry point uses.

PLATFORM_MODE picks the adapters; nothing downstream knows which it got.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

import orjson

from . import schemas
from .breaker import Breakers
from .clock import SystemClock
from .config import ConfigError, Settings
from .connectors import build_connector, open_config
from .ports import Clock, Connector, EventBus, KeyService, PaymentStore, TenantDirectory
from .observability import logmask as logfilter
from .observability import logs, metrics, tracing
from .vault import Vault
from .webhooks import Poster, http_post

PSP_CONFIG = "PSP_CONFIG"  # JSON list of {"name", "type", ...}; default: two simulator PSPs


@dataclass
class Platform:
    settings: Settings
    store: PaymentStore
    tenants: TenantDirectory
    bus: EventBus
    keys: KeyService
    clock: Clock
    connectors: dict[str, Connector]
    post_webhook: Poster = http_post

    @property
    def vault(self) -> Vault:
        return Vault(self.store, self.keys)

    @property
    def breakers(self) -> Breakers:
        s = self.settings
        return Breakers(self.store, self.clock, s.breaker_threshold, s.breaker_cooldown_s)

    def connector(self, name: str) -> Connector:
        try:
            return self.connectors[name]
        except KeyError:
            raise ConfigError(f"no PSP connector named {name!r} (have: {', '.join(self.connectors)})") from None

    def psp_healthy(self, name: str) -> bool:
        """Configured, and its circuit breaker lets calls through."""
        return name in self.connectors and self.breakers.allows(name)


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
    settings = settings or Settings.from_env()
    logs.install(settings.log_level, settings.log_format)
    logfilter.install()  # I6, second line of defence: mask anything Luhn-valid in every log record
    tracing.setup(settings)
    metrics.METRICS.configure(settings)
    schemas.warm()
    def connectors(keys: KeyService) -> dict[str, Connector]:  # sealed PSP credentials open with the keys
        try:
            return {c["name"]: build_connector(open_config(c, keys)) for c in psp_configs(settings)}
        except ValueError as e:
            raise ConfigError(f"{PSP_CONFIG}: {e}") from None
    if settings.mode == "embedded":
        from .adapters.keyring import LocalKeyring
        from .adapters.sqlite.bus import SqliteBus
        from .adapters.sqlite.store import SqliteStore
        store = SqliteStore(settings.store_path)
        bus = SqliteBus(settings.bus_path, settings.partitions)
        keys = LocalKeyring(settings.keyring_path)
        return Platform(settings, store, store, bus, keys, clock or SystemClock(), connectors(keys))
    if settings.mode in ("aws-local", "aws"):
        # DynamoDB + Kafka (MSK / Tansu) + KMS; aws-local points boto3 at moto or LocalStack.
        from .adapters.aws.setup import build_adapters
        store, bus, keys, _ = build_adapters(settings)
        return Platform(settings, store, store, bus, keys, clock or SystemClock(), connectors(keys))
    raise ConfigError(f"PLATFORM_MODE={settings.mode} is not wired")


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
