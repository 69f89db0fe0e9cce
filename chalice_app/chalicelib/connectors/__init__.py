"""PSP connectors and the registry that builds them from tenant configuration.

A PSP config is a dict such as
    {"name": "sim-a", "type": "simulator", "base_url": "http://127.0.0.1:8100", "timeout_s": 2.0}
For the simulator, base_url is the simulator server's root and the connector
appends "/psp/{name}" itself; a base_url already ending in "/psp/{name}"
(e.g. "http://127.0.0.1:8100/psp/sim-a") is accepted unchanged.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..ports import Connector
from .secret import Secret
from .simulator import SimulatorConnector

CONNECTOR_TYPES: dict[str, Any] = {"simulator": SimulatorConnector}

__all__ = ["CONNECTOR_TYPES", "Secret", "SimulatorConnector", "build_connector"]


def build_connector(cfg: Mapping[str, Any]) -> Connector:
    """Build the connector described by a PSP config; unknown types raise ValueError."""
    kind = cfg.get("type")
    cls = CONNECTOR_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"unknown connector type {kind!r} (known: {', '.join(sorted(CONNECTOR_TYPES))})")
    return cls.from_config(cfg)
