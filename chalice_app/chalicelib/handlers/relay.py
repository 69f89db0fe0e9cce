"""The outbox relay: committed events -> the bus, at least once.

An event is deleted from the outbox only after the bus has it, so a crash
between the two re-publishes it (consumers dedupe by event id).
"""
from __future__ import annotations

import time
from typing import Any, Callable

from .. import codec


def relay_once(store: Any, bus: Any, limit: int = 500, published: Callable[[set[str]], None] | None = None) -> int:
    """Publish up to `limit` outbox events, oldest first; `published` hears which topics got records."""
    pending = store.pending_outbox(limit)
    if not pending:
        return 0
    records = [codec.to_record(r.event) for r in pending]
    bus.publish(records)
    store.mark_published([r.id for r in pending])
    if published is not None:
        published({r.topic for r in records})
    return len(pending)


# -- the DynamoDB stream path (aws-local and aws) ----------------------------------------------
def relay_stream_records(records: list[dict[str, Any]], store: Any, bus: Any) -> int:
    """Publish the outbox items among DynamoDB stream records, then mark them published.

    `records` are stream records as Lambda delivers them (event["Records"]) or as
    GetRecords returns them: the same {"eventName", "dynamodb": {"NewImage"}} shape.
    Anything but a new outbox item is ignored. If publishing fails this raises, so
    Lambda (or the local poller) retries the batch: duplicates, never a loss.
    """
    from ..adapters.aws.dynamodb import is_outbox_item, outbox_record  # noqa: PLC0415 - aws modes only
    found = [outbox_record(r["dynamodb"]["NewImage"]) for r in records
             if r.get("eventName") == "INSERT" and is_outbox_item((r.get("dynamodb") or {}).get("NewImage"))]
    if not found:
        return 0
    bus.publish([codec.to_record(r.event) for r in found])
    store.mark_published([r.id for r in found])
    return len(found)


class StreamRelay:
    """aws-local: the outbox_relay Lambda's event source mapping, reading the stream with GetRecords.

    Checkpoints the last relayed sequence number per shard in a control record,
    written only after the batch was published, so a crash re-reads (duplicates)
    rather than skips. Shards are read parent first, as Lambda does.
    """

    def __init__(self, streams: Any, stream_arn: str, store: Any, bus: Any, batch: int = 500):
        self.streams, self.arn, self.store, self.bus, self.batch = streams, stream_arn, store, bus, batch
        self._iterators: dict[str, str | None] = {}  # shard -> next iterator (None: shard closed and done)
        self._described: tuple[float, list[dict[str, Any]]] | None = None

    DESCRIBE_EVERY_S = 10.0
    CHECKPOINT = "stream-relay"  # each reader of the stream keeps its own checkpoints

    def _checkpoint_name(self, shard_id: str) -> str:
        return f"{self.CHECKPOINT}:{self.arn.rsplit('/', 1)[-1]}:{shard_id}"

    def handle(self, records: list[dict[str, Any]]) -> int:
        return relay_stream_records(records, self.store, self.bus)

    def _iterator(self, shard_id: str) -> str | None:
        if shard_id in self._iterators:
            return self._iterators[shard_id]
        done = self.store.get_control(self._checkpoint_name(shard_id))
        kw: dict[str, Any] = {"StreamArn": self.arn, "ShardId": shard_id}
        if done:
            kw.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=done["sequence_number"])
        else:
            kw["ShardIteratorType"] = "TRIM_HORIZON"
        it = self.streams.get_shard_iterator(**kw)["ShardIterator"]
        self._iterators[shard_id] = it
        return it

    def step(self) -> int:
        """Relay what the stream holds now; returns the number of outbox records published."""
        try:
            return self._step()
        except Exception:
            self._iterators.clear()  # restart from the durable checkpoint (iterators also expire)
            self._described = None
            raise

    def _shards(self) -> list[dict[str, Any]]:
        # Shards change rarely (every few hours in AWS): describe the stream now and then, not per poll.
        if not self._described or time.monotonic() - self._described[0] > self.DESCRIBE_EVERY_S:
            shards = self.streams.describe_stream(StreamArn=self.arn)["StreamDescription"]["Shards"]
            self._described = (time.monotonic(), shards)
        return self._described[1]

    def _step(self) -> int:
        shards = self._shards()
        published = 0
        for shard in shards:  # DescribeStream lists parents before children
            sid = shard["ShardId"]
            it = self._iterator(sid)
            if it is None:
                continue
            out = self.streams.get_records(ShardIterator=it, Limit=self.batch)
            records = out.get("Records", [])
            if records:
                published += self.handle(records)
                self.store.put_control(self._checkpoint_name(sid),
                                       {"sequence_number": records[-1]["dynamodb"]["SequenceNumber"]})
            self._iterators[sid] = out.get("NextShardIterator")
        return published


class StreamReporter(StreamRelay):
    """aws-local: the `reports` Lambda's mapping on the same stream, with its own checkpoints."""

    CHECKPOINT = "stream-reports"

    def __init__(self, streams: Any, stream_arn: str, store: Any, batch: int = 500):
        super().__init__(streams, stream_arn, store, None, batch)

    def handle(self, records: list[dict[str, Any]]) -> int:
        from ..services.reporting import report_stream_records  # noqa: PLC0415 - keeps relay.py free of reporting
        report_stream_records(records, self.store)
        return len(records)
