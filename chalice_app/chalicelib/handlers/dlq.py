"""Dead-letter entries: the original record, the error, the stage and the attempt count."""
from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import orjson

from .. import ids
from ..clock import iso
from ..domain.events import dlq_topic
from ..ports import OutRecord
from .msk import MskRecord


def entry(record: MskRecord, stage: str, error: str, attempts: int, at: datetime) -> dict[str, Any]:
    """A DLQ entry that names the payment, so nothing is ever silently lost (I2)."""
    return {
        "entry_id": ids.new_id("dlq"),
        "stage": stage,
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": record.key,
        "tenant_id": record.headers.get("tenant_id", b"").decode(errors="replace"),
        "correlation_id": record.headers.get("correlation_id", b"").decode(errors="replace"),
        "error": error[:2000],
        "attempts": attempts,
        "failed_at": at if isinstance(at, str) else iso(at),
        "headers": {k: base64.b64encode(v).decode() for k, v in record.headers.items()},
        "value": base64.b64encode(record.value).decode(),
    }


def to_record(e: dict[str, Any]) -> OutRecord:
    return OutRecord(dlq_topic(e["topic"]), e["key"] or e["entry_id"], orjson.dumps(e),
                     (("tenant_id", e["tenant_id"].encode()), ("stage", e["stage"].encode())))


def original(e: dict[str, Any]) -> OutRecord:
    """The record as it was first published, ready to re-inject."""
    headers = tuple((k, base64.b64decode(v)) for k, v in e["headers"].items())
    return OutRecord(e["topic"], e["key"], base64.b64decode(e["value"]), headers)
