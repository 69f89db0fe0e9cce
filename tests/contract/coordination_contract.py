"""PaymentStore contract, part two: in-flight idempotency claims, reminders, control records.

Mixed into a store's test class next to PaymentStoreContract; uses the same make_store."""
from __future__ import annotations

from dataclasses import replace

import pytest

from chalicelib.ports import AlreadyExists, Changes, IdempotencyRecord, Reminder

from .factories import at, event_for, new_payment


def claim(key: str = "idem-9", *, request_hash: str = "h1", now: int = 1_000, lock: int = 30,
          tenant_id: str = "ten_a") -> IdempotencyRecord:
    return IdempotencyRecord(tenant_id, key, request_hash, 0, b"", {}, now + 86_400, now, "in_flight", now + lock)


def completed(record: IdempotencyRecord, body: bytes = b'{"id":"pay_1"}') -> IdempotencyRecord:
    return replace(record, status_code=202, response=body, headers={"Location": "/v1/payments/pay_1"},
                   state="completed", locked_until=0)


class StoreCoordinationContract:
    @pytest.fixture
    def store(self, tmp_path):
        return self.make_store(tmp_path)

    # -- idempotency claims ----------------------------------------------------------------
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

    # -- reminders ---------------------------------------------------------------------------
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

    # -- control records ---------------------------------------------------------------------
    def test_control_records_round_trip_and_overwrite(self, store):
        assert store.controls.get_control("breaker:sim-a") is None
        store.controls.put_control("breaker:sim-a", {"state": "open", "failures": 5, "opened_at": at(1)})
        store.controls.put_control("breaker:sim-a", {"state": "half_open", "failures": 5, "opened_at": at(1)})
        assert store.controls.get_control("breaker:sim-a") == {"state": "half_open", "failures": 5, "opened_at": at(1)}
        assert store.controls.get_control("breaker:sim-b") is None

    # -- kept balances -------------------------------------------------------------------------
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

    def test_purging_expired_idempotency_keeps_live_records(self, store):
        store.commit(Changes(idempotency=completed(claim("old", now=1_000))))
        store.commit(Changes(idempotency=completed(claim("new", now=90_000))))
        store.idempotency.purge_expired_idempotency(1_000 + 86_400)
        assert store.idempotency.get_idempotency("ten_a", "old", 1_000 + 86_400) is None
        assert store.idempotency.get_idempotency("ten_a", "new", 1_000 + 86_400).state == "completed"
        assert store.idempotency.claim_idempotency(claim("old", now=1_000 + 86_400)) is None  # the key is free again
