"""Contract suites for the store's ports, part two: idempotency keys, the ledger, reminders,
control records, report counters, the audit queue and request counters; and STORE_CONTRACTS,
every store suite, which each adapter's test class inherits whole."""
from __future__ import annotations

from dataclasses import replace

import pytest

from chalicelib.ports import AlreadyExists, Changes, ConcurrencyConflict, IdempotencyRecord, Reminder, ReportDelta

from .factories import at, capture_postings, close_quietly, event_for, new_payment, refund_postings
from .store_contract import (
    CONSUMER,
    OutboxContract,
    PaymentReadsContract,
    SecretsContract,
    StoreContract,
    UnitOfWorkContract,
    idem,
)


def claim(key: str = "idem-9", *, request_hash: str = "h1", now: int = 1_000, lock: int = 30,
          tenant_id: str = "ten_a") -> IdempotencyRecord:
    return IdempotencyRecord(tenant_id, key, request_hash, 0, b"", {}, now + 86_400, now, "in_flight", now + lock)


def completed(record: IdempotencyRecord, body: bytes = b'{"id":"pay_1"}') -> IdempotencyRecord:
    return replace(record, status_code=202, response=body, headers={"Location": "/v1/payments/pay_1"},
                   state="completed", locked_until=0)


class IdempotencyKeysContract(StoreContract):
    """IdempotencyKeys: records replay byte-identical, claims guard in-flight requests, expiry frees keys."""

    def test_idempotency_record_reads_back_byte_identical(self, store):
        body = b'{"amount":1999,"id":"pay_1"}\n\x00\xff\xfe'
        rec = idem(body=body)
        p = new_payment()
        store.commit(Changes(payment=p, events=[event_for(p, "payments.initiated")], idempotency=rec))
        got = store.idempotency.get_idempotency("ten_a", "idem-1", 1_050)
        assert got is not None
        assert (got.tenant_id, got.key, got.request_hash, got.status_code) == ("ten_a", "idem-1", rec.request_hash, 202)
        assert got.response == body and type(got.response) is bytes
        assert got.headers == rec.headers and got.expires_at == rec.expires_at == 1_100
        assert store.idempotency.get_idempotency("ten_b", "idem-1", 1_050) is None

    def test_idempotency_record_expires_at_its_ttl(self, store):
        store.commit(Changes(idempotency=idem(created_at=1_000, ttl=100)))
        assert store.idempotency.get_idempotency("ten_a", "idem-1", 1_099) is not None
        assert store.idempotency.get_idempotency("ten_a", "idem-1", 1_100) is None
        assert store.idempotency.get_idempotency("ten_a", "idem-1", 9_999) is None

    def test_expired_idempotency_record_can_be_replaced(self, store):
        store.commit(Changes(idempotency=idem(created_at=1_000, ttl=100, body=b"first")))
        store.commit(Changes(idempotency=idem(created_at=1_100, ttl=100, body=b"second")))
        got = store.idempotency.get_idempotency("ten_a", "idem-1", 1_150)
        assert (got.response, got.expires_at) == (b"second", 1_200)

    def test_live_idempotency_record_cannot_be_replaced(self, store):
        store.commit(Changes(idempotency=idem(created_at=1_000, ttl=100, body=b"first")))
        p = new_payment()
        with pytest.raises(AlreadyExists):
            store.commit(Changes(payment=p, events=[event_for(p)],
                                 idempotency=idem(created_at=1_099, ttl=100, body=b"second")))
        assert store.idempotency.get_idempotency("ten_a", "idem-1", 1_050).response == b"first"
        assert store.payments.get_payment("ten_a", p.payment_id) is None and store.outbox.pending_outbox(10) == []
        store.commit(Changes(idempotency=idem("ten_b", created_at=1_050, body=b"other tenant")))

    def test_first_claim_wins_and_a_second_sees_it_in_flight(self, store):
        assert store.idempotency.claim_idempotency(claim()) is None
        found = store.idempotency.claim_idempotency(claim(now=1_001))
        assert found is not None and found.state == "in_flight" and found.request_hash == "h1"
        assert store.idempotency.claim_idempotency(claim(tenant_id="ten_b")) is None  # keys are per tenant

    def test_completing_a_claim_replaces_it_with_the_response(self, store):
        mine = claim()
        assert store.idempotency.claim_idempotency(mine) is None
        p = new_payment()
        store.commit(Changes(payment=p, events=[event_for(p, "payments.initiated")], idempotency=completed(mine)))
        found = store.idempotency.claim_idempotency(claim(now=1_005))
        assert found.state == "completed" and found.response == b'{"id":"pay_1"}'
        assert store.idempotency.get_idempotency("ten_a", "idem-9", 1_005).state == "completed"

    def test_a_lapsed_claim_no_longer_blocks_the_key(self, store):
        assert store.idempotency.claim_idempotency(claim(now=1_000, lock=30)) is None
        assert store.idempotency.claim_idempotency(claim(now=1_029, request_hash="h2")) is not None
        assert store.idempotency.claim_idempotency(claim(now=1_030, request_hash="h2")) is None  # crashed holder's lock lapsed
        assert store.idempotency.get_idempotency("ten_a", "idem-9", 1_031).request_hash == "h2"

    def test_a_completed_record_outlives_its_lock_until_it_expires(self, store):
        mine = claim(now=1_000, lock=30)
        store.idempotency.claim_idempotency(mine)
        store.commit(Changes(idempotency=completed(mine)))
        assert store.idempotency.claim_idempotency(claim(now=5_000)).state == "completed"
        assert store.idempotency.claim_idempotency(claim(now=1_000 + 86_400)) is None  # expired: key free again

    def test_release_drops_only_our_in_flight_claim(self, store):
        store.idempotency.claim_idempotency(claim())
        store.idempotency.release_idempotency("ten_a", "idem-9", "other-hash")
        assert store.idempotency.claim_idempotency(claim(now=1_001)) is not None
        store.idempotency.release_idempotency("ten_a", "idem-9", "h1")
        assert store.idempotency.claim_idempotency(claim(now=1_002)) is None
        store.commit(Changes(idempotency=completed(claim(now=1_002))))
        store.idempotency.release_idempotency("ten_a", "idem-9", "h1")  # a completed record is never released
        assert store.idempotency.get_idempotency("ten_a", "idem-9", 1_003).state == "completed"

    def test_completing_over_another_requests_live_claim_conflicts(self, store):
        store.idempotency.claim_idempotency(claim(request_hash="h1"))
        with pytest.raises(AlreadyExists):
            store.commit(Changes(idempotency=completed(claim(request_hash="h2", now=1_001))))
        assert store.idempotency.get_idempotency("ten_a", "idem-9", 1_002).request_hash == "h1"

    def test_purging_expired_idempotency_keeps_live_records(self, store):
        store.commit(Changes(idempotency=completed(claim("old", now=1_000))))
        store.commit(Changes(idempotency=completed(claim("new", now=90_000))))
        store.idempotency.purge_expired_idempotency(1_000 + 86_400)
        assert store.idempotency.get_idempotency("ten_a", "old", 1_000 + 86_400) is None
        assert store.idempotency.get_idempotency("ten_a", "new", 1_000 + 86_400).state == "completed"
        assert store.idempotency.claim_idempotency(claim("old", now=1_000 + 86_400)) is None  # the key is free again


class LedgerContract(StoreContract):
    """Ledger: balances kept with each posting equal the sum of the postings (I4)."""

    def test_ledger_balances_sum_postings_per_account_and_currency(self, store):
        eur = self.created(store, amount=1999)
        usd = self.created(store, amount=500, currency="USD")
        store.commit(Changes(postings=capture_postings(eur) + capture_postings(usd, fee=10)))
        store.commit(Changes(postings=refund_postings(eur, 300)))
        store.commit(Changes(postings=capture_postings(self.created(store, "ten_b"))))
        got = {(b["account"], b["currency"]): b["balance"] for b in store.ledger.balances("ten_a")}
        assert got == {("psp_receivable:sim-a", "EUR"): 1699, ("merchant_payable", "EUR"): -1640,
                       ("platform_fees", "EUR"): -59, ("psp_receivable:sim-a", "USD"): 500,
                       ("merchant_payable", "USD"): -490, ("platform_fees", "USD"): -10}
        assert store.ledger.balances("ten_c") == []

    def test_ledger_totals_per_transaction(self, store):
        a, b = self.created(store), self.created(store, "ten_b", currency="USD")
        lopsided = capture_postings(b)[:2]  # I4 checks must see an unbalanced transaction
        store.commit(Changes(postings=capture_postings(a) + refund_postings(a, 100) + lopsided))
        got = {(t["txn_id"], t["currency"]): (t["sum"], t["legs"]) for t in store.ledger.ledger_totals()}
        assert got == {(f"txn_{a.payment_id}_capture", "EUR"): (0, 3), ("txn_ref_1", "EUR"): (0, 2),
                       (f"txn_{b.payment_id}_capture", "USD"): (59, 2)}

    def test_balances_are_kept_equal_to_the_sum_of_postings(self, store):
        from .factories import capture_postings, drive_to_authorized, refund_postings
        p = drive_to_authorized(new_payment())
        store.commit(Changes(postings=capture_postings(p, fee=59)))
        store.commit(Changes(postings=refund_postings(p, 500)))
        assert store.ledger.ledger_drift() == []
        by_account = {(b["account"], b["currency"]): b["balance"] for b in store.ledger.balances(p.tenant_id)}
        legs = capture_postings(p, fee=59) + refund_postings(p, 500)
        for account, currency in by_account:
            assert by_account[(account, currency)] == sum(
                x.amount for x in legs if (x.account, x.currency) == (account, currency))
        assert store.ledger.balances("ten_nobody") == []


class RemindersContract(StoreContract):
    """Reminders: set and cleared with the state, due in order."""

    def test_reminders_come_due_in_order_and_can_be_moved_or_cleared(self, store):
        store.commit(Changes(reminders=[Reminder("ten_a", "pay_2", at(20)), Reminder("ten_b", "pay_1", at(10)),
                                        Reminder("ten_a", "pay_3", at(99))]))
        assert store.reminders.due_reminders(at(5), 10) == []
        assert [(r.tenant_id, r.payment_id) for r in store.reminders.due_reminders(at(30), 10)] == [
            ("ten_b", "pay_1"), ("ten_a", "pay_2")]
        assert len(store.reminders.due_reminders(at(30), 1)) == 1
        store.commit(Changes(reminders=[Reminder("ten_b", "pay_1", at(50)), Reminder("ten_a", "pay_2", None)]))
        assert [r.payment_id for r in store.reminders.due_reminders(at(60), 10)] == ["pay_1"]
        assert store.reminders.due_reminders(at(60), 10)[0].due_at == at(50)

    def test_reminders_commit_atomically_with_the_state(self, store):
        p = new_payment()
        store.commit(Changes(payment=p, events=[event_for(p, "payments.initiated")]))
        with pytest.raises(Exception):
            store.commit(Changes(payment=p, expected_version=7, reminders=[Reminder("ten_a", p.payment_id, at(1))]))
        assert store.reminders.due_reminders(at(100), 10) == []


class ControlRecordsContract(StoreContract):
    """ControlRecords: shared records, last writer wins."""

    def test_control_records_round_trip_and_overwrite(self, store):
        assert store.controls.get_control("breaker:sim-a") is None
        store.controls.put_control("breaker:sim-a", {"state": "open", "failures": 5, "opened_at": at(1)})
        store.controls.put_control("breaker:sim-a", {"state": "half_open", "failures": 5, "opened_at": at(1)})
        assert store.controls.get_control("breaker:sim-a") == {"state": "half_open", "failures": 5, "opened_at": at(1)}
        assert store.controls.get_control("breaker:sim-b") is None


class ReportCountersContract(StoreContract):
    """ReportCounters: each change counted once per consumer, however often it is delivered."""

    def test_report_counts_each_change_once_however_often_it_is_delivered(self, store):
        d1 = ReportDelta("ten_a", "evt_r1", {"payments": 1, "amount:EUR": 1999})
        d2 = ReportDelta("ten_a", "evt_r2", {"authorized": 1, "psp:sim-a:authorized": 1})
        assert store.reports.apply_report("reports", [d1]) == 1
        assert store.reports.apply_report("reports", [d1, d2, d1]) == 1  # redelivered batch, duplicate inside it
        assert store.reports.apply_report("reports", [d2, d1]) == 0
        assert store.reports.report_counters("ten_a") == {"payments": 1, "amount:EUR": 1999, "authorized": 1,
                                                  "psp:sim-a:authorized": 1}

    def test_report_counters_are_per_tenant_and_per_consumer(self, store):
        assert store.reports.report_counters("ten_a") == {}
        store.reports.apply_report("reports", [ReportDelta("ten_a", "evt_1", {"payments": 1}),
                                       ReportDelta("ten_b", "evt_2", {"payments": 1, "amount:USD": 500}),
                                       ReportDelta("ten_b", "evt_3", {"payments": 1, "amount:USD": 250})])
        assert store.reports.report_counters("ten_a") == {"payments": 1}
        assert store.reports.report_counters("ten_b") == {"payments": 2, "amount:USD": 750}
        assert store.reports.report_counters("ten_c") == {}
        # Another consumer's markers are its own; a stage's marker for the same event id is not ours.
        store.commit(Changes(processed=(CONSUMER, "evt_4")))
        assert store.reports.apply_report("reports", [ReportDelta("ten_a", "evt_4", {"payments": 1})]) == 1
        assert store.reports.apply_report("reports.v2", [ReportDelta("ten_a", "evt_1", {"payments": 1})]) == 1
        assert store.reports.report_counters("ten_a") == {"payments": 3}

    def test_report_batch_bigger_than_one_transaction_counts_exactly(self, store):
        deltas = [ReportDelta(f"ten_{i % 7}", f"evt_big_{i}", {"payments": 1, "amount:EUR": i}) for i in range(130)]
        assert store.reports.apply_report("reports", deltas[:40]) == 40
        assert store.reports.apply_report("reports", deltas) == 90  # the first 40 are redeliveries
        for t in range(7):
            mine = [i for i in range(130) if i % 7 == t]
            assert store.reports.report_counters(f"ten_{t}") == {"payments": len(mine), "amount:EUR": sum(mine)}


class AuditQueueContract(StoreContract):
    """AuditQueue: one unchained audit row per state change, in the change's commit."""

    def test_each_state_change_gets_an_audit_row_in_its_commit(self, store):
        p = new_payment()
        store.commit(Changes(payment=p, events=[event_for(p, "payments.initiated")], actor="api:key_1",
                             correlation_id="corr-create"))
        p.validate(at(1))
        p.screen(at(2), "approve", 12, [])
        store.commit(Changes(payment=p, expected_version=1, actor="stage:risk"))
        rows = [r for r in store.audit_queue.pending_audit(100) if r.tenant_id == "ten_a"]
        assert [r.source for r in rows] == [f"{p.payment_id}@1#c", f"{p.payment_id}@2#0", f"{p.payment_id}@2#1"]
        assert [(r.body["from"], r.body["to"], r.body["version"]) for r in rows] == [
            (None, "initiated", 1), ("initiated", "validated", 2), ("validated", "screened", 2)]
        assert [r.body["actor"] for r in rows] == ["api:key_1", "stage:risk", "stage:risk"]
        assert rows[0].body["correlation_id"] == "corr-create" and rows[1].body["correlation_id"] == "corr-contract"
        assert all(r.body["subject"] == p.payment_id and r.body["at"] for r in rows)
        assert len({r.id for r in rows}) == 3 and [r.id for r in rows] == sorted(r.id for r in rows)
        assert store.audit_queue.pending_audit_count("ten_a") == 3 and store.audit_queue.pending_audit_count("ten_b") == 0

    def test_a_refused_commit_leaves_no_audit_row(self, store):
        p = self.created(store)
        before = store.audit_queue.pending_audit(100)
        p.validate(at(1))
        with pytest.raises(ConcurrencyConflict):
            store.commit(Changes(payment=p, expected_version=7, actor="stage:validation"))
        with pytest.raises(AlreadyExists):
            store.commit(Changes(payment=new_payment(payment_id=p.payment_id)))
        assert store.audit_queue.pending_audit(100) == before

    def test_audit_rows_are_forgotten_once_chained(self, store):
        a, b = self.created(store, "ten_a"), self.created(store, "ten_b")
        rows = store.audit_queue.pending_audit(100)
        assert {r.tenant_id for r in rows} == {"ten_a", "ten_b"}
        store.audit_queue.mark_audited([r.id for r in rows if r.tenant_id == "ten_a"])
        store.audit_queue.mark_audited([r.id for r in rows if r.tenant_id == "ten_a"])  # again: harmless
        assert [r.body["subject"] for r in store.audit_queue.pending_audit(100)] == [b.payment_id]
        assert store.audit_queue.pending_audit_count("ten_a") == 0 and store.audit_queue.pending_audit_count("ten_b") == 1
        assert a.payment_id != b.payment_id


class RequestCountersContract(StoreContract):
    """RequestCounters: a window admits `limit` requests per tenant across every instance."""

    def test_count_request_admits_limit_per_tenant_and_window_across_instances(self, store, tmp_path):
        other = self.make_store(tmp_path)
        assert [s.requests.count_request("ten_a", 100, 3, 2_000) for s in (store, other, store, other)] == [
            True, True, True, False]
        assert store.requests.count_request("ten_b", 100, 3, 2_000)  # per tenant
        assert other.requests.count_request("ten_a", 101, 3, 2_000)  # per window
        close_quietly(other)

    def test_count_request_is_atomic_under_concurrency(self, store, tmp_path):
        import threading
        stores = [store] + [self.make_store(tmp_path) for _ in range(3)]
        admitted: list[bool] = []
        lock = threading.Lock()

        def hammer(s) -> None:
            for _ in range(10):
                ok = s.requests.count_request("ten_a", 7, 25, 2_000)
                with lock:
                    admitted.append(ok)
        threads = [threading.Thread(target=hammer, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(admitted) == 40 and admitted.count(True) == 25
        for s in stores[1:]:
            close_quietly(s)


class ChangeFeedContract(StoreContract):
    """ChangeFeed: every committed outbox event reaches a registered reader once, in commit order,
    by the adapter's own way (pulled from the embedded feed, pushed by the DynamoDB stream);
    stream records that are not new outbox items are left out."""

    def feed_changes(self, store, reader: str) -> list:
        """What the feed hands `reader` now. Pulled feeds: read, then advance past it; a pushed feed's
        adapter test overrides this to read its stream and pass the records through outbox_in."""
        got = store.feed.read(reader, 1000)
        if got:
            store.feed.advance(reader, got[-1].id)
        return got

    def test_every_committed_event_reaches_a_registered_reader_once_in_order(self, store):
        store.feed.register("reports")
        p = self.created(store)
        second = event_for(p, "payments.validated")
        store.commit(Changes(events=[second], processed=(CONSUMER, "evt-feed-1")))
        store.outbox.mark_published([r.id for r in store.outbox.pending_outbox(10)])  # the relay's work
        got = self.feed_changes(store, "reports")
        assert [r.event.type for r in got] == ["payments.initiated", "payments.validated"]
        assert got[1].event == second and got[0].id < got[1].id
        assert self.feed_changes(store, "reports") == []  # once

    def test_records_that_are_not_new_outbox_items_are_left_out(self, store):
        image = {"pk": {"S": "ten_a#pay#pay_1"}, "sk": {"S": "payment"}, "kind": {"S": "payment"}}
        assert store.feed.outbox_in([{"eventName": "INSERT", "dynamodb": {"NewImage": image}},
                                     {"eventName": "REMOVE", "dynamodb": {"OldImage": image}},
                                     {"eventName": "MODIFY", "dynamodb": {}}]) == []


STORE_CONTRACTS = (UnitOfWorkContract, PaymentReadsContract, OutboxContract, ChangeFeedContract, SecretsContract,
                   IdempotencyKeysContract, LedgerContract, RemindersContract, ControlRecordsContract, ReportCountersContract, AuditQueueContract,
                   RequestCountersContract)
