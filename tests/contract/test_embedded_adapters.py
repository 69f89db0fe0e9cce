"""The contract suites run against the embedded adapters (SQLite files, local keyring)."""
from __future__ import annotations

import orjson

from chalicelib.adapters.keyring import DecryptionError, LocalKeyring
from chalicelib.adapters.sqlite import bus as sqlite_bus
from chalicelib.adapters.sqlite.audit import SqliteAuditLog
from chalicelib.adapters.sqlite.bus import SqliteBus
from chalicelib.adapters.sqlite.leases import SqliteLeases
from chalicelib.adapters.sqlite.store import open_store
from chalicelib.ports import Changes, OutRecord

from .audit_contract import AuditLogContract
from .bus_contract import EventBusContract
from .factories import event_for, new_payment
from .keys_contract import KeyServiceContract
from .leases_contract import LeasesContract
from .regions_contract import RegionsContract
from .store_ports_contract import STORE_CONTRACTS
from .tenants_contract import TenantDirectoryContract


class TestSqliteStore(*STORE_CONTRACTS):
    def make_store(self, tmp_path):
        return open_store(tmp_path / "store.db")


class TestSqliteLeases(LeasesContract):
    def make_leases(self, tmp_path):
        return SqliteLeases(tmp_path / "control.db")


class TestSqliteRegions(RegionsContract):
    def make_store(self, tmp_path, region="local-1"):
        return open_store(tmp_path / "store.db", region)


class TestSqliteTenantDirectory(TenantDirectoryContract):
    def make_tenants(self, tmp_path):
        return open_store(tmp_path / "store.db").tenants


class TestSqliteAuditLog(AuditLogContract):
    def make_audit(self, tmp_path, signer, region="local-1"):
        return SqliteAuditLog(tmp_path / "audit.db", signer, region)


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


class TestSqliteCommitMany:
    """SqliteUnitOfWork.commit_many: the stages' batched commit, one transaction, each unit on its own."""

    def test_each_unit_commits_or_fails_alone(self, tmp_path):
        from chalicelib.ports import AlreadyProcessed, Changes, ConcurrencyConflict

        from .factories import event_for, new_payment
        store = open_store(tmp_path / "store.db")
        a, b = new_payment(), new_payment()
        store.commit(Changes(payment=a))
        store.commit(Changes(payment=b))
        store.commit(Changes(processed=("stage.x", "evt_seen")))
        stale = store.payments.get_payment(b.tenant_id, b.payment_id)
        stale.reference = "stale"
        fresh_a = store.payments.get_payment(a.tenant_id, a.payment_id)
        fresh_a.reference = "moved"
        results = store.unit_of_work.commit_many([
            Changes(payment=fresh_a, expected_version=1, events=[event_for(fresh_a)],
                    processed=("stage.x", "evt_new")),
            Changes(processed=("stage.x", "evt_seen"), events=[event_for(a)]),  # a duplicate delivery
            Changes(payment=stale, expected_version=7, events=[event_for(b)]),  # a lost race
        ])
        assert results[0] is None
        assert isinstance(results[1], AlreadyProcessed) and isinstance(results[2], ConcurrencyConflict)
        assert fresh_a.version == 2 and stale.version == 1  # only the committed unit moves on
        assert store.payments.get_payment(a.tenant_id, a.payment_id).reference == "moved"
        assert store.payments.get_payment(b.tenant_id, b.payment_id).reference != "stale"
        outbox = store.outbox.pending_outbox(10)
        assert [r.event.payment_id for r in outbox] == [a.payment_id]  # nothing of the failed units
        results = store.unit_of_work.commit_many([Changes(processed=("stage.x", "evt_new"))])
        assert isinstance(results[0], AlreadyProcessed)  # the first unit's marker was kept


class TestSqliteChangeFeed:
    """Not contract: the embedded change feed is SQLite's stand-in for the DynamoDB stream."""

    def test_a_store_made_before_the_feed_keeps_its_unpublished_outbox(self, tmp_path):
        import sqlite3
        path = tmp_path / "store.db"
        old = sqlite3.connect(path)
        old.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, event BLOB NOT NULL)")
        old.execute("INSERT INTO outbox (event) VALUES (?)", (orjson.dumps(event_for(new_payment(),
                                                                  "payments.initiated").to_dict()),))
        old.commit()
        old.close()
        store = open_store(path)
        (pending,) = store.outbox.pending_outbox(10)
        assert store.feed.read("reports", 10) == [pending]
        store.outbox.mark_published([pending.id])  # no reader registered yet: gone at once, as before
        assert store.outbox.pending_outbox(10) == [] and store.feed.read("reports", 10) == []

    def test_published_changes_wait_for_every_reader(self, tmp_path):
        store = open_store(tmp_path / "store.db")
        store.feed.register("reports")
        store.feed.register("audit")
        p = new_payment()
        store.commit(Changes(payment=p, events=[event_for(p, "payments.initiated"), event_for(p, "payments.validated")]))
        first, second = store.outbox.pending_outbox(10)
        store.outbox.mark_published([first.id, second.id])
        assert store.feed.read("reports", 10) == [first, second]
        store.feed.advance("reports", first.id)
        assert store.feed.read("reports", 10) == [second] and store.feed.read("audit", 10) == [first, second]
        store.feed.advance("audit", second.id)
        store.feed.advance("reports", first.id - 1)  # a late, smaller position never moves a reader back
        assert store.feed.read("reports", 10) == [second]
        store.feed.advance("reports", second.id)
        assert store.feed.read("reports", 10) == [] and store.feed.read("audit", 10) == []
        (n,) = store.unit_of_work.db.conn().execute("SELECT COUNT(*) FROM outbox").fetchone()
        assert n == 0
