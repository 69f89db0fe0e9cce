"""API idempotency keys on the embedded store (port IdempotencyKeys)."""
from __future__ import annotations

import orjson

from ...ports import IdempotencyRecord
from .database import OnDatabase

INSERT_IDEMPOTENCY = ("INSERT INTO idempotency (tenant_id, key, request_hash, status_code, response, headers,"
                      " expires_at, state, locked_until, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
SELECT_IDEMPOTENCY = ("SELECT tenant_id, key, request_hash, status_code, response, headers, expires_at,"
                      " created_at, state, locked_until FROM idempotency WHERE tenant_id=? AND key=?")


def idempotency_row(r: IdempotencyRecord) -> tuple:
    """The record as the idempotency table's row (also written by a commit, unit_of_work.py)."""
    return (r.tenant_id, r.key, r.request_hash, r.status_code, r.response, orjson.dumps(r.headers),
            r.expires_at, r.state, r.locked_until, r.created_at)


def _record(row: tuple) -> IdempotencyRecord:
    return IdempotencyRecord(row[0], row[1], row[2], row[3], row[4], orjson.loads(row[5]), *row[6:])


class SqliteIdempotency(OnDatabase):
    def get_idempotency(self, tenant_id: str, key: str, now: int) -> IdempotencyRecord | None:
        row = self.db.conn().execute(SELECT_IDEMPOTENCY + " AND expires_at>?", (tenant_id, key, now)).fetchone()
        return _record(row) if row else None

    def claim_idempotency(self, record: IdempotencyRecord) -> IdempotencyRecord | None:
        now = record.created_at
        # No fsync of its own: a claim guards concurrent requests while they run. The request's
        # answer waits for its durable commit, which syncs the claim with it; a claim lost to a
        # power cut belongs to a request that was never answered, and its retry claims again.
        with self.db.write(durable=False) as conn:
            row = conn.execute(SELECT_IDEMPOTENCY, (record.tenant_id, record.key)).fetchone()
            if row:
                found = _record(row)
                live = found.expires_at > now and (found.state == "completed" or found.locked_until > now)
                if live:
                    return found
                conn.execute("DELETE FROM idempotency WHERE tenant_id=? AND key=?", (record.tenant_id, record.key))
            conn.execute(INSERT_IDEMPOTENCY, idempotency_row(record))
        return None

    def release_idempotency(self, tenant_id: str, key: str, request_hash: str) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM idempotency WHERE tenant_id=? AND key=? AND state='in_flight'"
                         " AND request_hash=?", (tenant_id, key, request_hash))

    def purge_expired_idempotency(self, now: int) -> int:
        with self.db.write() as conn:
            return conn.execute("DELETE FROM idempotency WHERE expires_at<=?", (now,)).rowcount
