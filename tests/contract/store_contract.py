"""Contract suites for the store's ports, one per port (the rest: store_ports_contract.py;
TenantDirectory: tenants_contract.py). Each takes a whole Store from make_store, since a
port's effects are written by commits.

An adapter runs every suite with a few lines of fixture:

    class TestDynamoStore(*STORE_CONTRACTS):
        def make_store(self, tmp_path):
            return open_dynamo_store(moto_client, f"t{abs(hash(tmp_path))}")

Factory rules: every call with the same `tmp_path` opens the SAME backing data
(a second call is another process's view); different `tmp_path`s are isolated
(the outbox and ledger_totals are global, so a shared table would leak).
Only Protocol methods are called on the adapter.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from chalicelib.ports import AlreadyExists, AlreadyProcessed, Changes, ConcurrencyConflict, IdempotencyRecord, Store

from .factories import KnownBugs, at, capture_postings, close_quietly, drive_to_authorized, event_for, new_payment

CONSUMER = "stage.contract"


def idem(tenant_id: str = "ten_a", key: str = "idem-1", *, created_at: int = 1_000,
         ttl: int = 100, body: bytes = b'{"id":"pay_1"}') -> IdempotencyRecord:
    return IdempotencyRecord(tenant_id, key, "sha256:" + key, 202, body,
                             {"Location": "/v1/payments/pay_1", "X-Note": "ünïcode"},
                             created_at + ttl, created_at)


class StoreContract(KnownBugs):
    """The fixture every store suite shares: make_store and helpers that commit and read back."""

    def make_store(self, tmp_path: Path) -> Store:
        raise NotImplementedError

    @pytest.fixture
    def store(self, tmp_path: Path):
        s = self.make_store(tmp_path)
        yield s
        close_quietly(s)

    def created(self, store: Store, tenant_id: str = "ten_a", **kw: Any):
        p = new_payment(tenant_id, **kw)
        store.commit(Changes(payment=p, events=[event_for(p, "payments.initiated")]))
        return p

    @staticmethod
    def snapshot(store: Store, p) -> dict[str, Any]:
        """Everything a failed commit must leave untouched."""
        return {"payment": store.payments.get_payment(p.tenant_id, p.payment_id),
                "outbox": [(r.id, r.event) for r in store.outbox.pending_outbox(1000)],
                "timeline": store.payments.timeline(p.tenant_id, p.payment_id),
                "balances": store.ledger.balances(p.tenant_id), "totals": store.ledger.ledger_totals()}

    @staticmethod
    def doomed_effects(p, event_id: str) -> dict[str, Any]:
        """Side effects bundled with a commit that must fail as a whole."""
        return {"events": [event_for(p, "payments.failed")], "processed": (CONSUMER, event_id),
                "postings": capture_postings(p), "idempotency": idem(p.tenant_id, "idem-doomed"),
                "secrets": [(p.tenant_id, "tok_doomed", b"ct")]}

    def assert_nothing_written(self, store: Store, p, before: dict[str, Any], event_id: str) -> None:
        assert self.snapshot(store, p) == before
        assert store.idempotency.get_idempotency(p.tenant_id, "idem-doomed", 0) is None
        assert store.secrets.get_secret(p.tenant_id, "tok_doomed") is None
        store.commit(Changes(processed=(CONSUMER, event_id)))  # the marker was not kept either


class UnitOfWorkContract(StoreContract):
    """UnitOfWork: a commit writes all of a Changes or nothing; versions, markers and creates are enforced."""

    def test_create_twice_raises_already_exists_and_writes_nothing(self, store):
        p = self.created(store)
        before = self.snapshot(store, p)
        twin = new_payment(payment_id=p.payment_id, amount=5)
        with pytest.raises(AlreadyExists):
            store.commit(Changes(payment=twin, **self.doomed_effects(twin, "evt_dup")))
        self.assert_nothing_written(store, p, before, "evt_dup")

    def test_second_instance_sees_committed_state(self, store, tmp_path):
        p = self.created(store)
        other = self.make_store(tmp_path)
        try:
            assert other.payments.get_payment("ten_a", p.payment_id) == p
        finally:
            close_quietly(other)

    def test_update_on_expected_version_bumps_version(self, store):
        p = self.created(store)
        p.validate(at(1))
        store.commit(Changes(payment=p, expected_version=1, events=[event_for(p)]))
        assert p.version == 2
        got = store.payments.get_payment("ten_a", p.payment_id)
        assert (got.version, got.state.value) == (2, "validated")
        got.screen(at(2), "approve", 1, [])  # a reloaded aggregate commits on its own version
        store.commit(Changes(payment=got, expected_version=got.version))
        assert store.payments.get_payment("ten_a", p.payment_id).version == 3

    def test_stale_version_conflicts_and_writes_nothing(self, store):
        p = self.created(store)
        fresh, stale = (store.payments.get_payment("ten_a", p.payment_id) for _ in range(2))
        fresh.validate(at(1))
        store.commit(Changes(payment=fresh, expected_version=1, events=[event_for(fresh)]))
        before = self.snapshot(store, p)
        stale.fail(at(2), "validation", "late", "lost the race")
        with pytest.raises(ConcurrencyConflict):
            store.commit(Changes(payment=stale, expected_version=1, **self.doomed_effects(stale, "evt_stale")))
        assert stale.version == 1  # a failed commit must not pretend to have written
        self.assert_nothing_written(store, p, before, "evt_stale")

    def test_update_of_a_missing_payment_conflicts(self, store):
        p = new_payment()
        with pytest.raises(ConcurrencyConflict):
            store.commit(Changes(payment=p, expected_version=1))
        assert store.payments.get_payment("ten_a", p.payment_id) is None

    def test_processed_marker_rejects_a_second_commit_atomically(self, store):
        p = self.created(store)
        p.validate(at(1))
        store.commit(Changes(payment=p, expected_version=1, processed=(CONSUMER, "evt_1")))
        before = self.snapshot(store, p)
        again = store.payments.get_payment("ten_a", p.payment_id)
        again.screen(at(2), "approve", 1, [])
        with pytest.raises(AlreadyProcessed):
            store.commit(Changes(payment=again, expected_version=2, **self.doomed_effects(again, "evt_1")))
        assert self.snapshot(store, p) == before
        assert store.idempotency.get_idempotency("ten_a", "idem-doomed", 0) is None
        assert store.secrets.get_secret("ten_a", "tok_doomed") is None

    def test_processed_marker_alone_and_per_consumer(self, store):
        store.commit(Changes(processed=(CONSUMER, "evt_x")))
        with pytest.raises(AlreadyProcessed):
            store.commit(Changes(processed=(CONSUMER, "evt_x")))
        store.commit(Changes(processed=("stage.other", "evt_x")))  # each consumer has its own markers

    def test_one_commit_writes_every_kind_of_change_together(self, store):
        p = self.created(store)
        drive_to_authorized(p)
        ev = event_for(p, "payments.failed")
        store.commit(Changes(payment=p, expected_version=1, events=[ev], processed=(CONSUMER, "evt_all"),
                             postings=capture_postings(p), idempotency=idem(key="idem-all"),
                             secrets=[("ten_a", "tok_all", b"ct")]))
        assert store.payments.get_payment("ten_a", p.payment_id).version == 2
        assert store.outbox.pending_outbox(10)[-1].event == ev
        assert len(store.payments.timeline("ten_a", p.payment_id)) == 5
        assert store.idempotency.get_idempotency("ten_a", "idem-all", 1_000) is not None
        assert store.secrets.get_secret("ten_a", "tok_all") == b"ct" and len(store.ledger.balances("ten_a")) == 3
        with pytest.raises(AlreadyProcessed):
            store.commit(Changes(processed=(CONSUMER, "evt_all")))


class PaymentReadsContract(StoreContract):
    """PaymentReads: payments, timelines and lookups, always scoped by the tenant."""

    def test_create_then_get_round_trips_the_aggregate(self, store):
        p = drive_to_authorized(new_payment())
        store.commit(Changes(payment=p, events=[event_for(p, "payments.initiated")]))
        assert p.version == 1 and p.pending_timeline == []
        got = store.payments.get_payment("ten_a", p.payment_id)
        assert got == p
        assert got.attempts[0].psp_reference == "psp_ref_1" and got.status == "processing"

    def test_get_is_scoped_by_tenant(self, store):
        p = self.created(store, "ten_a")
        assert store.payments.get_payment("ten_b", p.payment_id) is None
        assert store.payments.get_payment("ten_a", "pay_01JD0000000000000000000000") is None

    def test_same_payment_id_in_two_tenants_are_separate(self, store):
        a = self.created(store, "ten_a", amount=100)
        b = new_payment("ten_b", payment_id=a.payment_id, amount=200)
        store.commit(Changes(payment=b))
        assert store.payments.get_payment("ten_a", a.payment_id).amount == 100
        assert store.payments.get_payment("ten_b", a.payment_id).amount == 200

    def test_timeline_entries_in_order_with_seq(self, store):
        p = new_payment()
        p.validate(at(1))
        store.commit(Changes(payment=p))
        p.screen(at(2), "approve", 7, [])
        p.set_route(at(3), ["sim-a"])
        store.commit(Changes(payment=p, expected_version=p.version))  # same object, committed again
        rows = store.payments.timeline("ten_a", p.payment_id)
        assert [r["seq"] for r in rows] == [1, 2, 3]
        assert [(r["action"], r["from"], r["to"], r["stage"]) for r in rows] == [
            ("validate", "initiated", "validated", "validation"),
            ("approve_risk", "validated", "screened", "risk"),
            ("route", "screened", "routed", "routing")]
        assert rows[1]["at"] == at(2) and rows[2]["detail"] == {"psps": ["sim-a"]}
        assert store.payments.timeline("ten_b", p.payment_id) == []

    def walk(self, store, tenant_id, status, limit):
        pages, cursor = [], None
        while True:
            page, cursor = store.payments.list_payments(tenant_id, status, limit, cursor)
            pages.append([x.payment_id for x in page])
            if cursor is None:
                return pages
            assert len(pages) < 50, "cursor never ends"

    def test_list_payments_pages_newest_first_without_gaps(self, store):
        made = [self.created(store, created=i).payment_id for i in range(10)]
        self.created(store, "ten_b")
        pages = self.walk(store, "ten_a", None, 3)
        assert len(pages) >= 4 and all(0 < len(pg) <= 3 for pg in pages)
        assert [x for pg in pages for x in pg] == made[::-1]

    def test_list_payments_filters_by_public_status(self, store):
        made = [self.created(store, created=i) for i in range(9)]
        failed = []
        for p in made[::2]:
            p.fail(at(50), "validation", "bad", "bad input")
            store.commit(Changes(payment=p, expected_version=1))
            failed.append(p.payment_id)
        pages = self.walk(store, "ten_a", "failed", 2)
        assert len(pages) >= 3 and [x for pg in pages for x in pg] == failed[::-1]
        processing = [x for pg in self.walk(store, "ten_a", "processing", 2) for x in pg]
        assert processing == [p.payment_id for p in made[1::2]][::-1]
        assert store.payments.list_payments("ten_a", "refunded", 5, None) == ([], None)
        assert store.payments.list_payments("ten_c", None, 5, None) == ([], None)

    @pytest.mark.parametrize("garbage", ["not a cursor", "zzzz", "!!!!", "AAAA", "truncated", "cafébabe"],
                             ids=["text", "invalid-utf8", "punctuation", "nul-bytes", "truncated", "non-ascii"])
    def test_garbage_cursor_raises_value_error(self, store, garbage):
        for i in range(3):
            self.created(store, created=i)
        _, real = store.payments.list_payments("ten_a", None, 1, None)
        cursor = real[:-4] if garbage == "truncated" else garbage
        with pytest.raises(ValueError):
            store.payments.list_payments("ten_a", None, 1, cursor)

    def test_count_recent_payments(self, store):
        for i in (0, 10, 20, 30):
            self.created(store, created=i, customer_id="cus_1")
        self.created(store, created=20, customer_id="cus_2")
        self.created(store, created=20, customer_id=None)
        self.created(store, "ten_b", created=20, customer_id="cus_1")
        assert store.payments.count_recent_payments("ten_a", "cus_1", at(10)) == 3  # `since` is inclusive
        assert store.payments.count_recent_payments("ten_a", "cus_1", at(0)) == 4
        assert store.payments.count_recent_payments("ten_a", "cus_1", at(31)) == 0
        assert store.payments.count_recent_payments("ten_a", "cus_2", at(0)) == 1
        assert store.payments.count_recent_payments("ten_b", "cus_1", at(0)) == 1

    def test_payments_by_correlation_id_scoped_by_tenant(self, store):
        a1, a2 = self.created(store), self.created(store)  # the factory's correlation id: corr-contract
        other = new_payment()
        other.correlation_id = "corr-other"
        store.commit(Changes(payment=other))
        b = self.created(store, "ten_b")
        assert store.payments.payments_by_correlation("ten_a", "corr-contract") == sorted([a1.payment_id, a2.payment_id])
        assert store.payments.payments_by_correlation("ten_a", "corr-other") == [other.payment_id]
        assert store.payments.payments_by_correlation("ten_b", "corr-contract") == [b.payment_id]
        assert store.payments.payments_by_correlation("ten_a", "corr-none") == []
        a1.validate(at(1))
        store.commit(Changes(payment=a1, expected_version=1))  # updates add nothing
        assert len(store.payments.payments_by_correlation("ten_a", "corr-contract")) == 2


class OutboxContract(StoreContract):
    """Outbox: committed events wait, in commit order, until the relay marks them published."""

    def test_ids_keep_growing_after_the_published_records_are_gone(self, store):
        """A change-feed reader's position is an id: an id handed out again would sit behind it."""
        store.feed.register("reports")
        first = self.created(store)
        ids = [r.id for r in store.outbox.pending_outbox(10)]
        store.outbox.mark_published(ids)
        got = self.feed_changes(store, "reports") if hasattr(self, "feed_changes") else []
        store.outbox.mark_published(ids)  # pruned now (every reader is past them)
        second = self.created(store)
        later = [r.id for r in store.outbox.pending_outbox(10)]
        assert later and min(later) > max(ids), (ids, later)
        assert first.payment_id != second.payment_id and got is not None

    def test_outbox_in_commit_order_until_published(self, store):
        p = new_payment()
        e1, e2 = event_for(p, "payments.initiated"), event_for(p, "payments.validated")
        store.commit(Changes(payment=p, events=[e1, e2]))
        q = self.created(store, "ten_b")
        e3 = store.outbox.pending_outbox(10)[-1].event
        p.validate(at(1))
        e4 = event_for(p, "payments.failed")
        store.commit(Changes(payment=p, expected_version=1, events=[e4]))
        pending = store.outbox.pending_outbox(10)
        assert [r.event for r in pending] == [e1, e2, e3, e4] and e3.payment_id == q.payment_id
        assert len({r.id for r in pending}) == 4
        assert [r.event for r in store.outbox.pending_outbox(2)] == [e1, e2]
        store.outbox.mark_published([r.id for r in pending[:3]])
        assert [r.event for r in store.outbox.pending_outbox(10)] == [e4]
        store.outbox.mark_published([r.id for r in pending])  # a relay retrying after a crash
        assert store.outbox.pending_outbox(10) == []

    def test_outbox_keeps_the_trace_header_beside_the_envelope(self, store):
        p = new_payment()
        header = "Root=1-6744a3b0-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1"
        e = dataclasses.replace(event_for(p, "payments.initiated"), trace=header)
        store.commit(Changes(payment=p, events=[e]))
        (record,) = store.outbox.pending_outbox(10)
        assert record.event.trace == header and record.event == e
        assert "trace" not in record.event.to_dict()  # the published envelope is unchanged


class SecretsContract(StoreContract):
    """Secrets: vault ciphertexts written by a commit, read by tenant and token."""

    def test_vault_secret_round_trip_scoped_by_tenant(self, store):
        blob = bytes(range(256)) + b"k1"
        store.commit(Changes(secrets=[("ten_a", "tok_1", blob), ("ten_b", "tok_2", b"b")]))
        assert store.secrets.get_secret("ten_a", "tok_1") == blob
        assert store.secrets.get_secret("ten_b", "tok_1") is None and store.secrets.get_secret("ten_a", "tok_2") is None
        with pytest.raises(AlreadyExists):  # a token is never silently re-pointed
            store.commit(Changes(secrets=[("ten_a", "tok_1", b"other")]))
        assert store.secrets.get_secret("ten_a", "tok_1") == blob
