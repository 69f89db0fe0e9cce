"""What every stage needs: load the payment, emit events, commit once (StageContext)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from .. import codec
from ..clock import iso
from ..config import Settings
from ..domain.events import Event
from ..domain.payment import Payment
from ..domain.states import behind
from ..errors import PermanentError, TransientError
from ..observability import context, tracing
from ..ports import AlreadyProcessed, Changes, Clock, ConcurrencyConflict, Intent, Platform, Posting, Reminder, Store

log = logging.getLogger("payments.stage")


class Gathering(Protocol):
    """Where a batched context's commits go until the batch writes them (handlers/batch_commit.py)."""

    def latest(self, tenant_id: str, payment_id: str) -> Payment | None: ...
    def gather(self, item: str | None, changes: Changes) -> None: ...
    def flush(self) -> dict[str, Exception]: ...


class Stage(Protocol):
    """A stage module (stages/<name>.py): its name, the topics it consumes and its handler."""
    NAME: str
    CONSUMES: tuple[str, ...]

    def handle(self, event: Event, ctx: StageContext) -> None: ...


@dataclass
class StageContext:
    """A stage's view of the platform for one batch (or one scheduled run).

    With `batch` set (the stage handlers), commits are gathered there and written
    by the handler in one transaction before the event source moves the offsets;
    a commit with final=False (an attempt before the PSP hears of it) is written
    at once. Without it (reconciliation), each commit goes to the store directly.
    """
    name: str
    platform: Platform
    batch: Gathering | None = None
    item: str | None = None  # the record being handled; tags its gathered commits
    prepared: set[str] = field(default_factory=set, repr=False)  # attempt keys written, not yet sent
    _tenants: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    _epochs: dict[str, int] = field(default_factory=dict, repr=False)  # payment id -> the epoch we act under

    @property
    def store(self) -> Store:
        return self.platform.store

    @property
    def clock(self) -> Clock:
        return self.platform.clock

    @property
    def settings(self) -> Settings:
        return self.platform.settings

    def now(self) -> str:
        return iso(self.clock.now())

    def tenant(self, tenant_id: str) -> dict[str, Any]:
        """The tenant's settings, read once per batch (a context lives for one batch)."""
        tenant = self._tenants.get(tenant_id)
        if tenant is None:
            tenant = self.platform.store.tenants.get_tenant(tenant_id)
            if tenant is None:
                raise PermanentError(f"unknown tenant {tenant_id}")
            self._tenants[tenant_id] = tenant
        return tenant

    def load(self, event: Event) -> Payment:
        """The payment the event is about, read with the event's tenant in the key, if this region
        may act for its home region now (NotOwner / StaleEpoch otherwise: services/ownership.py)."""
        payment = self.batch.latest(event.tenant_id, event.payment_id) if self.batch is not None else None
        if payment is not None:
            return payment
        payment = self.store.payments.get_payment(event.tenant_id, event.payment_id)
        if payment is None:
            if event.region != self.settings.region:  # written in another region: not replicated yet
                raise TransientError(f"payment {event.payment_id} of {event.region} has not arrived here yet")
            raise PermanentError(f"payment {event.payment_id} not found for tenant {event.tenant_id}")
        self.own(payment)
        return payment

    def own(self, payment: Payment) -> int:
        """The epoch this region acts under for `payment`: it holds the lease of the payment's home
        region now, and nobody wrote the payment under a newer one."""
        epoch = self._epochs.get(payment.payment_id)
        if epoch is None:
            ownership = self.platform.ownership
            epoch = ownership.require(payment.region or self.settings.region)
            ownership.check_payment(payment.epoch, epoch, payment.payment_id)
            self._epochs[payment.payment_id] = epoch
        return epoch

    def before_psp(self, payment: Payment, kind: str, psp: str, idempotency_key: str) -> None:
        """Right before a PSP call about `payment`: the control store itself still names us at our
        epoch (StaleEpoch otherwise), and the call is written down there first, so a region taking
        over finds it even if the payment's own record of it never replicates (ports/leases.py)."""
        epoch, home = self.own(payment), payment.region or self.settings.region
        self.platform.ownership.verify(home, epoch)
        if kind != "status":
            self.platform.ownership.leases.put_intent(Intent(
                payment.payment_id, payment.tenant_id, home, psp, idempotency_key, kind, epoch,
                self.clock.now().timestamp()))

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
        if self.batch is not None:
            self.batch.gather(self.item, changes)
            if final:
                return True
            error = self.batch.flush().get(self.item)
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
        if payment is not None:  # stamped: a region under an older epoch never overwrites this
            payment.epoch = self.own(payment)
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
        self.batch.gather(self.item, self._changes(cause, payment, expected_version, final=False))
        self.prepared.add(payment.current_attempt.idempotency_key)

    def skip(self, cause: Event, payment: Payment, why: str) -> None:
        """The payment has moved on (redelivery or a race): remember the event, change nothing.

        Unless it has not got there yet: the event came with a write that has not replicated here
        (tables replicate item by item, so an outbox item can arrive before its payment). That is
        retried, never dropped."""
        if behind(payment.state, cause.type):
            raise TransientError(f"payment {payment.payment_id} is {payment.state.value} here; the write that "
                                 f"came with {cause.type} has not arrived yet")
        log.info("event skipped", extra={"stage": self.name, "payment_id": payment.payment_id,
                                          "event_id": cause.event_id, "why": why})
        self.commit(cause, None, None)
