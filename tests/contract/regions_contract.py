"""Contract suite for two regions writing one replicated store: what each region reads back.

In AWS the store is a global table: every region's replica holds every region's items, and a
stream in each region carries them all. `make_store(tmp_path, region)` opens the SAME data as
another region would see it (the SQLite file shared, the DynamoDB table shared), so these tests
pin the rules of adapters/aws/dynamodb_layout.py "Regions":
  * outbox, change feed and audit queue: a region takes only what it wrote (its relay, sweeper,
    report counter and chainer never re-drive the other region's items);
  * balances, ledger sums and report counters written from both regions: summed on read;
  * control records (breakers): each region's own.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from chalicelib.ports import Changes, ReportDelta, Store

from .factories import capture_postings, close_quietly, drive_to_authorized, event_for, new_payment, refund_postings

A, B = "eu-west-1", "us-east-1"


class RegionsContract:
    def make_store(self, tmp_path: Path, region: str = "local-1") -> Store:
        raise NotImplementedError

    def feed_changes(self, store, reader):  # the adapter's ChangeFeedContract override, if any
        got = store.feed.read(reader, 1000)
        if got:
            store.feed.advance(reader, got[-1].id)
        return got

    @pytest.fixture
    def regions(self, tmp_path: Path):
        a, b = self.make_store(tmp_path, A), self.make_store(tmp_path, B)
        yield a, b
        close_quietly(a)
        close_quietly(b)

    @staticmethod
    def create(store: Store, tenant_id: str = "ten_a", **kw):
        p = new_payment(tenant_id, **kw)
        store.commit(Changes(payment=p, events=[event_for(p, "payments.initiated")], actor="api:key_1"))
        return p

    def test_a_region_publishes_only_the_outbox_items_it_wrote(self, regions):
        a, b = regions
        pa, pb = self.create(a), self.create(b)
        assert [r.event.payment_id for r in a.outbox.pending_outbox(100)] == [pa.payment_id]
        assert [r.event.payment_id for r in b.outbox.pending_outbox(100)] == [pb.payment_id]
        a.outbox.mark_published([r.id for r in a.outbox.pending_outbox(100)])
        assert a.outbox.pending_outbox(100) == []
        assert [r.event.payment_id for r in b.outbox.pending_outbox(100)] == [pb.payment_id]  # untouched

    def test_a_regions_feed_counts_only_what_it_wrote(self, regions):
        a, b = regions
        a.feed.register("reports")
        b.feed.register("reports")
        pa, pb = self.create(a), self.create(b)
        assert [r.event.payment_id for r in self.feed_changes(a, "reports")] == [pa.payment_id]
        assert [r.event.payment_id for r in self.feed_changes(b, "reports")] == [pb.payment_id]

    def test_a_region_chains_only_the_audit_rows_it_wrote(self, regions):
        a, b = regions
        pa, pb = self.create(a), self.create(b)
        assert [r.body["subject"] for r in a.audit_queue.pending_audit(100)] == [pa.payment_id]
        assert [r.body["subject"] for r in b.audit_queue.pending_audit(100)] == [pb.payment_id]
        a.audit_queue.mark_audited([r.id for r in a.audit_queue.pending_audit(100)])
        assert [r.body["subject"] for r in b.audit_queue.pending_audit(100)] == [pb.payment_id]

    def test_balances_and_ledger_sums_written_from_both_regions_add_up(self, regions):
        a, b = regions
        p = drive_to_authorized(new_payment())
        a.commit(Changes(postings=capture_postings(p, fee=59)))
        b.commit(Changes(postings=refund_postings(p, 500)))  # the payment's region moved (failover)
        for store in regions:
            got = {(x["account"], x["currency"]): x["balance"] for x in store.ledger.balances("ten_a")}
            assert got == {("psp_receivable:sim-a", "EUR"): 1499, ("merchant_payable", "EUR"): -1440,
                           ("platform_fees", "EUR"): -59}
            assert store.ledger.ledger_drift() == []
            totals = {(t["txn_id"], t["currency"]): (t["sum"], t["legs"]) for t in store.ledger.ledger_totals()}
            assert totals == {(f"txn_{p.payment_id}_capture", "EUR"): (0, 3), ("txn_ref_1", "EUR"): (0, 2)}

    def test_report_counters_counted_in_both_regions_are_summed(self, regions):
        a, b = regions
        a.reports.apply_report("reports", [ReportDelta("ten_a", "evt_ra", {"payments": 1, "amount:EUR": 100})])
        b.reports.apply_report("reports", [ReportDelta("ten_a", "evt_rb", {"payments": 1, "amount:EUR": 50}),
                                           ReportDelta("ten_a", "evt_rc", {"declined": 1})])
        for store in regions:
            assert store.reports.report_counters("ten_a") == {"payments": 2, "amount:EUR": 150, "declined": 1}

    def test_control_records_are_each_regions_own(self, regions):
        a, b = regions
        a.controls.put_control("breaker:sim-a", {"state": "open", "failures": 5, "opened_at": None})
        assert b.controls.get_control("breaker:sim-a") is None
        b.controls.put_control("breaker:sim-a", {"state": "closed", "failures": 0, "opened_at": None})
        assert a.controls.get_control("breaker:sim-a")["state"] == "open"
