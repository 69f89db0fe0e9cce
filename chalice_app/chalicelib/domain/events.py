"""The event envelope (DESIGN.md §4) and the catalogue of event types.

Event type == the Kafka topic it is published on, so a stage's input is
named by the event that feeds it. Each type has a JSON Schema per version
under schemas/events/<type>.v<N>.json.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

# type -> current schema version
EVENT_TYPES: dict[str, int] = {
    "payments.initiated": 3,
    "payments.validated": 1,
    "payments.screened": 1,
    "payments.routed": 1,
    "payments.authorized": 1,
    "payments.requires_action": 1,
    "payments.capture_requested": 1,
    "payments.cancel_requested": 1,
    "payments.refund_requested": 1,
    "payments.captured": 1,
    "payments.refunded": 1,
    "payments.settled": 1,
    "payments.cancelled": 1,
    "payments.failed": 1,
}

DLQ_SUFFIX = ".dlq"


def dlq_topic(topic: str) -> str:
    return topic + DLQ_SUFFIX


@dataclass(frozen=True)
class Event:
    event_id: str
    type: str
    schema_version: int
    tenant_id: str
    payment_id: str
    correlation_id: str
    causation_id: str | None
    occurred_at: str
    region: str
    data: dict[str, Any] = field(default_factory=dict)
    # Transport metadata, not part of the envelope: the X-Ray header of the span that made the
    # event. The outbox keeps it (stored()) and the relay puts it in the record's headers.
    trace: str | None = field(default=None, compare=False)

    @property
    def topic(self) -> str:
        return self.type

    def to_dict(self) -> dict[str, Any]:
        """The envelope, as published and validated. Shallow: `data` is the event's own dict
        (events are values; every caller serializes or validates, none changes it)."""
        return {name: getattr(self, name) for name in _ENVELOPE}

    def stored(self) -> dict[str, Any]:
        """The envelope plus transport metadata, as the outbox keeps it."""
        d = self.to_dict()
        if self.trace:
            d["trace"] = self.trace
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__})


_ENVELOPE = tuple(f.name for f in fields(Event) if f.name != "trace")
