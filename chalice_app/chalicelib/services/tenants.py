"""Tenants: onboarding, API keys (stored only as a keyed hash), default rules."""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from typing import Any

from .. import ids
from ..clock import iso
from ..ports import Platform
from . import audit

KEY_PREFIXES = ("pk_test_", "pk_live_")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")


class TenantError(ValueError):
    pass


def hash_key(pepper: bytes, api_key: str) -> str:
    """HMAC-SHA256 under the platform pepper: a leaked table reveals no key."""
    return hmac.new(pepper, api_key.encode(), hashlib.sha256).hexdigest()


def new_api_key(environment: str = "test") -> str:
    if environment not in ("test", "live"):
        raise TenantError("environment must be 'test' or 'live'")
    return f"pk_{environment}_{secrets.token_urlsafe(24)}"


def default_config(name: str, tenant_id: str, at: str) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "name": name,
        "created_at": at,
        "currencies": [],  # empty: any ISO 4217 currency with minor units
        "limits": {"max_amount": 5_000_000},  # minor units per payment
        "risk": {},  # stages.risk.DEFAULT_RULES apply
        "routing": [
            {"psp": "sim-a", "priority": 1, "currencies": ["*"], "methods": ["card", "bank_account"]},
            {"psp": "sim-b", "priority": 2, "currencies": ["*"], "methods": ["card", "bank_account"]},
        ],
        "fees": {"bps": 140},
        "webhook": None,
    }


def create_tenant(platform: Platform, name: str, webhook_url: str | None = None, environment: str = "test",
                  tenant_id: str | None = None) -> dict[str, Any]:
    """Register a tenant with one API key; returns {"tenant_id", "api_key", ...} (the key shown once)."""
    if not NAME_RE.match(name or ""):
        raise TenantError("tenant name must be 1-64 letters, digits, spaces, '.', '_' or '-'")
    tenant_id = tenant_id or ids.new_id("ten")
    if platform.store.tenants.get_tenant(tenant_id):
        raise TenantError(f"tenant {tenant_id} already exists")
    at = iso(platform.clock.now())
    config = default_config(name, tenant_id, at)
    webhook_secret = None
    if webhook_url:
        if not webhook_url.startswith(("http://", "https://")):
            raise TenantError("webhook URL must start with http:// or https://")
        webhook_secret = "whsec_" + secrets.token_urlsafe(24)
        config["webhook"] = {"url": webhook_url, "secret_enc": base64.b64encode(
            platform.keys.encrypt(tenant_id, webhook_secret.encode())).decode()}
    platform.store.tenants.put_tenant(config)
    audit.record(platform, tenant_id, "tenant.create", tenant_id, name=name, webhook=bool(webhook_url))
    api_key = add_key(platform, tenant_id, environment)
    return {"tenant_id": tenant_id, "name": name, "api_key": api_key, "webhook_secret": webhook_secret}


DISPLAY_PREFIX = 12  # "pk_test_" + 4 random characters: enough to tell keys apart, useless to an attacker


def add_key(platform: Platform, tenant_id: str, environment: str = "test") -> str:
    """A new key for the tenant (shown once); the tenant's other keys keep working, so keys rotate."""
    if platform.store.tenants.get_tenant(tenant_id) is None:
        raise TenantError(f"no tenant {tenant_id}")
    key = new_api_key(environment)
    key_hash = hash_key(platform.settings.api_key_pepper, key)
    platform.store.tenants.add_api_key(tenant_id, key_hash, key[:DISPLAY_PREFIX], iso(platform.clock.now()))
    audit.record(platform, tenant_id, "key.create", key_id(key_hash), prefix=key[:DISPLAY_PREFIX],
                 environment=environment)
    return key


def key_id(key_hash: str) -> str:
    """A stable public name for a key, derived from its keyed hash (which reveals nothing of the key)."""
    # Base32 of the hash's first 80 bits, not hex: a hex id holds a 13+ digit run now and then
    # (one key in ~100), which log masking and PAN scans rightly treat as a possible card number.
    return "key_" + base64.b32encode(bytes.fromhex(key_hash[:20])).decode().lower()


def list_keys(platform: Platform, tenant_id: str) -> list[dict[str, Any]]:
    """The tenant's keys without their hashes: key_id, prefix, environment, created_at, revoked_at."""
    return [{"key_id": key_id(k["key_hash"]), "tenant_id": tenant_id, "prefix": k["prefix"],
             "environment": "live" if k["prefix"].startswith("pk_live_") else "test",
             "created_at": k["created_at"], "revoked_at": k["revoked_at"]}
            for k in platform.store.tenants.list_api_keys(tenant_id)]


def revoke_key(platform: Platform, prefix_or_id: str) -> dict[str, Any]:
    """Revoke the one key whose key_id or display prefix is `prefix_or_id`; effective at once."""
    wanted = (prefix_or_id or "").strip()
    if len(wanted) < 9:  # "pk_test_" alone names every test key
        raise TenantError("give a key id (key_...) or a key prefix of at least 9 characters")
    matches = []
    for tenant in platform.store.tenants.list_tenants():
        for k in platform.store.tenants.list_api_keys(tenant["tenant_id"]):
            if hmac.compare_digest(key_id(k["key_hash"]), wanted) or k["prefix"].startswith(wanted):
                matches.append((tenant["tenant_id"], k))
    live = [(t, k) for t, k in matches if k["revoked_at"] is None]
    if not matches:
        raise TenantError(f"no API key {wanted}")
    if len(matches) > 1:
        raise TenantError(f"{wanted} names {len(matches)} keys; use the key id from `payctl tenant key list`")
    if not live:
        raise TenantError(f"API key {wanted} is already revoked")
    tenant_id, k = live[0]
    at = iso(platform.clock.now())
    if not platform.store.tenants.revoke_api_key(k["key_hash"], at):
        raise TenantError(f"API key {wanted} is already revoked")
    audit.record(platform, tenant_id, "key.revoke", key_id(k["key_hash"]), prefix=k["prefix"])
    return {"key_id": key_id(k["key_hash"]), "tenant_id": tenant_id, "prefix": k["prefix"], "revoked_at": at}


def authenticate(platform: Platform, authorization: str | None) -> str | None:
    """The tenant id for an `Authorization: Bearer <key>` header, or None."""
    caller = authenticate_caller(platform, authorization)
    return caller[0] if caller else None


def caller_key(platform: Platform, authorization: str | None) -> str | None:
    """The keyed hash of a well-formed `Authorization: Bearer <key>` header's key, or None (no store read)."""
    if not authorization or not authorization.startswith("Bearer "):
        return None
    key = authorization[7:].strip()
    if not key.startswith(KEY_PREFIXES) or len(key) > 128:
        return None
    return hash_key(platform.settings.api_key_pepper, key)


def authenticate_caller(platform: Platform, authorization: str | None) -> tuple[str, str] | None:
    """(tenant id, key id) for an `Authorization: Bearer <key>` header, or None."""
    key_hash = caller_key(platform, authorization)
    return caller_of_key(platform, key_hash) if key_hash is not None else None


def caller_of_key(platform: Platform, key_hash: str) -> tuple[str, str] | None:
    """(tenant id, key id) for a key hash (caller_key), or None: unknown or revoked."""
    # Lookup is by keyed hash, so no stored secret is ever compared byte by byte.
    tenant_id = platform.store.tenants.tenant_for_key(key_hash)
    return (tenant_id, key_id(key_hash)) if tenant_id else None


def delete_tenant(platform: Platform, tenant_id: str) -> dict[str, Any]:
    """Crypto-shred a tenant: revoke every key, destroy its data key, mark it deleted.

    Card/IBAN ciphertexts, PSP credentials and the webhook secret were encrypted
    under that data key, so they can never be decrypted again, here or in a backup.
    Payments and ledger rows stay (the platform's own books) without any secret.
    """
    tenant = platform.store.tenants.get_tenant(tenant_id)
    if tenant is None:
        raise TenantError(f"no tenant {tenant_id}")
    at = iso(platform.clock.now())
    revoked = [k["key_hash"] for k in platform.store.tenants.list_api_keys(tenant_id)
               if k["revoked_at"] is None and platform.store.tenants.revoke_api_key(k["key_hash"], at)]
    platform.keys.destroy_tenant_key(tenant_id)
    audit.record(platform, tenant_id, "tenant.delete", tenant_id, keys_revoked=len(revoked), data_key="destroyed")
    platform.store.tenants.put_tenant({**tenant, "deleted_at": at})  # ciphertexts stay, unreadable: that is the proof
    return {"tenant_id": tenant_id, "deleted_at": at, "keys_revoked": len(revoked), "data_key": "destroyed"}
