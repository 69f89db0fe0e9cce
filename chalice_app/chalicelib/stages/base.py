"""What every stage needs: load the payment, emit events, commit once."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .. import codec
from ..clock import iso
from ..domain.events import Event
from ..domain.payment import Payment
from ..errors import PermanentError, TransientError
from ..ports import AlreadyProcessed, Changes, ConcurrencyConflict, Posting, Reminder
from ..telemetry import context, tracing

log = logging.getLogger("payments.stage")


@dataclass
class StageContext:
    """A stage's view of the platform (built by runtime.bootstrap)."""
    name: str
    platform: Any  # runtime.bootstrap.Platform; Any to keep stages free of wiring imports

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
        tenant = self.platform.tenants.get_tenant(tenant_id)
        if tenant is None:
            raise PermanentError(f"unknown tenant {tenant_id}")
        return tenant

    def load(self, event: Event) -> Payment:
        """The payment the event is about, read with the event's tenant in the key."""
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

    def skip(self, cause: Event, payment: Payment, why: str) -> None:
        """The payment has moved on (redelivery or a race): remember the event, change nothing."""
        log.info("event skipped", extra={"stage": self.name, "payment_id": payment.payment_id,
                                          "event_id": cause.event_id, "why": why})
        self.commit(cause, None, None)
