"""ChangeFeed on DynamoDB Streams: the table's stream, pushed to Lambda (or read by laptop/streams.py).

Only new outbox items count: the stream carries every write of the table."""
from __future__ import annotations

from typing import Any, Sequence

from ...ports import OutboxRecord
from .dynamodb import is_outbox_item, outbox_record


class DynamoChangeFeed:
    def outbox_in(self, records: Sequence[dict[str, Any]]) -> list[OutboxRecord]:
        """The outbox items INSERTed among stream records (Lambda's event["Records"] or GetRecords)."""
        return [outbox_record(r["dynamodb"]["NewImage"]) for r in records
                if r.get("eventName") == "INSERT" and is_outbox_item((r.get("dynamodb") or {}).get("NewImage"))]

    def read(self, reader: str, limit: int) -> list[OutboxRecord]:
        """The stream pushes: there is nothing to pull."""
        return []

    def advance(self, reader: str, position: int) -> None:
        """Lambda's event source mapping keeps the stream position."""

    def register(self, reader: str) -> None:
        """The stream keeps 24 hours of changes for every reader."""
