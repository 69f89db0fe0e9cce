"""The embedded change feed and the report counters, on the SqliteStore's file.

DynamoDB has a stream beside the table; SQLite has the outbox. Every committed
event sits there until (a) the relay has published it and (b) every feed
reader (the reporting consumer) has read past it: a small, durable change log
with one position per reader, as a stream shard has one iterator per consumer.
With no reader registered, published rows go at once, as before.
"""
from __future__ import annotations

import sqlite3
from typing import Any, Sequence

import orjson

from ...domain.events import Event
from ...ports import OutboxRecord, ReportDelta

FEED_SCHEMA = (
    "CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (id) WHERE published = 0",
    "CREATE TABLE IF NOT EXISTS feed_readers (reader TEXT PRIMARY KEY, position INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS report_counters (tenant_id TEXT NOT NULL, name TEXT NOT NULL,"
    " value INTEGER NOT NULL, PRIMARY KEY (tenant_id, name)) WITHOUT ROWID",
)
# Published rows below every reader's position are done with; no reader: all published rows.
PRUNE = ("DELETE FROM outbox WHERE published = 1 AND id <="
         " COALESCE((SELECT MIN(position) FROM feed_readers), 9223372036854775807)")


def migrate(conn: sqlite3.Connection) -> None:
    """Stores made before the feed existed lack outbox.published: add it (every row was unpublished).

    Runs inside a write transaction, so two processes opening an old file migrate it once."""
    columns = {r[1] for r in conn.execute("PRAGMA table_info(outbox)")}
    if "published" not in columns:
        conn.execute("ALTER TABLE outbox ADD COLUMN published INTEGER NOT NULL DEFAULT 0")
    for statement in FEED_SCHEMA:
        conn.execute(statement)


class SqliteFeed:
    """Mixed into SqliteStore (self.db is its SqliteDatabase)."""

    db: Any

    # -- the change feed (embedded only: in AWS modes the table's stream is the feed) -------------
    def change_feed(self, reader: str, limit: int) -> list[OutboxRecord]:
        """Committed events after `reader`'s position, oldest first (published or not)."""
        conn = self.db.conn()
        row = conn.execute("SELECT position FROM feed_readers WHERE reader=?", (reader,)).fetchone()
        rows = conn.execute("SELECT id, event FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                            (row[0] if row else 0, limit)).fetchall()
        return [OutboxRecord(r[0], Event.from_dict(orjson.loads(r[1]))) for r in rows]

    def advance_feed(self, reader: str, position: int) -> None:
        """`reader` is done with every change up to `position` (registers the reader on first use)."""
        with self.db.write() as conn:
            conn.execute("INSERT INTO feed_readers VALUES (?, ?) ON CONFLICT (reader)"
                         " DO UPDATE SET position = MAX(position, excluded.position)", (reader, position))
            conn.execute(PRUNE)

    def register_feed_reader(self, reader: str) -> None:
        """Keep changes for `reader` from now on (those already pruned are gone)."""
        with self.db.write() as conn:
            conn.execute("INSERT OR IGNORE INTO feed_readers VALUES (?, 0)", (reader,))

    # -- report counters -----------------------------------------------------------------------
    def apply_report(self, consumer: str, deltas: Sequence[ReportDelta]) -> int:
        """All deltas in one transaction; the processed marker decides whether each one counts."""
        applied = 0
        totals: dict[tuple[str, str], int] = {}
        with self.db.write() as conn:
            for d in deltas:
                if conn.execute("INSERT OR IGNORE INTO processed VALUES (?, ?)", (consumer, d.change_id)).rowcount == 0:
                    continue  # already counted: redelivery
                applied += 1
                for name, n in d.counters.items():
                    totals[(d.tenant_id, name)] = totals.get((d.tenant_id, name), 0) + n
            # One upsert per counter for the whole batch, in the markers' transaction.
            conn.executemany(
                "INSERT INTO report_counters VALUES (?, ?, ?) ON CONFLICT (tenant_id, name)"
                " DO UPDATE SET value = value + excluded.value",
                [(tenant_id, name, n) for (tenant_id, name), n in totals.items() if n])
        return applied

    def report_counters(self, tenant_id: str) -> dict[str, int]:
        rows = self.db.conn().execute("SELECT name, value FROM report_counters WHERE tenant_id=? ORDER BY name",
                                      (tenant_id,))
        return {name: value for name, value in rows}


class SqliteChangeFeed:
    """ChangeFeed on the embedded store: pulled by named readers (the store's outbox rows, kept
    until every registered reader is past them); nothing is pushed, so outbox_in finds nothing."""

    def __init__(self, store: Any):
        self.store = store

    def outbox_in(self, records: Sequence[dict[str, Any]]) -> list[OutboxRecord]:
        """No stream records exist embedded."""
        return []

    def read(self, reader: str, limit: int) -> list[OutboxRecord]:
        """Committed events after `reader`'s position, oldest first (published or not)."""
        return self.store.change_feed(reader, limit)

    def advance(self, reader: str, position: int) -> None:
        """`reader` is done with every change up to `position`."""
        self.store.advance_feed(reader, position)
