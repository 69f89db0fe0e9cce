"""Store ports: one narrow Protocol per concern (STYLE 3), and the records they carry.

A commit (UnitOfWork) spans them: the payment, its outbox events, the processed marker,
ledger postings, vault secrets, reminders and audit rows are written in one transaction.
Store bundles them as one adapter per technology builds them (adapters/sqlite/store.py,
adapters/aws/dynamodb.py), each concern its own small adapter over the shared database;
code that needs one concern asks for its narrow port.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from ..domain.payment import Payment
from .errors import AuditTampered  # noqa: F401 - AuditLog.append raises it
from .records import AuditPending, Changes, IdempotencyRecord, OutboxRecord, Reminder, ReportDelta


class UnitOfWork(Protocol):
    """Writes a unit of work: the payment, its outbox events, markers, ledger and audit rows at once.

    An adapter may also offer commit_many(batch) -> [error or None per unit]: several units in one
    transaction, each still all or nothing (the stages' batch commit uses it when present)."""

    def commit(self, changes: Changes) -> None:
        """Write everything in `changes` in one transaction, or nothing.

        Raises ConcurrencyConflict, AlreadyExists or AlreadyProcessed."""


class PaymentReads(Protocol):
    """Reads of payments and their timelines, always scoped by the tenant."""

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


class IdempotencyKeys(Protocol):
    """API idempotency keys: claim, replay, release, expire (services/payments.py)."""

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


class Reminders(Protocol):
    """Work due later for a payment (reconciliation's status checks); set and cleared by commits."""

    def due_reminders(self, now: str, limit: int) -> list[Reminder]:
        """Reminders with due_at <= now, earliest first, across tenants."""


class ControlRecords(Protocol):
    """Platform control records shared by every worker (circuit breakers, stream checkpoints)."""

    def get_control(self, name: str) -> dict[str, Any] | None:
        """A platform control record (e.g. a PSP circuit breaker), shared by all workers."""

    def put_control(self, name: str, value: dict[str, Any]) -> None:
        """Write a control record (last writer wins)."""


class Secrets(Protocol):
    """Vault ciphertexts (card numbers, IBANs), written by commits, read by the vault."""

    def get_secret(self, tenant_id: str, token: str) -> bytes | None:
        """Ciphertext stored for a vault token (card PAN, IBAN)."""


class Ledger(Protocol):
    """The double-entry ledger: balances kept with each posting, and the I4 checks."""

    def balances(self, tenant_id: str) -> list[dict[str, Any]]:
        """Ledger balances per account and currency for the tenant (kept with each posting)."""

    def ledger_drift(self) -> list[dict[str, Any]]:
        """Balances that differ from the sum of their postings (I4: always empty)."""

    def ledger_totals(self) -> list[dict[str, Any]]:
        """Sum of postings per transaction and currency, across tenants (I4 checks)."""

    def postings_for(self, tenant_id: str, payment_id: str) -> list[dict[str, Any]]:
        """The payment's ledger legs, in the order they were posted."""


class Outbox(Protocol):
    """Committed events not yet on the bus (the relay, handlers/relay.py)."""

    def pending_outbox(self, limit: int, origin: str | None = None) -> list[OutboxRecord]:
        """Committed events this region wrote (or `origin` wrote: a takeover) not yet published, oldest first."""

    def mark_published(self, ids: Sequence[int], origin: str | None = None) -> None:
        """Forget outbox records (of this region, or of `origin`) that reached the bus."""


class ReportCounters(Protocol):
    """Per-tenant report counters, each change counted once (services/reporting.py)."""

    def apply_report(self, consumer: str, deltas: Sequence[ReportDelta]) -> int:
        """Add each delta to its tenant's counters and remember its change id, in one unit of work
        per delta at least (never a counter without its marker, nor a marker without its counters).

        A change id this consumer already applied is skipped, so redelivery never counts twice.
        Returns how many deltas were newly applied."""

    def report_counters(self, tenant_id: str) -> dict[str, int]:
        """The tenant's report counters ({} before its first change)."""


class RequestCounters(Protocol):
    """API request counts per tenant and window, across processes (api/ratelimit.py)."""

    def count_request(self, tenant_id: str, window: int, limit: int, expires_at: int) -> bool:
        """Count one API request of the tenant in fixed window `window`, atomically across processes;
        False (nothing counted) when `limit` are counted there already. Counters may be lost on a
        power cut and expire after `expires_at` (epoch seconds)."""


class AuditQueue(Protocol):
    """State changes committed but not yet in the audit chain (services/audit.py)."""

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


class ChangeFeed(Protocol):
    """The store's change stream, as the outbox relay and the reports consumer read it.

    Pushed (aws modes): DynamoDB Streams hands Lambda stream records, `outbox_in` picks the
    outbox items out of them. Pulled (embedded): a named reader asks for what follows its
    position (`read`) and moves past it once its effects are durable (`advance`)."""

    def outbox_in(self, records: Sequence[dict[str, Any]]) -> list[OutboxRecord]:
        """The outbox items newly written among stream records (Lambda's event["Records"] or
        GetRecords: {"eventName", "dynamodb": {"NewImage"}}); anything else is left out."""

    def read(self, reader: str, limit: int) -> list[OutboxRecord]:
        """Committed outbox events after `reader`'s position, oldest first ([] on a pushed stream)."""

    def advance(self, reader: str, position: int) -> None:
        """Move `reader` past `position` (an OutboxRecord id)."""

    def register(self, reader: str) -> None:
        """Keep changes for `reader` from now on (a pushed stream keeps them by itself)."""


class AuditLog(Protocol):
    """Append-only, hash-chained entries per tenant and region (audit/chain.py holds the chain rules).

    A log belongs to one region: it appends to that region's chains only. Reads name the region
    (None: the log's own)."""

    signer: Any  # audit.chain.HeadSigner: signs and checks the head
    region: str  # the region whose chains this log appends to

    def append(self, tenant_id: str, entries: Sequence[tuple[str | None, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Chain (source, body) entries after the head of the tenant's chain in this region, in order,
        all or none.

        An entry whose source is already chained is skipped (a chainer that crashed before
        forgetting its pending rows runs again); returns the entries added. Raises
        AuditTampered if the stored head's MAC does not verify."""

    def rows(self, tenant_id: str, region: str | None = None) -> list[tuple[int, bytes, str]]:
        """(seq, canonical body, hash) of one chain in stored seq order."""

    def head(self, tenant_id: str, region: str | None = None) -> tuple[int, str, str | None] | None:
        """(last seq, its hash, MAC of the two), or None before the chain's first entry."""

    def tenants(self) -> list[str]:
        """Every tenant with a chain (entries or a head) in any region."""

    def regions(self, tenant_id: str) -> list[str]:
        """The regions holding a chain of the tenant ('' : a chain from before regions)."""

    def meta(self, name: str) -> bytes | None:
        """A platform value kept with the log (the wrapped head-MAC key)."""

    def put_meta_if_absent(self, name: str, value: bytes) -> bytes:
        """Store `value` unless `name` exists; returns what is stored (first writer wins)."""


@dataclass(frozen=True)
class Store:
    """The store: one narrow port per concern over one database, built whole by an adapter
    (adapters/sqlite/store.py, adapters/aws/dynamodb.py). `commit` is the unit of work that
    spans them: a state change, its outbox events, ledger postings, secrets, reminders and audit
    rows are written together or not at all."""
    unit_of_work: UnitOfWork
    payments: PaymentReads
    idempotency: IdempotencyKeys
    reminders: Reminders
    controls: ControlRecords
    secrets: Secrets
    ledger: Ledger
    outbox: Outbox
    feed: ChangeFeed
    reports: ReportCounters
    requests: RequestCounters
    audit_queue: AuditQueue
    tenants: TenantDirectory

    def commit(self, changes: Changes) -> None:
        """unit_of_work.commit: raises ConcurrencyConflict, AlreadyExists or AlreadyProcessed."""
        self.unit_of_work.commit(changes)
