"""The body of every stage Lambda: decode an MSK batch, run the stage, report failures.

Per record: a PermanentError (bad JSON, schema-invalid, unknown version,
missing payment) goes straight to <topic>.dlq and the batch moves on, so a
poison record never blocks its partition. Anything else is reported as a
batch item failure; later records of the same partition are not attempted,
keeping per-payment order. The event source retries with backoff and
dead-letters after MAX_ATTEMPTS.

Partitions are independent, so they are worked on concurrently (records of
one partition stay in order): one slow PSP answer holds up its own
partition, not the whole batch.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .. import codec
from ..errors import PermanentError
from ..stages.base import StageContext
from . import dlq
from .msk import MskRecord, iter_records

log = logging.getLogger("payments.handler")


MAX_PARALLEL_PARTITIONS = 8


def handle_batch(event: dict[str, Any], stage: Any, platform: Any) -> dict[str, Any]:
    ctx = StageContext(stage.NAME, platform)
    partitions: dict[tuple[str, int], list[MskRecord]] = {}
    for record in iter_records(event):
        partitions.setdefault((record.topic, record.partition), []).append(record)
    failures: list[dict[str, str]] = []
    dead: list[dict[str, Any]] = []
    groups = list(partitions.values())
    if len(groups) == 1:
        results = [_handle_partition(groups[0], stage, ctx)]
    else:
        with ThreadPoolExecutor(min(len(groups), MAX_PARALLEL_PARTITIONS)) as pool:
            results = list(pool.map(lambda g: _handle_partition(g, stage, ctx), groups))
    for f, d in results:
        failures.extend(f)
        dead.extend(d)
    if dead:
        platform.bus.publish([dlq.to_record(d) for d in dead])
    return {"batchItemFailures": failures}


def _handle_partition(records: list[MskRecord], stage: Any, ctx: StageContext
                      ) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """Records of one partition, in order; stops at the first retryable failure."""
    platform = ctx.platform
    failures: list[dict[str, str]] = []
    dead: list[dict[str, Any]] = []
    blocked = False
    for record in records:
        if blocked:
            failures.append({"itemIdentifier": record.item_id, "reason": "earlier record of partition failed"})
            continue
        try:
            evt = codec.decode(record.value)
            header_tenant = record.headers.get("tenant_id")
            if header_tenant is not None and header_tenant.decode(errors="replace") != evt.tenant_id:
                raise PermanentError("tenant header does not match the event's tenant")
            if evt.type not in stage.CONSUMES:
                raise PermanentError(f"stage {stage.NAME} does not consume {evt.type}")
            stage.handle(evt, ctx)
        except PermanentError as e:
            log.warning("record dead-lettered", extra={"stage": stage.NAME, "item": record.item_id, "error": str(e)})
            dead.append(dlq.entry(record, stage.NAME, f"permanent: {e}", 1, platform.clock.now()))
        except Exception as e:  # noqa: BLE001 - anything unexpected is retried, then dead-lettered
            log.warning("record failed", extra={"stage": stage.NAME, "item": record.item_id,
                                                "error": f"{type(e).__name__}: {e}"})
            failures.append({"itemIdentifier": record.item_id, "reason": f"{type(e).__name__}: {e}"[:2000]})
            blocked = True
    return failures, dead
