"""The contract suites run against the embedded adapters (SQLite files, local keyring)."""
from __future__ import annotations

from chalicelib.adapters import sqlite_bus
from chalicelib.adapters.sqlite_audit import SqliteAuditLog
from chalicelib.adapters.local_keyring import DecryptionError, LocalKeyring
from chalicelib.adapters.sqlite_bus import SqliteBus
from chalicelib.adapters.sqlite_store import SqliteStore
from chalicelib.ports import OutRecord

from .audit_contract import AuditLogContract
from .bus_contract import EventBusContract
from .coordination_contract import StoreCoordinationContract
from .keys_contract import KeyServiceContract
from .store_contract import PaymentStoreContract
from .tenants_contract import TenantDirectoryContract


class TestSqliteStore(PaymentStoreContract, StoreCoordinationContract):
    def make_store(self, tmp_path):
        return SqliteStore(tmp_path / "store.db")


class TestSqliteTenantDirectory(TenantDirectoryContract):
    def make_tenants(self, tmp_path):
        return SqliteStore(tmp_path / "store.db")


class TestSqliteAuditLog(AuditLogContract):
    def make_audit(self, tmp_path, signer):
        return SqliteAuditLog(tmp_path / "audit.db", signer)


class TestSqliteBus(EventBusContract):
    explicit_membership = True
    poll_timeout = 2.0

    def make_bus(self, tmp_path):
        return SqliteBus(tmp_path / "bus.db")


class TestLocalKeyring(KeyServiceContract):
    decryption_error = DecryptionError

    def make_keys(self, tmp_path):
        return LocalKeyring(tmp_path / "keyring.json")


class TestSqliteBusOnly:
    """Not contract: the Protocol has no clock to step, so this probe is SQLite-specific."""

    def test_read_all_keeps_offset_order_when_the_wall_clock_steps_back(self, tmp_path, monkeypatch):
        bus = SqliteBus(tmp_path / "bus.db")
        ticks = iter([1_000.0, 999.0])  # NTP steps the clock back between two publishes
        monkeypatch.setattr(sqlite_bus.time, "time", lambda: next(ticks))
        bus.publish([OutRecord("t", "pay_1", b"first")])
        bus.publish([OutRecord("t", "pay_1", b"second")])
        assert [r.value for r in bus.read_all("t")] == [b"first", b"second"]
