"""Ports: what the platform needs from the outside world, as narrow Protocols (STYLE 3).

store.py     one Protocol per store concern (UnitOfWork, PaymentReads, IdempotencyKeys, Ledger,
             Outbox, ChangeFeed, TenantDirectory, ...), the Store that bundles them, AuditLog
records.py   what they carry (Changes, IdempotencyRecord, Posting, Reminder, ...)
bus.py       EventBus and BusConsumer
outside.py   Connector (PSPs), KeyService, Clock
leases.py    Leases: the control store's home-region leases and PSP-call intents (regions)
errors.py    the ports' own errors; adapters translate vendor errors into them
platform.py  the typed Platform bootstrap.build assembles

Adapters live in adapters/ (grouped by technology); services and stages never see sqlite3,
botocore or kafka errors. Everything is importable from `chalicelib.ports` directly.
"""
from .bus import BusConsumer, BusRecord, EventBus, OutRecord
from .errors import AlreadyExists, AlreadyProcessed, AuditTampered, ConcurrencyConflict
from .leases import Intent, Lease, LeaseLost, Leases
from .outside import AuthorizeRequest, Clock, Connector, KeyService
from .platform import Platform, RateLimit
from .records import AuditPending, Changes, IdempotencyRecord, OutboxRecord, Posting, Reminder, ReportDelta
from .store import (
                    AuditLog,
                    AuditQueue,
                    ChangeFeed,
                    ControlRecords,
                    IdempotencyKeys,
                    Ledger,
                    Outbox,
                    PaymentReads,
                    Reminders,
                    ReportCounters,
                    RequestCounters,
                    Secrets,
                    Store,
                    TenantDirectory,
                    UnitOfWork,
)

__all__ = [
    "AlreadyExists", "AlreadyProcessed", "AuditLog", "AuditPending", "AuditQueue", "AuditTampered",
    "AuthorizeRequest", "BusConsumer", "BusRecord", "ChangeFeed", "Changes", "Clock", "ConcurrencyConflict",
    "Connector", "ControlRecords", "EventBus", "Intent", "Lease", "LeaseLost", "Leases", "IdempotencyKeys", "IdempotencyRecord", "KeyService", "Ledger",
    "OutRecord", "Outbox", "OutboxRecord", "PaymentReads", "Platform", "Posting", "RateLimit",
    "Reminder", "Reminders", "ReportCounters", "ReportDelta", "RequestCounters", "Secrets", "Store", "TenantDirectory",
    "UnitOfWork",
]
