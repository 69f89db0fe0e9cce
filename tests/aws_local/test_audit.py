"""aws-local: payment state changes reach the DynamoDB audit log; verify catches an edit there too."""
from __future__ import annotations

import json
import uuid

from chalicelib.adapters.aws.dynamodb_audit import DynamoAuditLog
from chalicelib.services import audit

from .conftest import card_body


def test_state_changes_are_chained_in_dynamodb_and_tampering_is_named(aws_stack):
    s = aws_stack
    tid = s.tenant["tenant_id"]
    r = s.post("/v1/payments", card_body(), **{"Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code == 202, r.body
    pid = json.loads(r.body)["id"]
    s.drive(lambda: s.platform.store.payments.get_payment(tid, pid).status == "settled")
    s.drive(lambda: s.platform.store.audit_queue.pending_audit_count(tid) == 0, timeout_s=30)  # the relay loop chains
    log = s.platform.audit_log
    assert isinstance(log, DynamoAuditLog)
    bodies = [json.loads(raw) for _, raw, _ in log.rows(tid)]
    mine = [b for b in bodies if b.get("subject") == pid]
    assert mine[0]["action"] == "payment.create" and mine[0]["actor"].startswith("api:key_")
    timeline = s.platform.store.payments.timeline(tid, pid)
    chained = [(b["from"], b["to"]) for b in mine[1:]]  # the notification stage may still be adding some
    assert len(chained) >= 7 and chained == [(t["from"], t["to"]) for t in timeline][:len(chained)]
    import app as app_module
    scheduled = {"version": "0", "id": "e1", "detail-type": "Scheduled Event", "source": "aws.events",
                 "account": "000000000000", "time": "2030-01-01T00:00:00Z", "region": "us-east-1",
                 "resources": [], "detail": {}}
    assert "audited" in app_module.reconcile_unknown_outcomes(scheduled, None)  # the scheduled Lambda chains too
    report = audit.verify(s.platform, tid)
    assert report["ok"] and report["results"][0]["entries"] >= len(bodies)

    # Someone with table access rewrites one state-change entry: verify names it.
    seq = mine[2]["seq"]
    chain = audit.chain_name(tid, s.platform.settings.region)  # the tenant's chain in this region
    key = {"pk": {"S": f"{chain}#audit"}, "sk": {"S": f"{seq:012d}"}}
    original = s.raw_store.unit_of_work.client.get_item(TableName=s.table, Key=key, ConsistentRead=True)["Item"]
    forged = dict(mine[2], actor="stage:someone-else")
    forged.pop("hash", None)
    s.raw_store.unit_of_work.client.put_item(TableName=s.table, Item={
        "pk": {"S": f"{chain}#audit"}, "sk": {"S": f"{seq:012d}"}, "body": {"B": audit.canonical(forged)},
        "hash": {"S": log.rows(tid)[seq - 1][2]}})
    result = audit.verify(s.platform, tid)["results"][0]
    assert not result["ok"] and result["entry"] == seq and "altered" in result["problem"]
    s.raw_store.unit_of_work.client.put_item(TableName=s.table, Item=original)  # put back: the stack is shared
    assert audit.verify(s.platform, tid)["ok"]
