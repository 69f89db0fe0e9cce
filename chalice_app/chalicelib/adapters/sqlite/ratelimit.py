"""Shared rate-limit counters (port RequestCounters) in a side file without fsync: a power cut
may lose counts, never payments."""
from __future__ import annotations

from .database import OnDatabase


class SqliteRequestCounters(OnDatabase):
    def count_request(self, tenant_id: str, window: int, limit: int, expires_at: int) -> bool:
        with self.db.write() as conn:
            cur = conn.execute("INSERT INTO rate_windows VALUES (?, ?, 1, ?) ON CONFLICT (tenant_id, win)"
                               " DO UPDATE SET n = n + 1 WHERE n < ?", (tenant_id, window, expires_at, limit))
            if window % 64 == 0:  # now and then, forget windows long gone
                conn.execute("DELETE FROM rate_windows WHERE expires_at < ?", (expires_at - 3600,))
            return cur.rowcount == 1
