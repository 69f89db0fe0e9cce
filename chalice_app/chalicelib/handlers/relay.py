"""The outbox relay: committed events -> the bus, at least once.

An event is deleted from the outbox only after the bus has it, so a crash
between the two re-publishes it (consumers dedupe by event id).
"""
from __future__ import annotations

from typing import Any, Callable

from .. import codec
from ..ports import ChangeFeed, EventBus, Outbox


def relay_once(outbox: Outbox, bus: EventBus, limit: int = 500, published: Callable[[set[str]], None] | None = None,
               origin: str | None = None) -> int:
    """Publish up to `limit` outbox events, oldest first; `published` hears which topics got records.

    `origin`: another region's events instead of this region's (a takeover, services/takeover.py)."""
    pending = outbox.pending_outbox(limit, origin=origin)
    if not pending:
        return 0
    records = [codec.to_record(r.event) for r in pending]
    bus.publish(records)
    outbox.mark_published([r.id for r in pending], origin=origin)
    if published is not None:
        published({r.topic for r in records})
    return len(pending)


# -- the DynamoDB stream path (aws-local and aws) ----------------------------------------------
def relay_stream_records(records: list[dict[str, Any]], feed: ChangeFeed, outbox: Outbox, bus: EventBus) -> int:
    """Publish the outbox items among DynamoDB stream records, then mark them published.

    `records` are stream records as Lambda delivers them (event["Records"]) or as
    GetRecords returns them: the same {"eventName", "dynamodb": {"NewImage"}} shape.
    Anything but a new outbox item is ignored. If publishing fails this raises, so
    Lambda (or the local poller) retries the batch: duplicates, never a loss.
    """
    found = feed.outbox_in(records)
    if not found:
        return 0
    bus.publish([codec.to_record(r.event) for r in found])
    outbox.mark_published([r.id for r in found])
    return len(found)
