"""JSON Schemas: they compile, their examples hold, newer versions read older events, and the
codec enforces them on both sides of the bus."""
from __future__ import annotations

import copy
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

import fastjsonschema
import orjson
import pytest

from chalicelib import codec
from chalicelib.domain.events import EVENT_TYPES, Event
from chalicelib.errors import PermanentError
from chalicelib.schemas import (
    SchemaError, catalogue, latest_version, schemas_dir, validate_event, validate_request,
)

AT = "2026-11-25T10:00:00.000000Z"
ROOT = schemas_dir()
FILES = sorted((ROOT / "events").glob("*")) + sorted((ROOT / "api").glob("*"))
CATALOGUE = catalogue()
KEYS = sorted(CATALOGUE)


def _id(key: tuple[str, str, int]) -> str:
    return f"{key[0]}/{key[1]}.v{key[2]}"


def _versions() -> dict[tuple[str, str], list[int]]:
    versions: dict[tuple[str, str], list[int]] = defaultdict(list)
    for kind, name, version in KEYS:
        versions[(kind, name)].append(version)
    return {k: sorted(v) for k, v in versions.items()}


def _compat_pairs() -> list[tuple[tuple[str, str, int], tuple[str, str, int]]]:
    return [((kind, name, old), (kind, name, new))
            for (kind, name), vs in _versions().items() for i, old in enumerate(vs) for new in vs[i + 1:]]


def _initiated_data() -> dict[str, Any]:
    return {"amount": 1999, "currency": "EUR", "capture_mode": "automatic",
            "payment_method": {"type": "card", "card": {"token": "tok_abc123", "bin": "424242", "last4": "4242",
                                                        "brand": "visa", "exp_month": 12, "exp_year": 2030}},
            "reference": "order-1", "customer": {"id": "c1", "country": "DE"}, "metadata": {"order": "1"},
            "return_url": None}


def _new(etype: str = "payments.initiated", data: dict[str, Any] | None = None) -> Event:
    return codec.new_event(etype, tenant_id="ten_demo", payment_id="pay_01JD0000000000000000000001",
                           correlation_id="corr-1", causation_id=None, at=AT, region="local-1",
                           data=_initiated_data() if data is None else data)


# -- the files ---------------------------------------------------------------------------------
def test_every_schema_file_is_named_kind_name_version():
    # A misnamed file would be skipped silently by the loader.
    assert FILES
    for path in FILES:
        assert path.suffix == ".json" and path.stem.rsplit(".v", 1)[-1].isdigit(), path.name
    assert len(KEYS) == len(FILES)


@pytest.mark.parametrize("key", KEYS, ids=_id)
def test_schema_compiles_and_describes_itself(key):
    kind, name, version = key
    doc = CATALOGUE[key]
    fastjsonschema.compile(doc)
    assert doc["$schema"].startswith("http://json-schema.org/")
    assert doc["$id"] == f"urn:payments:{kind}:{name}:v{version}"
    assert doc.get("type") == "object" and doc.get("additionalProperties") is False
    if kind == "events":
        props = doc["properties"]
        assert props["type"] == {"const": name}
        # An event schema accepts its own version and every older one (newer reads older).
        assert (props["schema_version"]["minimum"], props["schema_version"]["maximum"]) == (1, version)


@pytest.mark.parametrize("key", KEYS, ids=_id)
def test_schema_examples_validate(key):
    examples = CATALOGUE[key].get("examples") or []
    assert examples, f"{_id(key)} has no examples"
    validator = fastjsonschema.compile(CATALOGUE[key])
    for example in examples:
        validator(example)
        if key[0] == "events":
            assert (example["type"], example["schema_version"]) == (key[1], key[2])
            validate_event(example)
        else:
            validate_request(key[1], example, key[2])


def test_some_type_has_several_versions():
    # Keeps the compatibility test below from passing vacuously.
    assert _compat_pairs(), "no schema has more than one version"


@pytest.mark.parametrize("old,new", _compat_pairs(), ids=lambda k: _id(k))
def test_newer_schema_reads_older_examples(old, new):
    newer = fastjsonschema.compile(CATALOGUE[new])
    for example in CATALOGUE[old]["examples"]:
        newer(example)


@pytest.mark.parametrize("old,new", _compat_pairs(), ids=lambda k: _id(k))
def test_older_schema_does_not_read_newer_examples(old, new):
    # The versions really differ (a bump with no change would make the test above vacuous),
    # which is why a consumer must pick the schema by the event's own schema_version.
    older = fastjsonschema.compile(CATALOGUE[old])
    for example in CATALOGUE[new]["examples"]:
        with pytest.raises(fastjsonschema.JsonSchemaValueException):
            older(example)


def test_every_event_type_has_its_current_schema():
    events = {name: v for (kind, name, v) in KEYS if kind == "events"}
    assert set(events) == set(EVENT_TYPES), "event schemas and EVENT_TYPES disagree"
    for etype, version in EVENT_TYPES.items():
        assert ("events", etype, version) in CATALOGUE, f"no schema for {etype} v{version}"
        assert latest_version("events", etype) == version, f"{etype}: a newer schema than the producer uses"
        assert all(("events", etype, v) in CATALOGUE for v in range(1, version + 1)), f"{etype}: version gap"


# -- producing -----------------------------------------------------------------------------------
def test_new_event_stamps_the_current_version_and_validates():
    event = _new()
    assert (event.type, event.schema_version, event.topic) == ("payments.initiated", 3, "payments.initiated")
    assert event.event_id.startswith("evt_") and len(event.event_id) == 30
    validate_event(event.to_dict())


@pytest.mark.parametrize("mutate", [
    lambda d: d.update(amount=0),
    lambda d: d.update(amount="1999"),
    lambda d: d.update(currency="eur"),
    lambda d: d.pop("currency"),
    lambda d: d.update(surprise=True),
    lambda d: d["payment_method"]["card"].update(number="4242424242424242"),
], ids=["zero", "string-amount", "lowercase-currency", "missing-currency", "extra-field", "pan"])
def test_new_event_refuses_a_bad_payload(mutate):
    data = _initiated_data()
    mutate(data)
    with pytest.raises(SchemaError):
        _new(data=data)


def test_customer_is_optional_from_v2_but_required_in_v1():
    data = _initiated_data()
    data.pop("customer")
    _new(data=data)  # v2: a payment may come without customer details
    doc = _new().to_dict() | {"schema_version": 1}
    doc["data"] = {k: v for k, v in doc["data"].items() if k not in ("metadata", "customer")}
    with pytest.raises(SchemaError):
        validate_event(doc)


def test_return_url_is_known_from_v3_and_unknown_to_v2():
    doc = _new(data=_initiated_data() | {"return_url": "https://shop.example/back"}).to_dict() | {"schema_version": 2}
    with pytest.raises(SchemaError):
        validate_event(doc)
    doc["data"].pop("return_url")
    validate_event(doc)  # a v2 event (before the field) still reads


def test_new_event_refuses_a_bad_envelope():
    with pytest.raises(SchemaError):
        codec.new_event("payments.validated", tenant_id="", payment_id="pay_01JD0000000000000000000001",
                        correlation_id="c", causation_id=None, at=AT, region="r",
                        data={"amount": 1, "currency": "EUR"})
    with pytest.raises(SchemaError):
        codec.new_event("payments.validated", tenant_id="t", payment_id="not-a-payment-id",
                        correlation_id="c", causation_id=None, at=AT, region="r",
                        data={"amount": 1, "currency": "EUR"})


# -- consuming -----------------------------------------------------------------------------------
def test_decode_round_trips_a_record():
    event = _new()
    record = codec.to_record(event)
    assert (record.topic, record.key) == (event.type, event.payment_id)
    assert dict(record.headers) == {"tenant_id": b"ten_demo", "correlation_id": b"corr-1",
                                    "event_type": b"payments.initiated"}
    assert codec.decode(record.value) == event


def test_decode_reads_an_older_version():
    v1 = copy.deepcopy(CATALOGUE[("events", "payments.initiated", 1)]["examples"][0])
    event = codec.decode(orjson.dumps(v1))
    assert event.schema_version == 1 and event.data == v1["data"]


def _valid_doc() -> dict[str, Any]:
    return _new().to_dict()


def _bad(**changes: Any) -> bytes:
    doc = _valid_doc()
    doc.update(changes)
    return orjson.dumps(doc)


@pytest.mark.parametrize("value", [
    b"", b"{", b"not json", b"\xff\xfe", b'{"a": 1,}',
], ids=["empty", "truncated", "text", "binary", "trailing-comma"])
def test_decode_refuses_bad_json(value):
    with pytest.raises(PermanentError, match="not JSON"):
        codec.decode(value)


@pytest.mark.parametrize("value", [
    b"[]", b"42", b"null", b'"payments.initiated"',
    _bad(data={"amount": 1}),
    _bad(event_id="evt_lowercase"),
    _bad(extra="field"),
    _bad(schema_version="2"),
    _bad(schema_version=True),
    orjson.dumps({k: v for k, v in _valid_doc().items() if k != "region"}),
], ids=["array", "number", "null", "string", "bad-data", "bad-event-id", "extra-field", "string-version",
        "bool-version", "missing-region"])
def test_decode_refuses_schema_invalid_documents(value):
    with pytest.raises(PermanentError, match="schema"):
        codec.decode(value)


def test_decode_refuses_unknown_type():
    with pytest.raises(PermanentError, match="no schema"):
        codec.decode(_bad(type="payments.teleported"))


@pytest.mark.parametrize("version", [0, 4, 99])
def test_decode_refuses_unknown_version(version):
    with pytest.raises(PermanentError, match="no schema"):
        codec.decode(_bad(schema_version=version))


def test_decode_refuses_v2_fields_under_v1():
    # metadata arrived with v2: a document claiming v1 must not carry it.
    with pytest.raises(PermanentError):
        codec.decode(_bad(schema_version=1))


# -- no card number rides in an event ---------------------------------------------------------------
def _subschemas(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _subschemas(value)
    elif isinstance(node, list):
        for value in node:
            yield from _subschemas(value)


SECRET_FIELDS = {"number", "pan", "cvc", "cvv", "iban"}


@pytest.mark.parametrize("key", [k for k in KEYS if k[0] == "events"], ids=_id)
def test_event_schemas_admit_no_secret_fields(key):
    for sub in _subschemas({k: v for k, v in CATALOGUE[key].items() if k != "examples"}):
        props = sub.get("properties")
        if not isinstance(props, dict):
            continue
        assert not SECRET_FIELDS & set(props), f"{_id(key)} declares {SECRET_FIELDS & set(props)}"
        if "token" in props:  # a tokenized instrument: closed, so nothing else can ride along
            assert sub.get("additionalProperties") is False


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("field,value", [("number", "4242424242424242"), ("cvc", "123")])
def test_initiated_event_refuses_a_card_number(version, field, value):
    doc = copy.deepcopy(CATALOGUE[("events", "payments.initiated", version)]["examples"][0])
    validate_event(doc)
    doc["data"]["payment_method"]["card"][field] = value
    with pytest.raises(SchemaError):
        validate_event(doc)


# -- API requests ----------------------------------------------------------------------------------
def _create_body() -> dict[str, Any]:
    return copy.deepcopy(CATALOGUE[("api", "create_payment", 1)]["examples"][0])


def test_create_payment_example_is_accepted():
    validate_request("create_payment", _create_body())


@pytest.mark.parametrize("mutate,field", [
    (lambda b: b.update(amount=0), "amount"),
    (lambda b: b.update(amount=1.5), "amount"),
    (lambda b: b.update(currency="euro"), "currency"),
    (lambda b: b.update(capture="later"), "capture"),
    (lambda b: b["customer"].update(country="Germany"), "customer.country"),
    (lambda b: b.update(metadata={"k": 1}), "metadata.k"),
])
def test_create_payment_names_the_invalid_field(mutate, field):
    body = _create_body()
    mutate(body)
    with pytest.raises(SchemaError) as info:
        validate_request("create_payment", body)
    assert info.value.field == field


@pytest.mark.parametrize("mutate", [
    lambda b: b.update(foo=1),
    lambda b: b["customer"].update(bar=1),
    lambda b: b["payment_method"]["card"].update(pin="1234"),
], ids=["top", "customer", "card"])
def test_create_payment_rejects_unknown_fields(mutate):
    body = _create_body()
    mutate(body)
    with pytest.raises(SchemaError):
        validate_request("create_payment", body)


@pytest.mark.parametrize("mutate,field", [
    (lambda b: b.update(foo=1), "foo"),
    (lambda b: b["customer"].update(bar=1), "customer.bar"),
    (lambda b: b.pop("currency"), "currency"),
], ids=["unknown-top", "unknown-nested", "missing"])
def test_create_payment_error_names_the_offending_field(mutate, field):
    body = _create_body()
    mutate(body)
    with pytest.raises(SchemaError) as info:
        validate_request("create_payment", body)
    assert info.value.field == field


def test_schema_error_message_quotes_the_unknown_field_verbatim():
    body = _create_body()
    body["userdata"] = "x"
    with pytest.raises(SchemaError, match="userdata"):
        validate_request("create_payment", body)


def test_unknown_request_schema_or_version():
    with pytest.raises(SchemaError, match="no schema"):
        validate_request("create_payment", _create_body(), version=9)
    with pytest.raises(SchemaError, match="no schema"):
        validate_request("teleport_payment", {})


@pytest.mark.parametrize("name,body,ok", [
    ("capture_payment", {}, True), ("capture_payment", {"amount": 10}, True),
    ("capture_payment", {"amount": 0}, False), ("capture_payment", {"amount": 10, "x": 1}, False),
    ("create_refund", {"amount": 5, "reason": "dup"}, True), ("create_refund", {"reason": "r" * 501}, False),
    ("cancel_payment", {"reason": "customer asked"}, True), ("cancel_payment", {"reason": 3}, False),
])
def test_other_request_schemas(name, body, ok):
    if ok:
        validate_request(name, body)
    else:
        with pytest.raises(SchemaError):
            validate_request(name, body)


def test_schemas_dir_is_the_repository_schemas():
    assert (ROOT / "events").is_dir() and (ROOT / "api").is_dir()
    assert ROOT.resolve() == (Path(__file__).resolve().parents[2] / "schemas").resolve()
