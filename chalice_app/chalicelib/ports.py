"""Ports: what the platform needs from the outside world, as Protocols.

Adapters live in adapters/ (one file per technology) and translate vendor
errors into the exceptions below; services and stages never see sqlite3,
botocore or kafka errors.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, Sequence

from .domain.events import Event
from .domain.payment import Payment
from .domain.psp import PspResult


# -- port errors ---------------------------------------------------------------
class ConcurrencyConflict(Exception):
    """A conditional write lost: someone else changed the item first."""


class AlreadyExists(Exception):
    """A create found the item already there."""


class AlreadyProcessed(Exception):
    """The consumer has already applied this event; its effects are durable."""


# -- store -----------------------------------------------------------------------
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
    """What one change adds to its tenant's report counters (reporting.py builds these).

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


class PaymentStore(Protocol):
    def commit(self, changes: Changes) -> None:
        """Write everything in `changes` in one transaction, or nothing.

        Raises ConcurrencyConflict, AlreadyExists or AlreadyProcessed."""

    def get_payment(self, tenant_id: str, payment_id: str) -> Payment | None:
        """The payment, read by the tenant's key (another tenant's id finds nothing)."""

    def list_payments(self, tenant_id: str, status: str | None, limit: int,
                      cursor: str | None) -> tuple[list[Payment], str | None]:
        """Newest first, by public status if given; returns (page, next cursor)."""

    def timeline(self, tenant_id: str, payment_id: str) -> list[dict[str, Any]]:
        """Every state change of the payment, in order."""

    def count_recent_payments(self, tenant_id: str, customer_id: str, since: str) -> int:
        """Payments by this customer created at or after `since` (risk velocity)."""

    def payments_by_correlation(self, tenant_id: str, correlation_id: str, limit: int = 100) -> list[str]:
        """Ids of the tenant's payments created under this correlation id (`payctl trace --correlation-id`)."""

    def get_idempotency(self, tenant_id: str, key: str, now: int) -> IdempotencyRecord | None:
        """The stored record for this key (in flight or completed), if it has not expired."""

    def claim_idempotency(self, record: IdempotencyRecord) -> IdempotencyRecord | None:
        """Atomically claim (tenant, key) with an in-flight record, unless a live one exists.

        Returns None when the claim was taken, else the live record found. A record is
        live while expires_at > record.created_at; an in-flight one only while also
        locked_until > record.created_at, so a crashed request never blocks its key.
        Committing Changes.idempotency later replaces the claim with the response."""

    def release_idempotency(self, tenant_id: str, key: str, request_hash: str) -> None:
        """Drop our in-flight claim (the request was refused, so nothing is kept for it)."""

    def purge_expired_idempotency(self, now: int) -> int:
        """Delete records expired by `now` (DynamoDB's TTL does this by itself); returns how many."""

    def due_reminders(self, now: str, limit: int) -> list[Reminder]:
        """Reminders with due_at <= now, earliest first, across tenants."""

    def get_control(self, name: str) -> dict[str, Any] | None:
        """A platform control record (e.g. a PSP circuit breaker), shared by all workers."""

    def put_control(self, name: str, value: dict[str, Any]) -> None:
        """Write a control record (last writer wins)."""

    def get_secret(self, tenant_id: str, token: str) -> bytes | None:
        """Ciphertext stored for a vault token (card PAN, IBAN)."""

    def balances(self, tenant_id: str) -> list[dict[str, Any]]:
        """Ledger balances per account and currency for the tenant (kept with each posting)."""

    def ledger_drift(self) -> list[dict[str, Any]]:
        """Balances that differ from the sum of their postings (I4: always empty)."""

    def ledger_totals(self) -> list[dict[str, Any]]:
        """Sum of postings per transaction and currency, across tenants (I4 checks)."""

    def pending_outbox(self, limit: int) -> list[OutboxRecord]:
        """Committed events not yet published, oldest first."""

    def mark_published(self, ids: Sequence[int]) -> None:
        """Forget outbox records that reached the bus."""

    def apply_report(self, consumer: str, deltas: Sequence[ReportDelta]) -> int:
        """Add each delta to its tenant's counters and remember its change id, in one unit of work
        per delta at least (never a counter without its marker, nor a marker without its counters).

        A change id this consumer already applied is skipped, so redelivery never counts twice.
        Returns how many deltas were newly applied."""

    def report_counters(self, tenant_id: str) -> dict[str, int]:
        """The tenant's report counters ({} before its first change)."""
    def count_request(self, tenant_id: str, window: int, limit: int, expires_at: int) -> bool:
        """Count one API request of the tenant in fixed window `window`, atomically across processes;
        False (nothing counted) when `limit` are counted there already. Counters may be lost on a
        power cut and expire after `expires_at` (epoch seconds)."""

    def pending_audit(self, limit: int) -> list[AuditPending]:
        """State-change audit rows committed but not yet chained, oldest first (across tenants)."""

    def mark_audited(self, ids: Sequence[int]) -> None:
        """Forget audit rows now in the hash chain."""

    def pending_audit_count(self, tenant_id: str) -> int:
        """How many of the tenant's state-change rows wait for the chainer (payctl audit verify)."""


class TenantDirectory(Protocol):
    def put_tenant(self, tenant: dict[str, Any]) -> None:
        """Create or replace a tenant's configuration."""

    def get_tenant(self, tenant_id: str) -> dict[str, Any] | None:
        """A tenant's configuration (limits, PSPs, webhook, risk rules)."""

    def list_tenants(self) -> list[dict[str, Any]]:
        """All tenants."""

    def add_api_key(self, tenant_id: str, key_hash: str, prefix: str, at: str) -> None:
        """Register a hashed API key for a tenant."""

    def tenant_for_key(self, key_hash: str) -> str | None:
        """The tenant an (unrevoked) API key hash belongs to."""

    def list_api_keys(self, tenant_id: str) -> list[dict[str, Any]]:
        """The tenant's keys, oldest first: {"key_hash", "prefix", "created_at", "revoked_at"} (no key)."""

    def revoke_api_key(self, key_hash: str, at: str) -> bool:
        """Revoke a key at once (tenant_for_key stops finding it); False if unknown or already revoked."""

    def mark_redriven(self, entry_ids: Sequence[str], at: str) -> None:
        """Remember that these DLQ entries have been re-injected."""

    def redriven_ids(self) -> set[str]:
        """DLQ entry ids already re-injected."""


# -- audit log ---------------------------------------------------------------------
class AuditTampered(Exception):
    """The stored audit head does not verify: refuse to extend a chain someone rewrote."""


class AuditLog(Protocol):
    """Append-only, hash-chained entries per tenant (audit/chain.py holds the chain rules)."""

    signer: Any  # security.chain.HeadSigner: signs and checks the head

    def append(self, tenant_id: str, entries: Sequence[tuple[str | None, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Chain (source, body) entries after the tenant's head, in order, all or none.

        An entry whose source is already chained is skipped (a chainer that crashed before
        forgetting its pending rows runs again); returns the entries added. Raises
        AuditTampered if the stored head's MAC does not verify."""

    def rows(self, tenant_id: str) -> list[tuple[int, bytes, str]]:
        """(seq, canonical body, hash) in stored seq order."""

    def head(self, tenant_id: str) -> tuple[int, str, str | None] | None:
        """(last seq, its hash, MAC of the two), or None before the first entry."""

    def tenants(self) -> list[str]:
        """Every tenant with entries or a head."""

    def meta(self, name: str) -> bytes | None:
        """A platform value kept with the log (the wrapped head-MAC key)."""

    def put_meta_if_absent(self, name: str, value: bytes) -> bytes:
        """Store `value` unless `name` exists; returns what is stored (first writer wins)."""


# -- bus -----------------------------------------------------------------------
@dataclass(frozen=True)
class OutRecord:
    topic: str
    key: str
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class BusRecord:
    topic: str
    partition: int
    offset: int
    key: str
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int


class BusConsumer(Protocol):
    def poll(self, max_records: int) -> list[BusRecord]:
        """Next records after the group's position, in offset order per partition."""

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        """Durably store the next offset to read for each (topic, partition)."""

    def seek(self, topic: str, partition: int, offset: int) -> None:
        """Move the in-memory position back (to redeliver after a failure)."""

    def lag(self) -> int:
        """Records published but not yet committed by this group."""

    def close(self) -> None:
        """Release the consumer."""


class EventBus(Protocol):
    def ensure_topics(self, topics: Sequence[str]) -> None:
        """Create topics that do not exist yet (idempotent)."""

    def publish(self, records: Sequence[OutRecord]) -> None:
        """Append records durably; keyed records keep their order per key."""

    def consumer(self, group: str, topics: Sequence[str]) -> BusConsumer:
        """A consumer-group member reading `topics` from the group's committed offsets."""

    def read_all(self, topic: str) -> list[BusRecord]:
        """Every record of a topic from the start (DLQ listing, audits)."""

    def topics(self) -> list[str]:
        """Names of every topic, sorted."""


# -- PSP connectors ------------------------------------------------------------
@dataclass(frozen=True)
class AuthorizeRequest:
    idempotency_key: str
    amount: int
    currency: str
    card: dict[str, Any] | None  # {"number", "exp_month", "exp_year"}: decrypted only for this call
    reference: str | None
    correlation_id: str
    bank_account: dict[str, Any] | None = None  # {"iban"}: decrypted only for this call

    def __repr__(self) -> str:  # never print a PAN
        return f"AuthorizeRequest({self.idempotency_key}, {self.amount} {self.currency})"


class Connector(Protocol):
    name: str

    def authorize(self, request: AuthorizeRequest) -> PspResult:
        """Ask the PSP to authorize; the same idempotency key never charges twice."""

    def capture(self, psp_reference: str, amount: int, currency: str, idempotency_key: str) -> PspResult:
        """Capture (part of) an authorization."""

    def void(self, psp_reference: str, idempotency_key: str) -> PspResult:
        """Release an uncaptured authorization."""

    def refund(self, psp_reference: str, amount: int, currency: str, idempotency_key: str) -> PspResult:
        """Refund (part of) a captured payment."""

    def status(self, idempotency_key: str) -> PspResult:
        """What the PSP knows of an authorization sent with this key (NOT_FOUND if nothing)."""


# -- keys and time ---------------------------------------------------------------
class KeyService(Protocol):
    def encrypt(self, tenant_id: str, plaintext: bytes) -> bytes:
        """Envelope-encrypt under the tenant's data key (context: tenant id)."""

    def decrypt(self, tenant_id: str, blob: bytes) -> bytes:
        """Decrypt; fails if the blob belongs to another tenant or the key was destroyed."""

    def destroy_tenant_key(self, tenant_id: str) -> None:
        """Crypto-shred: the tenant's data becomes unreadable."""


class Clock(Protocol):
    def now(self) -> datetime:
        """Current UTC time."""

    def sleep(self, seconds: float) -> None:
        """Wait (a simulated clock advances instead)."""
