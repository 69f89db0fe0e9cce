"""The outbox and the change feed on the embedded store (ports Outbox and ChangeFeed).

The relay publishes unpublished rows and marks them; the feed's readers (the reporting
consumer) pull every committed event after their position. A row goes once it is published
and every registered reader is past it (schema.PRUNE).
"""
from __future__ import annotations

from typing import Any, Sequence

import orjson

from ...domain.events import Event
from ...ports import OutboxRecord
from .database import OnDatabase
from .schema import PRUNE


class SqliteOutbox(OnDatabase):
    def pending_outbox(self, limit: int, origin: str | None = None) -> list[OutboxRecord]:
        # Only what this region wrote ('' : rows from before regions): another region's rows are
        # that region's to publish.
        rows = self.db.conn().execute("SELECT id, event FROM outbox WHERE published = 0 AND origin IN (?, '')"
                                      " ORDER BY id LIMIT ?", (origin or self.region, limit)).fetchall()
        return [OutboxRecord(r[0], Event.from_dict(orjson.loads(r[1]))) for r in rows]

    def mark_published(self, ids: Sequence[int], origin: str | None = None) -> None:
        # No fsync of its own: a mark lost to a power cut only publishes the events again, and
        # consumers drop duplicates by event id.
        with self.db.write(durable=False) as conn:
            conn.executemany("UPDATE outbox SET published = 1 WHERE id=?", [(i,) for i in ids])
            conn.execute(PRUNE, (self.region,))  # kept only while a change-feed reader still needs them


class SqliteChangeFeed(OnDatabase):
    """Pulled by named readers; nothing is pushed, so outbox_in finds nothing."""

    def outbox_in(self, records: Sequence[dict[str, Any]]) -> list[OutboxRecord]:
        """No stream records exist embedded."""
        return []

    def read(self, reader: str, limit: int) -> list[OutboxRecord]:
        """Committed events this region wrote after `reader`'s position, oldest first (published or not)."""
        conn = self.db.conn()
        row = conn.execute("SELECT position FROM feed_readers WHERE reader=?", (reader,)).fetchone()
        rows = conn.execute("SELECT id, event FROM outbox WHERE id > ? AND origin IN (?, '') ORDER BY id LIMIT ?",
                            (row[0] if row else 0, self.region, limit)).fetchall()
        return [OutboxRecord(r[0], Event.from_dict(orjson.loads(r[1]))) for r in rows]

    def advance(self, reader: str, position: int) -> None:
        """`reader` is done with every change up to `position` (registers the reader on first use)."""
        with self.db.write() as conn:
            conn.execute("INSERT INTO feed_readers VALUES (?, ?) ON CONFLICT (reader)"
                         " DO UPDATE SET position = MAX(position, excluded.position)", (reader, position))
            conn.execute(PRUNE, (self.region,))

    def register(self, reader: str) -> None:
        """Keep changes for `reader` from now on (those already pruned are gone)."""
        with self.db.write() as conn:
            conn.execute("INSERT OR IGNORE INTO feed_readers VALUES (?, 0)", (reader,))
