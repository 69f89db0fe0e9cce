"""Duplicate storm: 1,000 concurrent identical POST /v1/payments with one Idempotency-Key,
against the real local stack (`make local`'s processes) over HTTP.

Exactly one payment, one PSP authorization and one ledger posting set may come
of it; every answer is the first 202 replayed byte for byte, or a 409 "in progress".
"""
from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from ..stack import PSPS, card_body, start_local, stop_local

REQUESTS = int(os.environ.get("STORM_REQUESTS", "1000"))
THREADS = 64


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = start_local(tmp_path_factory.mktemp("storm"))
    yield stack
    stop_local(stack)


def test_duplicate_storm_makes_one_payment_one_authorization_one_posting_set(stack):
    key = "storm-" + uuid.uuid4().hex
    body = json.dumps(card_body(reference="storm", customer={"id": "storm", "country": "DE"})).encode()

    def post(_: int) -> tuple[int, bytes, dict[str, str]]:
        status, headers, raw = stack.call("POST", "/v1/payments", body, headers={"Idempotency-Key": key},
                                          timeout=60)
        return status, raw, headers

    started = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        answers = list(pool.map(post, range(REQUESTS)))
    wall = time.monotonic() - started

    statuses = Counter(status for status, _, _ in answers)
    accepted = [raw for status, raw, _ in answers if status == 202]
    conflicts = [json.loads(raw) for status, raw, _ in answers if status == 409]
    assert set(statuses) <= {202, 409}, statuses
    assert accepted, "no request was accepted"
    assert len(set(accepted)) == 1, "a replayed 202 differs from the first response"
    assert all(c["title"] == "Request in progress" and c["status"] == 409 for c in conflicts), conflicts[:3]
    replayed = sum(1 for status, _, h in answers if status == 202 and h.get("Idempotent-Replayed") == "true")
    assert replayed == len(accepted) - 1  # one original answer; every other 202 is its replay
    payment_id = json.loads(accepted[0])["id"]

    doc = stack.wait_status(payment_id, timeout_s=60)
    assert doc["status"] == "settled", doc
    listed = stack.list_all()
    stored = stack.query("SELECT payment_id FROM payments WHERE tenant_id=?", stack.tenant_id)
    assert [p["id"] for p in listed] == [payment_id]
    assert stored == [(payment_id,)]
    auths = {psp: stack.sim_stats(psp) for psp in PSPS}
    assert sum(s["authorizations"] for s in auths.values()) == 1
    assert sum(s["by_reference"].get(payment_id, 0) for s in auths.values()) == 1
    deadline = time.monotonic() + 15  # settlement posts the ledger as it settles; wait out the commit
    while not stack.posting_sets(payment_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(stack.posting_sets(payment_id)) == 1
    assert stack.payctl("ledger", "check")["balanced"] is True

    print(f"\nduplicate storm: {REQUESTS} requests on {THREADS} threads in {wall:.1f} s "
          f"({REQUESTS / wall:.0f}/s): 202 {statuses[202]} (replayed {replayed}), 409 in progress {statuses[409]}; "
          f"payments {len(stored)}, PSP authorizations {sum(s['authorizations'] for s in auths.values())}, "
          f"ledger posting sets {len(stack.posting_sets(payment_id))}, final status {doc['status']}")
