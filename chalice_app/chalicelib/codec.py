"""Events on the wire: envelope <-> Kafka-style record, validated both ways.

Producers validate before publishing; consumers validate on receipt. The
Kafka key is the payment id; tenant, correlation id and event type also
travel as headers so they can be read without parsing the value, and the
X-Ray trace header (X-Amzn-Trace-Id) links the consumer's span to the producer's.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Any

import orjson

from . import ids
from .clock import iso
from .domain.events import EVENT_TYPES, Event
from .domain.payment import Payment
from .errors import PermanentError
from .observability import tracing
from .ports import OutRecord
from .schemas import SchemaError, validate_event


def new_event(etype: str, *, tenant_id: str, payment_id: str, correlation_id: str,
              causation_id: str | None, at: Any, region: str, data: dict[str, Any]) -> Event:
    """An event of the current schema version for its type, validated now."""
    event = Event(ids.event_id(), etype, EVENT_TYPES[etype], tenant_id, payment_id, correlation_id,
                  causation_id, at if isinstance(at, str) else iso(at), region, data, tracing.current_header())
    validate_event(event.to_dict())
    return event


def to_record(event: Event) -> OutRecord:
    value = orjson.dumps(event.to_dict())
    return OutRecord(event.topic, event.payment_id, value, (
        ("tenant_id", event.tenant_id.encode()),
        ("correlation_id", event.correlation_id.encode()),
        ("event_type", event.type.encode()),
        *(((tracing.HEADER, event.trace.encode()),) if event.trace else ()),
    ))


def decode(value: bytes) -> Event:
    """Parse and validate one record value; PermanentError if it can never be processed."""
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as e:
        raise PermanentError(f"record is not JSON: {e}") from None
    try:
        validate_event(doc)
    except SchemaError as e:
        raise PermanentError(f"schema: {e}") from None
    return Event.from_dict(doc)


_PERSISTED = tuple(f.name for f in fields(Payment) if f.name != "pending_timeline")


def payment_json(p: Payment, version: int | None = None) -> bytes:
    """orjson.dumps(p.to_dict() | {"version": version}): the same bytes, without asdict's deep
    copy (orjson writes the attempt/refund dataclasses and the state enum itself). Every store
    write serializes the payment, so this is on every stage's path."""
    d = {name: getattr(p, name) for name in _PERSISTED}
    if version is not None:
        d["version"] = version
    return orjson.dumps(d)
