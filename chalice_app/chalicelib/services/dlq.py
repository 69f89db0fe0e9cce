"""Operating the DLQs: list entries, re-inject them into their original topics."""
from __future__ import annotations

from typing import Any

import orjson

from ..clock import iso
from ..domain.events import DLQ_SUFFIX
from ..handlers import dlq
from ..ports import Platform


def list_entries(platform: Platform, stage: str | None = None, include_redriven: bool = False) -> list[dict[str, Any]]:
    done = platform.store.tenants.redriven_ids()
    entries = []
    for topic in platform.bus.topics():
        if not topic.endswith(DLQ_SUFFIX):
            continue
        for record in platform.bus.read_all(topic):
            try:
                e = orjson.loads(record.value)
            except orjson.JSONDecodeError:
                continue
            e["redriven"] = e.get("entry_id") in done
            if (stage and e.get("stage") != stage) or (e["redriven"] and not include_redriven):
                continue
            entries.append(e)
    return sorted(entries, key=lambda e: e["failed_at"])


def redrive(platform: Platform, stage: str | None = None, entry_id: str | None = None) -> dict[str, Any]:
    """Publish each waiting entry's original record again, then mark it redriven.

    Publishing first means a crash in between re-drives the entry twice,
    which the stages' event-id dedupe absorbs; the other order could lose it."""
    entries = [e for e in list_entries(platform, stage) if entry_id in (None, e["entry_id"])]
    if entries:
        platform.bus.publish([dlq.original(e) for e in entries])
        platform.store.tenants.mark_redriven([e["entry_id"] for e in entries], iso(platform.clock.now()))
    return {"redriven": len(entries), "entries": [e["entry_id"] for e in entries],
            "payments": sorted({e["key"] for e in entries})}
