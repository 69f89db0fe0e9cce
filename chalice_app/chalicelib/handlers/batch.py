"""The body of every stage Lambda: decode an MSK batch, run the stage, report failures.

Per record: a PermanentError (bad JSON, schema-invalid, unknown version,
missing payment) goes straight to <topic>.dlq and the batch moves on, so a
poison record never blocks its partition. Anything else is reported as a
batch item failure; later records of the same partition are not attempted,
keeping per-payment order. The event source retries with backoff and
dead-letters after MAX_ATTEMPTS.

In a stage that calls out (CALLS_OUT: PSPs, webhooks) partitions are worked on
concurrently (records of one partition stay in order): one slow PSP answer holds
up its own partition, not the whole batch. The other stages take the partitions
in turn. Either way the whole batch's commits are written in one transaction.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

from opentelemetry.trace import SpanKind

from .. import codec
from ..clock import iso
from ..domain.events import Event
from ..errors import PermanentError
from ..observability import context, metrics, tracing
from ..ports import Platform
from ..services.ownership import NotOwner
from ..stages.context import Stage, StageContext
from . import dlq
from .batch_commit import BatchCommit
from .msk import MskRecord, iter_records

log = logging.getLogger("payments.handler")


MAX_PARALLEL_PARTITIONS = 8
_pools: dict[str, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def partition_pool(stage_name: str) -> Executor:
    """The stage's pool, made on first use and kept: its threads (and their SQLite
    connections) live across batches instead of being built for every batch, and
    a slow PSP in one stage cannot take the threads of another."""
    with _pools_lock:
        pool = _pools.get(stage_name)
        if pool is None:
            pool = _pools[stage_name] = ThreadPoolExecutor(MAX_PARALLEL_PARTITIONS,
                                                           thread_name_prefix=f"{stage_name}-partition")
        return pool


def handle_batch(event: dict[str, Any], stage: Stage, platform: Platform) -> dict[str, Any]:
    partitions: dict[tuple[str, int], list[MskRecord]] = {}
    for record in iter_records(event):
        partitions.setdefault((record.topic, record.partition), []).append(record)
    groups = list(partitions.values())
    concurrent = len(groups) > 1 and getattr(stage, "CALLS_OUT", False)
    failures, dead = _handle_partitions(groups, stage, platform, concurrent)
    if dead:
        platform.bus.publish([dlq.to_record(d) for d in dead])
    metrics.METRICS.flush()
    return {"batchItemFailures": failures}


def _header(record: MskRecord, name: str) -> str | None:
    value = record.headers.get(name)
    return value.decode(errors="replace") if value is not None else None


def _handle_partitions(groups: list[list[MskRecord]], stage: Stage, platform: Platform, concurrent: bool = False
                       ) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """Records of each partition, in order; a partition stops at its first retryable failure.

    `concurrent` (a stage that calls out): the partitions are worked on at once, on the
    stage's pool, each in a context of its own; otherwise one after the other. Either
    way the commits of all the groups are written in one transaction at the end
    (BatchCommit), before the event source may move the offsets. A record
    whose commit failed is retried with every later record of its partition; those
    that did commit are dropped as duplicates when they come back (the processed
    marker was written with them)."""
    batch = BatchCommit(stage.NAME, platform.store)
    ctx = StageContext(stage.NAME, platform, batch=batch)
    prepare = getattr(stage, "prepare", None)
    if prepare is not None:  # e.g. authorization: write every new attempt before any PSP call
        for record in (r for records in groups for r in records):
            ctx.item, prepared = record.item_id, True
            with context.bound(stage=stage.NAME, tenant_id=_header(record, "tenant_id"),
                               payment_id=record.key or None, correlation_id=_header(record, "correlation_id"),
                               _received_at=iso(platform.clock.now())), \
                    tracing.span(f"{stage.NAME}.prepare", parent=record.headers.get(tracing.HEADER), keep=True,
                                 **{"payments.stage": stage.NAME, "payments.payment_id": record.key or None}) as span:
                try:
                    prepare(_decode(record, stage), ctx)
                except Exception:  # noqa: BLE001 - the record's own turn below meets it again and reports it
                    prepared = False
            if prepared:  # the span ends once the attempt is written
                batch.end_after_commit(record.item_id, span)
            else:
                span.end()
        ctx.item = None
        batch.flush()
        batch.failed.clear()  # a unit that did not commit is redone by handle(), from the store
    failures: dict[str, dict[str, str]] = {}
    dead: dict[str, dict[str, Any]] = {}
    if concurrent:
        def work(records: list[MskRecord]) -> tuple[BatchCommit, dict[str, Any], dict[str, Any]]:
            own = BatchCommit(stage.NAME, platform.store)
            f: dict[str, dict[str, str]] = {}
            d: dict[str, dict[str, Any]] = {}
            _handle_records(records, stage, platform, StageContext(stage.NAME, platform, batch=own,
                                                                   prepared=set(ctx.prepared)), f, d)
            return own, f, d
        for own, f, d in partition_pool(stage.NAME).map(work, groups):
            batch.adopt(own)
            failures.update(f)
            dead.update(d)
    else:
        for records in groups:
            _handle_records(records, stage, platform, ctx, failures, dead)
    ctx.item = None
    batch.flush()
    out: list[dict[str, str]] = []
    for records in groups:
        for record in records:
            error = batch.failed.get(record.item_id)
            if error is not None and record.item_id not in failures:
                _failed(failures, record, error)
        first = next((i for i, r in enumerate(records) if r.item_id in failures), None)
        if first is None:
            continue
        for record in records[first:]:
            dead.pop(record.item_id, None)  # it comes back, and is dead-lettered then if it still must be
            out.append(failures.get(record.item_id)
                       or {"itemIdentifier": record.item_id, "reason": "earlier record of partition failed"})
    return out, list(dead.values())


def _handle_records(records: list[MskRecord], stage: Stage, platform: Platform, ctx: StageContext,
                    failures: dict[str, dict[str, str]], dead: dict[str, dict[str, Any]]) -> None:
    """One partition's records, in order, into `ctx`; stops at the first retryable failure."""
    for record in records:
        ctx.item = record.item_id
        started, outcome = time.monotonic(), "ok"
        # The record's X-Ray header continues the payment's trace; its headers name the scope
        # before the value is even parsed, so a poison record's log lines are attributable too.
        with context.bound(stage=stage.NAME, tenant_id=_header(record, "tenant_id"), payment_id=record.key or None,
                           correlation_id=_header(record, "correlation_id"), _received_at=iso(platform.clock.now())), \
                tracing.span(f"stage {stage.NAME}", parent=record.headers.get(tracing.HEADER), kind=SpanKind.CONSUMER,
                             keep=True, **{"messaging.system": "kafka", "messaging.destination.name": record.topic,
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
            except NotOwner as e:
                # Another region holds the lease of the payment's home: it drives the payment, and
                # whoever takes that lease next scans every payment of the home (services/takeover.py).
                outcome = "not_owner"
                log.info("record left to the home region's lease holder", extra={"item": record.item_id,
                                                                                  "why": str(e)})
            except PermanentError as e:
                outcome = "dead"
                tracing.mark_error(span, f"dead-lettered: {e}")
                log.warning("record dead-lettered", extra={"item": record.item_id, "error": str(e)})
                dead[record.item_id] = dlq.entry(record, stage.NAME, f"permanent: {e}", 1, platform.clock.now())
            except Exception as e:  # noqa: BLE001 - anything unexpected is retried, then dead-lettered
                outcome = "retry"
                tracing.mark_error(span, f"{type(e).__name__}: {e}")
                _failed(failures, record, e)
            elapsed_ms = (time.monotonic() - started) * 1000
            span.set_attribute("payments.outcome", outcome)
            wait_ms = time.time() * 1000 - record.timestamp_ms if record.timestamp_ms else None
            metrics.stage_record(stage.NAME, outcome, elapsed_ms, wait_ms)
            log.info("record handled", extra={"outcome": outcome, "topic": record.topic, "offset": record.offset,
                                              "processing_ms": round(elapsed_ms, 3)})
        # Open until the batch commit writes what the record gathered, so the span ends when its
        # effects are durable; a dead-lettered or retried record's span ends now.
        if outcome == "ok":
            ctx.batch.end_after_commit(record.item_id, span)
        else:
            span.end()
        if outcome == "retry":  # the rest of the partition waits: per-payment order
            break


def _decode(record: MskRecord, stage: Stage) -> Event:
    evt = codec.decode(record.value)
    header_tenant = record.headers.get("tenant_id")
    if header_tenant is not None and header_tenant.decode(errors="replace") != evt.tenant_id:
        raise PermanentError("tenant header does not match the event's tenant")
    if evt.type not in stage.CONSUMES:
        raise PermanentError(f"stage {stage.NAME} does not consume {evt.type}")
    return evt


def _failed(failures: dict[str, dict[str, str]], record: MskRecord, e: Exception) -> None:
    log.warning("record failed", extra={"item": record.item_id, "error": f"{type(e).__name__}: {e}"})
    failures[record.item_id] = {"itemIdentifier": record.item_id, "reason": f"{type(e).__name__}: {e}"[:2000]}
