"""ChangeFeed on DynamoDB Streams: the table's stream, pushed to Lambda (or read by laptop/streams.py).

Only new outbox items this region wrote count: the stream carries every write of the table,
the other regions' replicated writes included."""
from __future__ import annotations

from typing import Any, Sequence

from ...ports import OutboxRecord
from .dynamodb import is_outbox_item, outbox_record


class DynamoChangeFeed:
    def __init__(self, region: str):
        self.region = region

    def outbox_in(self, records: Sequence[dict[str, Any]]) -> list[OutboxRecord]:
        """The outbox items this region INSERTed among stream records (Lambda's event["Records"] or
        GetRecords). A global table's stream also carries the items other regions wrote, replicated:
        those are theirs to publish and count, never ours."""
        return [outbox_record(r["dynamodb"]["NewImage"]) for r in records
                if r.get("eventName") == "INSERT"
                and is_outbox_item((r.get("dynamodb") or {}).get("NewImage"), self.region)]

    def read(self, reader: str, limit: int) -> list[OutboxRecord]:
        """The stream pushes: there is nothing to pull."""
        return []

    def advance(self, reader: str, position: int) -> None:
        """Lambda's event source mapping keeps the stream position."""

    def register(self, reader: str) -> None:
        """The stream keeps 24 hours of changes for every reader."""
