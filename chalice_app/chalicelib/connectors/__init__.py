"""PSP connectors and the registry that builds them from tenant configuration.

A PSP config is a dict such as
    {"name": "sim-a", "type": "simulator", "base_url": "http://127.0.0.1:8100", "timeout_s": 2.0}
For the simulator, base_url is the simulator server's root and the connector
appends "/psp/{name}" itself; a base_url already ending in "/psp/{name}"
(e.g. "http://127.0.0.1:8100/psp/sim-a") is accepted unchanged.

Real PSPs (their own modules say more):
    {"name": "stripe-eu", "type": "stripe", "api_key_enc": "...", "base_url": "http://127.0.0.1:8200"}
    {"name": "adyen-eu", "type": "adyen", "api_key_enc": "...", "merchant_account": "AcmeECOM",
     "base_url": "http://127.0.0.1:8300"}
base_url is optional there: without it the SDK's own (test) endpoint is used.
"""
from __future__ import annotations

import base64
import binascii
import importlib
from typing import Any, Mapping

from ..ports import Connector
from .secret import Secret
from .simulator import SimulatorConnector

# type -> "module:class". Imported on first use: the PSP SDKs cost ~0.3 s of import on every cold
# start, and most Lambdas (and tenants) never call them.
CONNECTOR_TYPES: dict[str, str] = {
    "simulator": ".simulator:SimulatorConnector",
    "stripe": ".stripe:StripeConnector",
    "adyen": ".adyen:AdyenConnector",
}

__all__ = ["CONNECTOR_TYPES", "Secret", "SimulatorConnector", "build_connector", "open_config", "seal_credential"]
PSP_KEY_OWNER = "_psp"  # KeyService owner of sealed PSP credentials (tenant ids start with "ten_")


def seal_credential(keys: Any, credential: str) -> str:
    """A PSP credential envelope-encrypted by the KeyService, base64: the `api_key_enc` of a PSP config."""
    return base64.b64encode(keys.encrypt(PSP_KEY_OWNER, credential.encode())).decode()


def open_config(cfg: Mapping[str, Any], keys: Any) -> dict[str, Any]:
    """The config with its sealed credential (`api_key_enc`) opened into a Secret `api_key`.

    Only the ciphertext is ever written down (PSP_CONFIG, infra); the clear key exists in the
    process that calls the PSP, wrapped in a Secret that never prints itself."""
    if "api_key_enc" not in cfg:
        return dict(cfg)
    name = cfg.get("name")
    if cfg.get("api_key") is not None:
        raise ValueError(f"PSP {name!r}: give api_key_enc or api_key, not both")
    try:
        blob = base64.b64decode(str(cfg["api_key_enc"]), validate=True)
        key = keys.decrypt(PSP_KEY_OWNER, blob).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"PSP {name!r}: api_key_enc is not a sealed credential ({type(e).__name__})") from None
    except Exception as e:  # noqa: BLE001 - the KeyService's own "cannot open" (wrong key, destroyed)
        raise ValueError(f"PSP {name!r}: api_key_enc does not open with this platform's keys "
                         f"({type(e).__name__})") from None
    return {k: v for k, v in cfg.items() if k != "api_key_enc"} | {"api_key": Secret(key)}


def build_connector(cfg: Mapping[str, Any]) -> Connector:
    """Build the connector described by a PSP config; unknown types raise ValueError."""
    kind = cfg.get("type")
    where = CONNECTOR_TYPES.get(kind) if isinstance(kind, str) else None
    if where is None:
        raise ValueError(f"unknown connector type {kind!r} (known: {', '.join(sorted(CONNECTOR_TYPES))})")
    module, _, name = where.partition(":")
    return getattr(importlib.import_module(module, __name__), name).from_config(cfg)
