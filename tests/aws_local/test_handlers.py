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
        assert [json.loads(r.value)["region"] for r in mine] == ["local-1"]  # never the replica's event
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


def test_stage_handler_dead_letters_records_of_unknown_payments_on_kafka(aws_stack):
    import app as app_module
    s = aws_stack
    event = load("msk_batch.json")
    keys = {base64.b64decode(r["key"]).decode() for batch in event["records"].values() for r in batch}
    with Client(app_module.app) as client:
        result = client.lambda_.invoke("validation", event)
    assert result.payload == {"batchItemFailures": []}  # permanent failures go to the DLQ, not back
    dead = [json.loads(r.value) for r in s.platform.bus.read_all("payments.initiated.dlq") if r.key in keys]
    assert {d["key"] for d in dead} == keys and all("permanent" in d["error"] for d in dead)
