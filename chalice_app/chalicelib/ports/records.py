"""The records the store ports carry: units of work, keys, reminders, postings, outbox rows."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..domain.events import Event
from ..domain.payment import Payment


@dataclass(frozen=True)
class Posting:
    """One leg of a double-entry ledger transaction (amount signed: + debit, - credit)."""
    txn_id: str
    tenant_id: str
    payment_id: str
    account: str
    currency: str
    amount: int
    batch: str
    at: str


@dataclass(frozen=True)
class IdempotencyRecord:
    tenant_id: str
    key: str
    request_hash: str
    status_code: int
    response: bytes  # the exact body sent the first time
    headers: dict[str, str]
    expires_at: int  # epoch seconds (DynamoDB TTL attribute in AWS)
    created_at: int = 0  # epoch seconds; a record expired by then may be replaced
    state: str = "completed"  # in_flight (claimed, no response yet) | completed
    locked_until: int = 0  # in_flight only: after this a crashed request's claim lapses


@dataclass(frozen=True)
class Reminder:
    """Work due later for one payment (e.g. the next PSP status check of an unknown outcome)."""
    tenant_id: str
    payment_id: str
    due_at: str | None  # ISO time; None in Changes.reminders deletes the reminder


@dataclass
class Changes:
    """One unit of work, committed atomically: state + outbox + dedupe marker + ledger.

    `expected_version` None means "create"; otherwise the stored version must
    match or ConcurrencyConflict is raised and nothing is written.
    """
    payment: Payment | None = None
    expected_version: int | None = None
    events: list[Event] = field(default_factory=list)
    processed: tuple[str, str] | None = None  # (consumer, event_id)
    postings: list[Posting] = field(default_factory=list)
    idempotency: IdempotencyRecord | None = None
    secrets: list[tuple[str, str, bytes]] = field(default_factory=list)  # (tenant, token, ciphertext)
    reminders: list[Reminder] = field(default_factory=list)  # set (due_at) or clear (None) per payment
    # Who made the payment's state change (a stage or an API key) and under which correlation id:
    # the commit writes one unchained audit row per change (audit/rows.py), chained later.
    actor: str | None = None
    correlation_id: str | None = None
    # The payment as stored at its new version, when the caller serialized it already (a batched
    # stage's frozen copy is made from these bytes): the store writes them instead of serializing again.
    payment_body: bytes | None = None


@dataclass(frozen=True)
class ReportDelta:
    """What one change adds to its tenant's report counters (services/reporting.py builds these).

    `change_id` names the change (the event id) so a redelivered change is counted once."""
    tenant_id: str
    change_id: str
    counters: dict[str, int]


@dataclass(frozen=True)
class OutboxRecord:
    id: int
    event: Event


@dataclass(frozen=True)
class AuditPending:
    """A payment state change committed with the state, not yet in the tenant's hash chain."""
    id: int
    tenant_id: str
    source: str  # "<payment_id>@<version>#<i>": unique per tenant, so chaining twice is detectable
    body: dict[str, Any]
