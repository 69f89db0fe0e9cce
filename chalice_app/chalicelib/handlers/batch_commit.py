"""One transaction per MSK batch: the commits a batch's records gather, written together.

A stage commits through its StageContext; in a batch (handlers/batch.py) the context hands
each unit here instead of to the store. flush() writes them in one transaction before the
event source may move the offsets. A commit that must be durable before something leaves
the process (an attempt before the PSP hears of it) flushes at once. Until flushed, what
a record gathered is what the next record of its payment loads, as the store would give it.
A record's stage span is held open (end_after_commit) until the flush that writes its
commits, so the span ends when its effects are durable and carries the commit's outcome;
only ledger commits get a span of their own.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import orjson

from .. import codec
from ..domain.payment import Payment
from ..errors import TransientError
from ..observability import tracing
from ..ports import AlreadyProcessed, Changes, ConcurrencyConflict, Store

log = logging.getLogger("payments.stage")


@dataclass
class BatchCommit:
    """What one batch (or one partition of it, see adopt) gathered and has not written yet."""
    stage: str
    store: Store
    failed: dict[str, Exception] = field(default_factory=dict)  # item -> why its commit failed
    _pending: list[tuple[str | None, Changes, Any]] = field(default_factory=list, repr=False)
    _latest: dict[tuple[str, str], bytes] = field(default_factory=dict, repr=False)
    _held: list[tuple[str, Any]] = field(default_factory=list, repr=False)  # (item, open stage span)

    def latest(self, tenant_id: str, payment_id: str) -> Payment | None:
        """The payment as this batch last gathered it (None: read the store)."""
        body = self._latest.get((tenant_id, payment_id))
        return Payment.from_dict(orjson.loads(body)) if body is not None else None

    def gather(self, item: str | None, changes: Changes) -> None:
        """Keep a frozen copy (the stage may go on changing its object), as the store would."""
        p = changes.payment
        if p is not None:
            version = (changes.expected_version or 0) + 1
            body = codec.payment_json(p, version)
            frozen = Payment.from_dict(orjson.loads(body))
            frozen.version = changes.expected_version or 0
            frozen.pending_timeline = list(p.pending_timeline)
            changes.payment, changes.payment_body = frozen, body
            self._latest[(p.tenant_id, p.payment_id)] = body
            p.version = version
            p.pending_timeline.clear()
        self._pending.append((item, changes, tracing.current_context()))

    def end_after_commit(self, item: str, span: Any) -> None:
        """End `item`'s open span with the flush that writes what it gathered, or now if nothing of
        it is waiting to be written. Its units are the last gathered: the search starts there."""
        if any(i == item for i, _, _ in reversed(self._pending)):
            self._held.append((item, span))
        else:
            span.end()

    def adopt(self, other: BatchCommit) -> None:
        """Take over what `other` gathered and did not write (a partition handled on another thread),
        so that one flush writes both; what `other` already found failed is kept too."""
        self._pending.extend(other._pending)
        self._held.extend(other._held)
        other._pending, other._held = [], []
        self.failed.update(other.failed)

    def flush(self) -> dict[str, Exception]:
        """Write the gathered commits in one transaction. Returns item -> error for
        the records whose commit failed (a duplicate is not a failure); also kept in `failed`."""
        pending, self._pending = self._pending, []
        held, self._held = self._held, []
        self._latest.clear()
        if not pending:
            return {}
        try:
            with tracing.spans_under([  # a ledger write in its own payment's trace
                    ("ledger.commit", parent,
                     {"payments.stage": self.stage, "payments.postings": len(c.postings),
                      "payments.events": len(c.events), "payments.batch_units": len(pending),
                      "payments.status": c.payment.status if c.payment is not None else None})
                    for _, c, parent in pending if c.postings]):
                results = self._commit_all([c for _, c, _ in pending])
        except Exception as e:  # noqa: BLE001 - the transaction failed: none of it was written
            results = [e] * len(pending)
        errors: dict[str, Exception] = {}
        status: dict[str | None, str] = {}
        for (item, changes, _), error in zip(pending, results):
            if isinstance(error, AlreadyProcessed):
                log.info("duplicate delivery ignored", extra={"stage": self.stage, "event_id": changes.processed[1]})
            elif isinstance(error, ConcurrencyConflict):
                errors.setdefault(item, TransientError(str(error)))
            elif error is not None:
                errors.setdefault(item, error)
            elif changes.payment is not None:
                status[item] = changes.payment.status
        self.failed.update(errors)
        for item, span in held:  # each record's stage span ends with the commit of its effects
            error = errors.get(item)
            tracing.set_attributes(span, **{"payments.batch_units": len(pending), "payments.status": status.get(item)})
            if error is not None:
                span.set_attribute("payments.outcome", "retry")
                tracing.mark_error(span, f"commit failed: {type(error).__name__}: {error}")
            span.end()
        return errors

    def _commit_all(self, batch: list[Changes]) -> list[Exception | None]:
        commit_many = getattr(self.store.unit_of_work, "commit_many", None)
        if commit_many is not None:
            return commit_many(batch)
        results: list[Exception | None] = []
        for c in batch:  # a store without batches: one commit each, same outcome per unit
            try:
                self.store.commit(c)
                results.append(None)
            except (AlreadyProcessed, ConcurrencyConflict) as e:
                results.append(e)
        return results
