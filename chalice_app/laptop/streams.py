"""aws-local: the DynamoDB stream's two Lambda event source mappings, played with GetRecords.

StreamRelay feeds the outbox relay, StreamReporter the reports consumer; in AWS, Lambda's
mappings on the table's stream do this (app.py: outbox_relay, reports).
"""
from __future__ import annotations

import time
from typing import Any

from chalicelib.handlers.relay import relay_stream_records
from chalicelib.ports import Platform
from chalicelib.services.reporting import report_stream_records


class StreamRelay:
    """aws-local: the outbox_relay Lambda's event source mapping, reading the stream with GetRecords.

    Checkpoints the last relayed sequence number per shard in a control record,
    written only after the batch was published, so a crash re-reads (duplicates)
    rather than skips. Shards are read parent first, as Lambda does.
    """

    def __init__(self, streams: Any, stream_arn: str, platform: Platform, batch: int = 500):
        self.streams, self.arn, self.platform, self.batch = streams, stream_arn, platform, batch
        self.store = platform.store
        self._iterators: dict[str, str | None] = {}  # shard -> next iterator (None: shard closed and done)
        self._described: tuple[float, list[dict[str, Any]]] | None = None

    DESCRIBE_EVERY_S = 10.0
    CHECKPOINT = "stream-relay"  # each reader of the stream keeps its own checkpoints

    def _checkpoint_name(self, shard_id: str) -> str:
        return f"{self.CHECKPOINT}:{self.arn.rsplit('/', 1)[-1]}:{shard_id}"

    def handle(self, records: list[dict[str, Any]]) -> int:
        return relay_stream_records(records, self.store.feed, self.store.outbox, self.platform.bus)

    def _iterator(self, shard_id: str) -> str | None:
        if shard_id in self._iterators:
            return self._iterators[shard_id]
        done = self.store.controls.get_control(self._checkpoint_name(shard_id))
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
                self.store.controls.put_control(self._checkpoint_name(sid),
                                       {"sequence_number": records[-1]["dynamodb"]["SequenceNumber"]})
            self._iterators[sid] = out.get("NextShardIterator")
        return published


class StreamReporter(StreamRelay):
    """aws-local: the `reports` Lambda's mapping on the same stream, with its own checkpoints."""

    CHECKPOINT = "stream-reports"

    def handle(self, records: list[dict[str, Any]]) -> int:
        report_stream_records(records, self.store)
        return len(records)
