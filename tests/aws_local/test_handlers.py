"""app.py's Lambda handlers invoked as Lambda would (chalice.test.Client().lambda_.invoke),
with the sample events in tests/events/, against the aws-local adapters."""
from __future__ import annotations

import base64
import json
from pathlib import Path

from chalice.test import Client

EVENTS = Path(__file__).resolve().parents[1] / "events"


def load(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def test_outbox_relay_publishes_new_outbox_items_and_marks_them_published(aws_stack):
    import app as app_module
    s = aws_stack
    event = load("dynamodb_stream_outbox.json")
    insert = event["Records"][0]["dynamodb"]["NewImage"]
    event_id = json.loads(insert["event"]["S"])["event_id"]
    with s.relay_lock:  # this test is the stream's consumer for now
        s.platform.store.unit_of_work.client.put_item(TableName=s.table, Item=insert)  # the committed outbox item
        with Client(app_module.app) as client:
            result = client.lambda_.invoke("outbox_relay", event)
        # The MODIFY and REMOVE records are not outbox inserts, and the last INSERT is another
        # region's item replicated into this region's stream: that region publishes it.
        assert result.payload == {"published": 1}
        mine = [r for r in s.platform.bus.read_all("payments.initiated") if r.key == insert["payment_id"]["S"]]
        relayed = [r for r in mine if json.loads(r.value)["event_id"] == event_id]
        assert len(relayed) == 1
        assert dict(relayed[0].headers)["tenant_id"] == b"ten_acme"
        replica = json.loads(event["Records"][-1]["dynamodb"]["NewImage"]["event"]["S"])["event_id"]
        assert replica not in {json.loads(r.value)["event_id"] for r in mine}  # never the other region's event
        gone = s.platform.store.unit_of_work.client.get_item(TableName=s.table, Key={"pk": insert["pk"], "sk": insert["sk"]})
        assert "Item" not in gone  # marked published


def test_outbox_relay_ignores_batches_without_outbox_inserts(aws_stack):
    import app as app_module
    event = load("dynamodb_stream_outbox.json")
    event["Records"] = event["Records"][1:]
    with Client(app_module.app) as client:
        assert client.lambda_.invoke("outbox_relay", event).payload == {"published": 0}


def test_reports_lambda_counts_each_stream_change_once(aws_stack):
    import app as app_module
    event = load("dynamodb_stream_outbox.json")
    with Client(app_module.app) as client:
        for _ in range(3):  # Lambda retries a batch after an error or timeout
            assert set(client.lambda_.invoke("reports", event).payload) == {"counted"}
    # ten_acme is the sample's tenant: one initiated payment of 19.99 EUR, whoever read it first
    # (the stream reporter also sees the item when the relay test puts it in the table).
    counters = aws_stack.platform.store.reports.report_counters("ten_acme")
    assert (counters["payments"], counters["amount:EUR"], counters["changes"]) == (1, 1999, 1)


def _from_region(event: dict, region: str) -> dict:
    """The sample batch as if its events had been written in `region`."""
    for batch in event["records"].values():
        for r in batch:
            doc = json.loads(base64.b64decode(r["value"]))
            doc["region"] = region
            r["value"] = base64.b64encode(json.dumps(doc).encode()).decode()
    return event


def test_stage_handler_dead_letters_records_of_unknown_payments_on_kafka(aws_stack):
    import app as app_module
    s = aws_stack
    event = _from_region(load("msk_batch.json"), s.platform.settings.region)
    keys = {base64.b64decode(r["key"]).decode() for batch in event["records"].values() for r in batch}
    with Client(app_module.app) as client:
        result = client.lambda_.invoke("validation", event)
    assert result.payload == {"batchItemFailures": []}  # permanent failures go to the DLQ, not back
    dead = [json.loads(r.value) for r in s.platform.bus.read_all("payments.initiated.dlq") if r.key in keys]
    # (the stack's own worker may also have dead-lettered the relay test's sample, after its retries)
    assert {d["key"] for d in dead if d["error"].startswith("permanent")} == keys


def test_stage_handler_retries_events_of_another_region_whose_payment_has_not_arrived(aws_stack):
    """Items replicate one by one: another region's event can come before its payment. Retried, not
    dead-lettered (the sample's events were written in eu-west-1, this stack is another region)."""
    import app as app_module
    event = _from_region(load("msk_batch.json"), "eu-west-1")
    assert aws_stack.platform.settings.region != "eu-west-1"
    with Client(app_module.app) as client:
        result = client.lambda_.invoke("validation", event)
    reasons = [f["reason"] for f in result.payload["batchItemFailures"]]
    assert reasons and all("has not arrived here yet" in r or "earlier record" in r for r in reasons)
