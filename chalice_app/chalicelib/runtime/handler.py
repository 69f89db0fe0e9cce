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
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from opentelemetry.trace import SpanKind

from .. import codec
from ..clock import iso
from ..errors import PermanentError
from ..stages.base import StageContext
from ..telemetry import context, metrics, tracing
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
    metrics.METRICS.flush()
    return {"batchItemFailures": failures}


def _header(record: MskRecord, name: str) -> str | None:
    value = record.headers.get(name)
    return value.decode(errors="replace") if value is not None else None


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
        started, outcome = time.monotonic(), "ok"
        # The record's X-Ray header continues the payment's trace; its headers name the scope
        # before the value is even parsed, so a poison record's log lines are attributable too.
        with context.bound(stage=stage.NAME, tenant_id=_header(record, "tenant_id"), payment_id=record.key or None,
                           correlation_id=_header(record, "correlation_id"), _received_at=iso(platform.clock.now())), \
                tracing.span(f"stage {stage.NAME}", parent=record.headers.get(tracing.HEADER), kind=SpanKind.CONSUMER,
                             **{"messaging.system": "kafka", "messaging.destination.name": record.topic,
                                "messaging.kafka.partition": record.partition, "messaging.kafka.offset": record.offset,
                                "payments.stage": stage.NAME, "payments.tenant_id": _header(record, "tenant_id"),
                                "payments.payment_id": record.key or None,
                                "payments.correlation_id": _header(record, "correlation_id")}) as span:
            try:
                evt = codec.decode(record.value)
                context.bind(event_id=evt.event_id, tenant_id=evt.tenant_id, payment_id=evt.payment_id,
                             correlation_id=evt.correlation_id)
                span.set_attribute("payments.event_type", evt.type)
                header_tenant = record.headers.get("tenant_id")
                if header_tenant is not None and header_tenant.decode(errors="replace") != evt.tenant_id:
                    raise PermanentError("tenant header does not match the event's tenant")
                if evt.type not in stage.CONSUMES:
                    raise PermanentError(f"stage {stage.NAME} does not consume {evt.type}")
                stage.handle(evt, ctx)
            except PermanentError as e:
                outcome = "dead"
                tracing.mark_error(span, f"dead-lettered: {e}")
                log.warning("record dead-lettered", extra={"item": record.item_id, "error": str(e)})
                dead.append(dlq.entry(record, stage.NAME, f"permanent: {e}", 1, platform.clock.now()))
            except Exception as e:  # noqa: BLE001 - anything unexpected is retried, then dead-lettered
                outcome = "retry"
                tracing.mark_error(span, f"{type(e).__name__}: {e}")
                log.warning("record failed", extra={"item": record.item_id, "error": f"{type(e).__name__}: {e}"})
                failures.append({"itemIdentifier": record.item_id, "reason": f"{type(e).__name__}: {e}"[:2000]})
                blocked = True
            elapsed_ms = (time.monotonic() - started) * 1000
            span.set_attribute("payments.outcome", outcome)
            wait_ms = time.time() * 1000 - record.timestamp_ms if record.timestamp_ms else None
            metrics.stage_record(stage.NAME, outcome, elapsed_ms, wait_ms)
            log.info("record handled", extra={"outcome": outcome, "topic": record.topic, "offset": record.offset,
                                              "processing_ms": round(elapsed_ms, 3)})
    return failures, dead
