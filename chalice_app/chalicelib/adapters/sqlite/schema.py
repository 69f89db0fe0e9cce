"""The embedded store's tables: one SQLite file (WAL) for every store concern, a side file for
rate-limit counters. Keys begin with the tenant id, as in the DynamoDB single-table design, so a
read with another tenant's id finds nothing rather than being filtered after.

The change feed: DynamoDB has a stream beside the table; SQLite has the outbox. Every committed
event sits there until (a) the relay has published it and (b) every feed reader (the reporting
consumer) has read past it: a small, durable change log with one position per reader, as a
stream shard has one iterator per consumer. With no reader registered, published rows go at once.
"""
from __future__ import annotations

import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS payments (
    tenant_id TEXT NOT NULL, payment_id TEXT NOT NULL, version INTEGER NOT NULL,
    status TEXT NOT NULL, customer_id TEXT, created_at TEXT NOT NULL, body BLOB NOT NULL,
    PRIMARY KEY (tenant_id, payment_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS payments_by_status ON payments (tenant_id, status, payment_id);
CREATE INDEX IF NOT EXISTS payments_by_customer ON payments (tenant_id, customer_id, created_at);
CREATE TABLE IF NOT EXISTS correlations (
    tenant_id TEXT NOT NULL, correlation_id TEXT NOT NULL, payment_id TEXT NOT NULL,
    PRIMARY KEY (tenant_id, correlation_id, payment_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS timeline (
    tenant_id TEXT NOT NULL, payment_id TEXT NOT NULL, seq INTEGER NOT NULL, at TEXT NOT NULL,
    action TEXT NOT NULL, from_state TEXT NOT NULL, to_state TEXT NOT NULL, stage TEXT NOT NULL,
    detail BLOB NOT NULL, PRIMARY KEY (tenant_id, payment_id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, event BLOB NOT NULL, published INTEGER NOT NULL DEFAULT 0,
    origin TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS processed (
    consumer TEXT NOT NULL, event_id TEXT NOT NULL, PRIMARY KEY (consumer, event_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idempotency (
    tenant_id TEXT NOT NULL, key TEXT NOT NULL, request_hash TEXT NOT NULL, status_code INTEGER NOT NULL,
    response BLOB NOT NULL, headers BLOB NOT NULL, expires_at INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'completed', locked_until INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reminders (
    tenant_id TEXT NOT NULL, payment_id TEXT NOT NULL, due_at TEXT NOT NULL, origin TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (tenant_id, payment_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS reminders_due ON reminders (due_at);
CREATE TABLE IF NOT EXISTS control (name TEXT PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS postings (
    id INTEGER PRIMARY KEY AUTOINCREMENT, txn_id TEXT NOT NULL, tenant_id TEXT NOT NULL,
    payment_id TEXT NOT NULL, account TEXT NOT NULL, currency TEXT NOT NULL, amount INTEGER NOT NULL,
    batch TEXT NOT NULL, at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS postings_by_tenant ON postings (tenant_id, account, currency);
CREATE TABLE IF NOT EXISTS balances (
    tenant_id TEXT NOT NULL, account TEXT NOT NULL, currency TEXT NOT NULL, balance INTEGER NOT NULL,
    region TEXT NOT NULL DEFAULT '', PRIMARY KEY (tenant_id, account, currency, region)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS vault (
    tenant_id TEXT NOT NULL, token TEXT NOT NULL, ciphertext BLOB NOT NULL,
    PRIMARY KEY (tenant_id, token)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tenants (tenant_id TEXT PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS api_keys (
    key_hash TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, prefix TEXT NOT NULL,
    created_at TEXT NOT NULL, revoked_at TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_pending (
    id INTEGER PRIMARY KEY AUTOINCREMENT, tenant_id TEXT NOT NULL, source TEXT NOT NULL, body BLOB NOT NULL,
    origin TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS audit_pending_by_tenant ON audit_pending (tenant_id);
CREATE TABLE IF NOT EXISTS dlq_redrives (entry_id TEXT PRIMARY KEY, at TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS id_counters (name TEXT NOT NULL, region TEXT NOT NULL, last INTEGER NOT NULL,
    PRIMARY KEY (name, region)) WITHOUT ROWID;
"""

FEED_SCHEMA = (
    "CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (id) WHERE published = 0",
    "CREATE TABLE IF NOT EXISTS feed_readers (reader TEXT PRIMARY KEY, position INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS report_counters (tenant_id TEXT NOT NULL, name TEXT NOT NULL,"
    " value INTEGER NOT NULL, region TEXT NOT NULL DEFAULT '', PRIMARY KEY (tenant_id, name, region)) WITHOUT ROWID",
)
# This region's published rows below every reader's position are done with (no reader: all its
# published rows). Another region's rows (replicated) go when that region deletes them.
PRUNE = ("DELETE FROM outbox WHERE published = 1 AND origin IN (?, '') AND id <="
         " COALESCE((SELECT MIN(position) FROM feed_readers), 9223372036854775807)")
# Counters two regions add to are one row per region, summed on read (replicated last-writer-wins
# would lose one region's additions to a shared row): stores from before regions are rebuilt so.
_PER_REGION = {
    "balances": ("tenant_id TEXT NOT NULL, account TEXT NOT NULL, currency TEXT NOT NULL, balance INTEGER NOT NULL,"
                 " region TEXT NOT NULL DEFAULT '', PRIMARY KEY (tenant_id, account, currency, region)",
                 "tenant_id, account, currency, balance"),
    "report_counters": ("tenant_id TEXT NOT NULL, name TEXT NOT NULL, value INTEGER NOT NULL,"
                        " region TEXT NOT NULL DEFAULT '', PRIMARY KEY (tenant_id, name, region)",
                        "tenant_id, name, value"),
}


def migrate(conn: sqlite3.Connection) -> None:
    """Stores made before the feed existed lack outbox.published: add it (every row was unpublished).
    Stores made before regions lack the origin of outbox and audit rows: '' (read as the reader's own).

    Runs inside a write transaction, so two processes opening an old file migrate it once."""
    columns = {r[1] for r in conn.execute("PRAGMA table_info(outbox)")}
    if "published" not in columns:
        conn.execute("ALTER TABLE outbox ADD COLUMN published INTEGER NOT NULL DEFAULT 0")
    if "origin" not in columns:
        conn.execute("ALTER TABLE outbox ADD COLUMN origin TEXT NOT NULL DEFAULT ''")
    for table in ("audit_pending", "reminders"):
        if "origin" not in {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN origin TEXT NOT NULL DEFAULT ''")
    for statement in FEED_SCHEMA:
        conn.execute(statement)
    for table, (columns, kept) in _PER_REGION.items():
        if "region" not in {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}:
            conn.execute(f"CREATE TABLE {table}_by_region ({columns}) WITHOUT ROWID")
            conn.execute(f"INSERT INTO {table}_by_region ({kept}, region) SELECT {kept}, '' FROM {table}")
            conn.execute(f"DROP TABLE {table}")
            conn.execute(f"ALTER TABLE {table}_by_region RENAME TO {table}")


RATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS rate_windows (tenant_id TEXT NOT NULL, win INTEGER NOT NULL, n INTEGER NOT NULL,
    expires_at INTEGER NOT NULL, PRIMARY KEY (tenant_id, win)) WITHOUT ROWID;
"""
