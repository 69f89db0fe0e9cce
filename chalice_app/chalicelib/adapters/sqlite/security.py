"""SqliteStore's security rows: state-change audit rows awaiting the chainer, shared rate-limit counters.

The audit rows live in the store's own file (table audit_pending, written by
SqliteStore.commit in the payment's transaction); the rate-limit counters in a
side file without fsync (a power cut may lose counts, never payments).
"""
from __future__ import annotations

from typing import Any, Sequence

import orjson

from ...ports import AuditPending

RATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS rate_windows (tenant_id TEXT NOT NULL, win INTEGER NOT NULL, n INTEGER NOT NULL,
    expires_at INTEGER NOT NULL, PRIMARY KEY (tenant_id, win)) WITHOUT ROWID;
"""


class SecurityRows:
    db: Any  # SqliteDatabase of the store
    rates: Any  # SqliteDatabase of the rate-limit counters

    # -- shared rate limit ----------------------------------------------------------------
    def count_request(self, tenant_id: str, window: int, limit: int, expires_at: int) -> bool:
        with self.rates.write() as conn:
            cur = conn.execute("INSERT INTO rate_windows VALUES (?, ?, 1, ?) ON CONFLICT (tenant_id, win)"
                               " DO UPDATE SET n = n + 1 WHERE n < ?", (tenant_id, window, expires_at, limit))
            if window % 64 == 0:  # now and then, forget windows long gone
                conn.execute("DELETE FROM rate_windows WHERE expires_at < ?", (expires_at - 3600,))
            return cur.rowcount == 1

    # -- state-change audit rows (chained by security/audit.chain_pending) ------------------
    def pending_audit(self, limit: int) -> list[AuditPending]:
        rows = self.db.conn().execute("SELECT id, tenant_id, source, body FROM audit_pending ORDER BY id LIMIT ?",
                                      (limit,)).fetchall()
        return [AuditPending(r[0], r[1], r[2], orjson.loads(r[3])) for r in rows]

    def mark_audited(self, ids: Sequence[int]) -> None:
        # No fsync of its own: rows whose deletion a power cut undid are chained already, and
        # the chainer skips them by source.
        with self.db.write(durable=False) as conn:
            conn.executemany("DELETE FROM audit_pending WHERE id=?", [(i,) for i in ids])

    def pending_audit_count(self, tenant_id: str) -> int:
        (n,) = self.db.conn().execute("SELECT COUNT(*) FROM audit_pending WHERE tenant_id=?",
                                      (tenant_id,)).fetchone()
        return n
