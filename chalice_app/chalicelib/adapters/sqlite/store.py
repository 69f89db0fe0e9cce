"""The embedded store: every store concern on one SQLite file (schema.py), as one Store.

Each concern is its own small adapter over the shared database (unit_of_work.py, payments.py,
idempotency.py, control.py, ledger.py, outbox.py, reports.py, audit.py, tenants.py); a commit
spans them in one transaction. Rate-limit counters live in a side file without fsync.
"""
from __future__ import annotations

from pathlib import Path

from ...config import DEFAULTS, PLATFORM_REGION
from ...ports import Store
from .audit import SqliteAuditQueue
from .control import SqliteControls, SqliteReminders, SqliteSecrets
from .database import SqliteDatabase
from .idempotency import SqliteIdempotency
from .ledger import SqliteLedger
from .outbox import SqliteChangeFeed, SqliteOutbox
from .payments import SqlitePayments
from .ratelimit import SqliteRequestCounters
from .reports import SqliteReports
from .schema import RATE_SCHEMA, SCHEMA, migrate
from .tenants import SqliteTenants
from .unit_of_work import SqliteUnitOfWork


def open_store(path: Path | str, region: str = DEFAULTS[PLATFORM_REGION]) -> Store:
    """The store in `path` (created and migrated if need be), its rate counters beside it, as
    `region` writes and reads it."""
    db = SqliteDatabase(path, SCHEMA)
    with db.write() as conn:
        migrate(conn)
    # Rate-limit counters: a write per API request, so a file of their own without fsync.
    rates = SqliteDatabase(Path(path).with_name(Path(path).stem + "-ratelimit.db"), RATE_SCHEMA, "OFF")
    return Store(unit_of_work=SqliteUnitOfWork(db, region), payments=SqlitePayments(db),
                 idempotency=SqliteIdempotency(db), reminders=SqliteReminders(db, region),
                 controls=SqliteControls(db, region), secrets=SqliteSecrets(db), ledger=SqliteLedger(db),
                 outbox=SqliteOutbox(db, region), feed=SqliteChangeFeed(db, region), reports=SqliteReports(db, region),
                 requests=SqliteRequestCounters(rates), audit_queue=SqliteAuditQueue(db, region),
                 tenants=SqliteTenants(db))
