"""Contract suite for the TenantDirectory port (tenants, API keys, DLQ redrive marks).

Subclass and implement `make_tenants`; as for the store, a second call with the
same `tmp_path` is another process's view and different paths are isolated.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chalicelib.ports import AlreadyExists, TenantDirectory

from .factories import KnownBugs, at, close_quietly


class TenantDirectoryContract(KnownBugs):
    """What every TenantDirectory must do (ports.TenantDirectory)."""

    def make_tenants(self, tmp_path: Path) -> TenantDirectory:
        raise NotImplementedError

    @pytest.fixture
    def tenants(self, tmp_path: Path):
        d = self.make_tenants(tmp_path)
        yield d
        close_quietly(d)

    @staticmethod
    def tenant(tenant_id: str, **extra: Any) -> dict[str, Any]:
        return {"tenant_id": tenant_id, "name": f"Tenant {tenant_id} — GmbH", "active": True,
                "limits": {"max_amount": {"EUR": 1_000_000}, "currencies": ["EUR", "USD"]},
                "psps": ["sim-a", "sim-b"], "webhook": {"url": "https://example.test/hook", "secret": None},
                **extra}

    def test_put_get_and_replace(self, tenants):
        t = self.tenant("ten_a")
        tenants.put_tenant(t)
        assert tenants.get_tenant("ten_a") == t
        assert tenants.get_tenant("ten_zz") is None
        tenants.put_tenant(self.tenant("ten_a", active=False))
        assert tenants.get_tenant("ten_a")["active"] is False

    def test_list_tenants(self, tenants, tmp_path):
        assert tenants.list_tenants() == []
        for tid in ("ten_b", "ten_a", "ten_c"):
            tenants.put_tenant(self.tenant(tid))
        tenants.put_tenant(self.tenant("ten_b", name="renamed"))
        got = sorted(tenants.list_tenants(), key=lambda t: t["tenant_id"])
        assert [t["tenant_id"] for t in got] == ["ten_a", "ten_b", "ten_c"] and got[1]["name"] == "renamed"
        other = self.make_tenants(tmp_path)
        try:
            assert len(other.list_tenants()) == 3
        finally:
            close_quietly(other)

    def test_api_keys_map_to_their_tenant(self, tenants):
        tenants.add_api_key("ten_a", "hash_a1", "pk_test_a", at(0))
        tenants.add_api_key("ten_a", "hash_a2", "pk_test_b", at(1))
        tenants.add_api_key("ten_b", "hash_b1", "pk_test_c", at(2))
        assert [tenants.tenant_for_key(h) for h in ("hash_a1", "hash_a2", "hash_b1")] == ["ten_a", "ten_a", "ten_b"]
        assert tenants.tenant_for_key("hash_unknown") is None

    def test_duplicate_api_key_raises_already_exists(self, tenants):
        tenants.add_api_key("ten_a", "hash_1", "pk_test_a", at(0))
        with pytest.raises(AlreadyExists):
            tenants.add_api_key("ten_b", "hash_1", "pk_test_b", at(1))
        assert tenants.tenant_for_key("hash_1") == "ten_a"

    def test_list_api_keys_per_tenant_without_the_keys(self, tenants):
        assert tenants.list_api_keys("ten_a") == []
        tenants.add_api_key("ten_a", "hash_a2", "pk_live_b", at(1))
        tenants.add_api_key("ten_a", "hash_a1", "pk_test_a", at(0))
        tenants.add_api_key("ten_b", "hash_b1", "pk_test_c", at(2))
        assert tenants.list_api_keys("ten_a") == [
            {"key_hash": "hash_a1", "prefix": "pk_test_a", "created_at": at(0), "revoked_at": None},
            {"key_hash": "hash_a2", "prefix": "pk_live_b", "created_at": at(1), "revoked_at": None}]
        assert [k["key_hash"] for k in tenants.list_api_keys("ten_b")] == ["hash_b1"]

    def test_revoke_api_key_is_immediate_and_once(self, tenants, tmp_path):
        tenants.add_api_key("ten_a", "hash_a1", "pk_test_a", at(0))
        tenants.add_api_key("ten_a", "hash_a2", "pk_test_b", at(1))
        assert tenants.revoke_api_key("hash_a1", at(5)) is True
        assert tenants.tenant_for_key("hash_a1") is None
        assert tenants.tenant_for_key("hash_a2") == "ten_a"  # the other key keeps working
        other = self.make_tenants(tmp_path)  # another process sees the revocation at once
        try:
            assert other.tenant_for_key("hash_a1") is None
        finally:
            close_quietly(other)
        assert tenants.revoke_api_key("hash_a1", at(6)) is False
        assert tenants.revoke_api_key("hash_unknown", at(6)) is False
        assert [k["revoked_at"] for k in tenants.list_api_keys("ten_a")] == [at(5), None]

    def test_mark_redriven_accumulates_and_is_idempotent(self, tenants):
        assert tenants.redriven_ids() == set()
        tenants.mark_redriven(["dlq-1", "dlq-2"], at(0))
        tenants.mark_redriven(["dlq-2", "dlq-3"], at(1))
        tenants.mark_redriven([], at(2))
        assert tenants.redriven_ids() == {"dlq-1", "dlq-2", "dlq-3"}
