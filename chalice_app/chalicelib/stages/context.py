"""What every stage needs: load the payment, emit events, commit once."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import orjson

from .. import codec
from ..clock import iso
from ..domain.events import Event
from ..domain.payment import Payment
from ..errors import PermanentError, TransientError
from ..ports import AlreadyProcessed, Changes, ConcurrencyConflict, Posting, Reminder
from ..observability import context, tracing

log = logging.getLogger("payments.stage")


@dataclass
class StageContext:
    """A stage's view of the platform (built by runtime.bootstrap).

    `batched`: commits are gathered and written by flush() in one transaction
    (the handler flushes before the event source moves the offsets). A commit
    that must be durable before something leaves the process (final=False: an
    attempt before the PSP hears of it) flushes at once. Until flushed, load()
    returns what this context committed last, as the store would. A record's
    stage span is held open (end_after_commit) until the flush that writes its commits, so
    the span ends when its effects are durable and carries the commit's outcome;
    only ledger commits get a span of their own.
    """
    name: str
    platform: Any  # runtime.bootstrap.Platform; Any to keep stages free of wiring imports
    batched: bool = False
    item: str | None = None  # the record being handled; tags its gathered commits
    _pending: list[tuple[str | None, Changes, Any]] = field(default_factory=list, repr=False)
    _latest: dict[tuple[str, str], bytes] = field(default_factory=dict, repr=False)
    failed: dict[str, Exception] = field(default_factory=dict, repr=False)  # item -> why its commit failed
    prepared: set[str] = field(default_factory=set, repr=False)  # attempt keys written, not yet sent
    _tenants: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    _held: list[tuple[str, Any]] = field(default_factory=list, repr=False)  # (item, open stage span)

    @property
    def store(self):
        return self.platform.store

    @property
    def clock(self):
        return self.platform.clock

    @property
    def settings(self):
        return self.platform.settings

    def now(self) -> str:
        return iso(self.clock.now())

    def tenant(self, tenant_id: str) -> dict[str, Any]:
        """The tenant's settings, read once per batch (a context lives for one batch)."""
        tenant = self._tenants.get(tenant_id)
        if tenant is None:
            tenant = self.platform.tenants.get_tenant(tenant_id)
            if tenant is None:
                raise PermanentError(f"unknown tenant {tenant_id}")
            self._tenants[tenant_id] = tenant
        return tenant

    def load(self, event: Event) -> Payment:
        """The payment the event is about, read with the event's tenant in the key."""
        gathered = self._latest.get((event.tenant_id, event.payment_id))
        if gathered is not None:
            return Payment.from_dict(orjson.loads(gathered))
        payment = self.store.get_payment(event.tenant_id, event.payment_id)
        if payment is None:
            raise PermanentError(f"payment {event.payment_id} not found for tenant {event.tenant_id}")
        return payment

    def event(self, cause: Event | None, payment: Payment, etype: str, data: dict[str, Any]) -> Event:
        """A new event about `payment`, caused by `cause` (None: a scheduled action)."""
        return codec.new_event(etype, tenant_id=payment.tenant_id, payment_id=payment.payment_id,
                               correlation_id=cause.correlation_id if cause else payment.correlation_id,
                               causation_id=cause.event_id if cause else None,
                               at=self.now(), region=self.settings.region, data=data)

    def commit(self, cause: Event | None, payment: Payment | None, expected_version: int | None,
               events: list[Event] = (), postings: list[Posting] = (), final: bool = True,
               reminders: list[Reminder] = ()) -> bool:
        """Commit state + outbox (+ the processed marker when `final`). False if already done."""
        changes = self._changes(cause, payment, expected_version, events, postings, final, reminders)
        if self.batched:
            self._gather(changes)
            if final:
                return True
            error = self.flush().get(self.item)
            if error is not None:
                raise error
            return True
        try:
            with tracing.span("ledger.commit" if postings else "store.commit", **{
                    "payments.stage": self.name, "payments.postings": len(changes.postings),
                    "payments.events": len(changes.events),
                    "payments.status": payment.status if payment is not None else None}):
                self.store.commit(changes)
        except AlreadyProcessed:
            log.info("duplicate delivery ignored", extra={"stage": self.name, "event_id": cause.event_id if cause else None})
            return False
        except ConcurrencyConflict as e:
            raise TransientError(str(e)) from None
        return True

    def _changes(self, cause: Event | None, payment: Payment | None, expected_version: int | None,
                 events: list[Event] = (), postings: list[Posting] = (), final: bool = True,
                 reminders: list[Reminder] = ()) -> Changes:
        changes = Changes(payment=payment, expected_version=expected_version, events=list(events),
                          postings=list(postings), reminders=list(reminders), actor=f"stage:{self.name}",
                          correlation_id=cause.correlation_id if cause else None,
                          processed=(self.name, cause.event_id) if (final and cause) else None)
        received = context.current().get("_received_at")
        if payment is not None and received is not None:
            # When the stage got the record: `payctl trace` splits queue time from time in the stage.
            for entry in payment.pending_timeline:
                entry.detail.setdefault("received_at", received)
                if cause is not None:
                    entry.detail.setdefault("caused_by", cause.type)
        return changes

    def commit_attempt(self, cause: Event, payment: Payment, expected_version: int) -> None:
        """A new attempt, gathered: the handler writes all of a batch's at once (flush) before any
        record of the batch is handled, so each is durable before its PSP hears of it."""
        self._gather(self._changes(cause, payment, expected_version, final=False))
        self.prepared.add(payment.current_attempt.idempotency_key)

    def _gather(self, changes: Changes) -> None:
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
        self._pending.append((self.item, changes, tracing.current_context()))

    def end_after_commit(self, item: str, span: Any) -> None:
        """End `item`'s open span with the flush that writes what it gathered, or now if nothing of
        it is waiting to be written. Its units are the last gathered: the search starts there."""
        if any(i == item for i, _, _ in reversed(self._pending)):
            self._held.append((item, span))
        else:
            span.end()

    def adopt(self, other: StageContext) -> None:
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
                     {"payments.stage": self.name, "payments.postings": len(c.postings),
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
                log.info("duplicate delivery ignored", extra={"stage": self.name, "event_id": changes.processed[1]})
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
        commit_many = getattr(self.store, "commit_many", None)
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

    def skip(self, cause: Event, payment: Payment, why: str) -> None:
        """The payment has moved on (redelivery or a race): remember the event, change nothing."""
        log.info("event skipped", extra={"stage": self.name, "payment_id": payment.payment_id,
                                          "event_id": cause.event_id, "why": why})
        self.commit(cause, None, None)
