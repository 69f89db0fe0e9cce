"""The outbox relay: committed events -> the bus, at least once.

An event is deleted from the outbox only after the bus has it, so a crash
between the two re-publishes it (consumers dedupe by event id).
"""
from __future__ import annotations

from typing import Any

from .. import codec


def relay_once(store: Any, bus: Any, limit: int = 500) -> int:
    pending = store.pending_outbox(limit)
    if not pending:
        return 0
    bus.publish([codec.to_record(r.event) for r in pending])
    store.mark_published([r.id for r in pending])
    return len(pending)
