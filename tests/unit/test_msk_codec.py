"""handlers/msk.py: the Lambda MSK event shape, built and read back.

tests/events/msk_batch.json is a recorded-style batch (two partitions, three
payments.initiated v2 events). Regenerate it with
`PYTHONPATH=chalice_app python tests/unit/test_msk_codec.py`.
"""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib import codec
from chalicelib.ports import BusRecord
from chalicelib.handlers.msk import build_event, item_identifier, iter_records, parse_item_identifier

FIXTURE = Path(__file__).resolve().parents[1] / "events" / "msk_batch.json"
FAST = settings(max_examples=150, deadline=None, database=None)
BATCH = settings(max_examples=60, deadline=None, database=None)  # each example is a whole batch

# Kafka topic names: [a-zA-Z0-9._-], at most 249 characters.
topics = st.from_regex(r"[a-zA-Z0-9._-]{1,60}", fullmatch=True)
partitions = st.integers(0, 10_000)
offsets = st.integers(0, 2**53)
header_lists = st.lists(st.tuples(st.text(min_size=1, max_size=20), st.binary(max_size=40)), max_size=4,
                        unique_by=lambda h: h[0])


@st.composite
def batches(draw) -> list[BusRecord]:
    """Records of a few topic-partitions with distinct offsets, in a shuffled order."""
    tps = draw(st.lists(st.tuples(topics, st.integers(0, 12)), min_size=1, max_size=4, unique=True))
    records = []
    for topic, partition in tps:
        offs = draw(st.lists(offsets, min_size=1, max_size=5, unique=True))
        for offset in offs:
            key, value = draw(st.text(max_size=30)), draw(st.binary(max_size=200))
            records.append(BusRecord(topic, partition, offset, key, value, tuple(draw(header_lists)),
                                     draw(st.integers(0, 2**42))))
    return draw(st.permutations(records))


def _grouped(records: list[BusRecord]) -> dict[tuple[str, int], list[BusRecord]]:
    out: dict[tuple[str, int], list[BusRecord]] = {}
    for r in records:
        out.setdefault((r.topic, r.partition), []).append(r)
    return out


@BATCH
@given(batches())
def test_build_then_iter_round_trips(records):
    event = build_event(records)
    back = list(iter_records(json.loads(json.dumps(event))))  # survives the JSON trip Lambda makes
    assert len(back) == len(records)
    by_tp = _grouped(records)
    seen: dict[tuple[str, int], list] = {}
    for m in back:
        seen.setdefault((m.topic, m.partition), []).append(m)
    assert set(seen) == set(by_tp)
    for tp, got in seen.items():
        want = sorted(by_tp[tp], key=lambda r: r.offset)
        assert [m.offset for m in got] == [r.offset for r in want], "not in offset order within a partition"
        for m, r in zip(got, want):
            assert (m.topic, m.partition, m.offset, m.key, m.value, m.timestamp_ms) == (
                r.topic, r.partition, r.offset, r.key, r.value, r.timestamp_ms)
            assert m.headers == dict(r.headers)
            assert m.item_id == item_identifier(r.topic, r.partition, r.offset)


@BATCH
@given(batches())
def test_event_has_the_lambda_msk_shape(records):
    event = build_event(records, source_arn="arn:aws:kafka:eu-west-1:123456789012:cluster/pay/abc",
                        bootstrap="b-1:9098")
    assert event["eventSource"] == "aws:kafka"
    assert event["eventSourceArn"] == "arn:aws:kafka:eu-west-1:123456789012:cluster/pay/abc"
    assert event["bootstrapServers"] == "b-1:9098"
    by_tp = _grouped(records)
    assert set(event["records"]) == {f"{t}-{p}" for t, p in by_tp}
    for group, items in event["records"].items():
        assert len({(i["topic"], i["partition"]) for i in items}) == 1
        for item in items:
            assert group == f"{item['topic']}-{item['partition']}"
            assert item["timestampType"] == "CREATE_TIME"
            assert isinstance(item["timestamp"], int)
            original = next(r for r in by_tp[(item["topic"], item["partition"])] if r.offset == item["offset"])
            assert base64.b64decode(item["key"], validate=True) == original.key.encode()
            assert base64.b64decode(item["value"], validate=True) == original.value
            for header in item["headers"]:
                assert len(header) == 1
                (values,) = header.values()
                assert isinstance(values, list) and all(isinstance(b, int) and 0 <= b <= 255 for b in values)
            assert [(k, bytes(v)) for h in item["headers"] for k, v in h.items()] == list(original.headers)


def test_headers_are_lists_of_byte_values():
    record = BusRecord("payments.initiated", 0, 5, "pay_1", b"{}", (("tenant_id", b"ten_a"),), 1)
    (item,) = build_event([record])["records"]["payments.initiated-0"]
    assert item["headers"] == [{"tenant_id": [116, 101, 110, 95, 97]}]
    assert item["key"] == "cGF5XzE=" and item["value"] == "e30="


def test_iter_records_sorts_each_partition_by_offset():
    event = {"records": {"t-0": [{"topic": "t", "partition": 0, "offset": o, "key": "", "value": ""}
                                 for o in (9, 3, 7)]}}
    assert [r.offset for r in iter_records(event)] == [3, 7, 9]


def test_iter_records_tolerates_absent_key_value_headers_and_timestamp():
    event = {"records": {"t-1": [{"topic": "t", "partition": "1", "offset": "4", "key": None, "value": None}]}}
    (record,) = iter_records(event)
    assert (record.partition, record.offset, record.key, record.value, record.headers, record.timestamp_ms) == (
        1, 4, "", b"", {}, 0)
    assert list(iter_records({})) == [] and list(iter_records({"records": None})) == []


@FAST
@given(topics, partitions, offsets)
def test_item_identifier_round_trips(topic, partition, offset):
    item = item_identifier(topic, partition, offset)
    assert item == f"{topic}-{partition}@{offset}"
    assert parse_item_identifier(item) == (topic, partition, offset)


@pytest.mark.parametrize("topic", ["payments.initiated", "payments.initiated.dlq", "a-b-c", "x-1", "-", "a--",
                                   "9", "t.-_.-_"])
@pytest.mark.parametrize("partition,offset", [(0, 0), (12, 3), (7, 10**12)])
def test_item_identifier_with_dots_and_dashes(topic, partition, offset):
    assert parse_item_identifier(item_identifier(topic, partition, offset)) == (topic, partition, offset)


@pytest.mark.parametrize("bad", ["no-offset", "topic@1", "topic-x@1", "topic-1@y", ""])
def test_parse_item_identifier_refuses_garbage(bad):
    with pytest.raises(ValueError):
        parse_item_identifier(bad)


# -- the recorded batch ---------------------------------------------------------------------------------
def _load_fixture() -> dict:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


def test_fixture_is_a_lambda_msk_event():
    event = _load_fixture()
    assert event["eventSource"] == "aws:kafka"
    assert re.fullmatch(r"arn:aws:kafka:[a-z0-9-]+:\d{12}:cluster/.+", event["eventSourceArn"])
    assert sorted(event["records"]) == ["payments.initiated-0", "payments.initiated-1"]
    assert sum(len(v) for v in event["records"].values()) == 3


def test_fixture_decodes_into_valid_events():
    records = list(iter_records(_load_fixture()))
    assert [(r.topic, r.partition, r.offset) for r in records] == [
        ("payments.initiated", 0, 41), ("payments.initiated", 0, 42), ("payments.initiated", 1, 7)]
    seen_ids = set()
    for record in records:
        event = codec.decode(record.value)
        assert (event.type, event.schema_version) == ("payments.initiated", 2)
        assert record.key == event.payment_id
        assert record.headers == {"tenant_id": event.tenant_id.encode(),
                                  "correlation_id": event.correlation_id.encode(),
                                  "event_type": event.type.encode()}
        assert record.item_id == f"payments.initiated-{record.partition}@{record.offset}"
        seen_ids.add(event.event_id)
    assert len(seen_ids) == 3


def _build_fixture() -> dict:
    """Three payments.initiated v2 events made by the real producer path, in a two-partition batch."""
    from chalicelib import ids

    def initiated(tenant, amount, currency, method, customer, at):
        return codec.new_event("payments.initiated", tenant_id=tenant, payment_id=ids.payment_id(),
                               correlation_id=ids.new_id("corr"), causation_id=None, at=at, region="eu-west-1",
                               data={"amount": amount, "currency": currency, "capture_mode": "automatic",
                                     "payment_method": method, "reference": f"order-{amount}",
                                     "customer": customer, "metadata": {"channel": "web"}})

    card = {"type": "card", "card": {"token": "tok_01JD7Q3Y7K9N2C4V6B8M0P1R2S", "bin": "424242", "last4": "4242",
                                     "brand": "visa", "exp_month": 12, "exp_year": 2030}}
    bank = {"type": "bank_account", "bank_account": {"token": "tok_01JD7Q3Y7K9N2C4V6B8M0P1R2T", "country": "DE",
                                                     "last4": "3000", "holder_name": "Erika Mustermann"}}
    events = [(0, 41, initiated("ten_acme", 1999, "EUR", card, {"id": "cus_1", "country": "DE"},
                                "2026-11-25T10:00:00.120000Z")),
              (0, 42, initiated("ten_acme", 50000, "JPY", card, {"id": "cus_2"}, "2026-11-25T10:00:00.480000Z")),
              (1, 7, initiated("ten_globex", 12500, "EUR", bank, {"id": "cus_9", "country": "FR"},
                               "2026-11-25T10:00:01.002000Z"))]
    records = []
    for partition, offset, event in events:
        out = codec.to_record(event)
        records.append(BusRecord(out.topic, partition, offset, out.key, out.value, out.headers,
                                 1795600800000 + offset))
    return build_event(records, source_arn="arn:aws:kafka:eu-west-1:123456789012:cluster/payments/"
                                            "5b3c1e2a-7f4d-4c1b-9a8e-2d6f0c3b4a59-3",
                       bootstrap="b-1.payments.kafka.eu-west-1.amazonaws.com:9098,"
                                 "b-2.payments.kafka.eu-west-1.amazonaws.com:9098")


if __name__ == "__main__":  # regenerate the fixture
    text = json.dumps(_build_fixture(), indent=2)
    text = re.sub(r"\[\s+([\d,\s]+?)\s+\]", lambda m: "[" + re.sub(r"\s+", " ", m[1]) + "]", text)  # byte lists
    FIXTURE.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {FIXTURE}")


def test_trace_ids_never_look_like_card_numbers():
    from chalicelib.observability.tracing import XRayIds
    ids = XRayIds()
    import re
    for _ in range(20000):
        assert not re.search(r"\d{13}", f"{ids.generate_span_id():016x}")
        assert not re.search(r"\d{13}", f"{ids.generate_trace_id():032x}"[8:])
