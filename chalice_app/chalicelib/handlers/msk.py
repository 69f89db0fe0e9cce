"""The event shape Lambda's MSK event source mapping delivers, both ways.

Records are grouped by "topic-partition"; key and value are base64; headers
are a list of {name: [byte, ...]}. The local runner builds exactly this shape
so stage handlers cannot tell a laptop from AWS.

Partial batch failure: a handler answers {"batchItemFailures": [{"itemIdentifier":
"<topic>-<partition>@<offset>"}]}; the runner redelivers from the lowest
failed offset of each partition.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from ..ports import BusRecord


@dataclass(frozen=True)
class MskRecord:
    topic: str
    partition: int
    offset: int
    key: str
    value: bytes
    headers: dict[str, bytes]
    timestamp_ms: int

    @property
    def item_id(self) -> str:
        return item_identifier(self.topic, self.partition, self.offset)


def item_identifier(topic: str, partition: int, offset: int) -> str:
    return f"{topic}-{partition}@{offset}"


def parse_item_identifier(item: str) -> tuple[str, int, int]:
    tp, offset = item.rsplit("@", 1)
    topic, partition = tp.rsplit("-", 1)
    return topic, int(partition), int(offset)


def build_event(records: Sequence[BusRecord], source_arn: str = "arn:aws:kafka:local:000000000000:cluster/local",
                bootstrap: str = "embedded") -> dict[str, Any]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        grouped.setdefault(f"{r.topic}-{r.partition}", []).append({
            "topic": r.topic,
            "partition": r.partition,
            "offset": r.offset,
            "timestamp": r.timestamp_ms,
            "timestampType": "CREATE_TIME",
            "key": base64.b64encode(r.key.encode()).decode(),
            "value": base64.b64encode(r.value).decode(),
            "headers": [{k: list(v)} for k, v in r.headers],
        })
    return {"eventSource": "aws:kafka", "eventSourceArn": source_arn,
            "bootstrapServers": bootstrap, "records": grouped}


def iter_records(event: dict[str, Any]) -> Iterable[MskRecord]:
    """Decode an MSK event into records, in offset order per partition."""
    for batch in (event.get("records") or {}).values():
        for r in sorted(batch, key=lambda x: x["offset"]):
            headers: dict[str, bytes] = {}
            for h in r.get("headers") or []:
                for k, v in h.items():
                    headers[k] = bytes(v)
            key = base64.b64decode(r["key"]).decode() if r.get("key") else ""
            value = base64.b64decode(r["value"]) if r.get("value") else b""
            yield MskRecord(r["topic"], int(r["partition"]), int(r["offset"]), key, value, headers,
                            int(r.get("timestamp") or 0))
