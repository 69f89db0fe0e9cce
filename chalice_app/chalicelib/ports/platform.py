"""The Platform: every port an entry point needs, typed, built whole by bootstrap.build."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..breaker import Breakers
from ..services.ownership import Ownership
from ..config import ConfigError, Settings
from ..vault import Vault
from ..webhooks import Poster, http_post
from .bus import EventBus
from .outside import Clock, Connector, KeyService
from .store import AuditLog, Store


class RateLimit(Protocol):
    """Per-tenant admission at the API (api/ratelimit.py)."""

    def precheck(self, caller_key: str) -> float:
        """Before any store work: 0.0, or the seconds this API key's caller must wait."""

    def take(self, tenant_id: str) -> float:
        """After authentication: 0.0 if the tenant's request may go ahead, else the seconds to wait."""


@dataclass
class Platform:
    """One per process (a Lambda container, the API server, the worker, payctl).

    Not frozen: tests and the bench swap a part in place (the webhook poster, the PSPs)
    on the platform the runner already holds."""
    settings: Settings
    store: Store
    bus: EventBus
    keys: KeyService
    clock: Clock
    connectors: dict[str, Connector]
    audit_log: AuditLog
    rate_limiter: RateLimit
    ownership: Ownership
    post_webhook: Poster = http_post

    @property
    def vault(self) -> Vault:
        return Vault(self.store.secrets, self.keys)

    @property
    def breakers(self) -> Breakers:
        s = self.settings
        return Breakers(self.store.controls, self.clock, s.breaker_threshold, s.breaker_cooldown_s)

    def connector(self, name: str) -> Connector:
        try:
            return self.connectors[name]
        except KeyError:
            raise ConfigError(f"no PSP connector named {name!r} (have: {', '.join(self.connectors)})") from None

    def psp_healthy(self, name: str) -> bool:
        """Configured, and its circuit breaker lets calls through."""
        return name in self.connectors and self.breakers.allows(name)
