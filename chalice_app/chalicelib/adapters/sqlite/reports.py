"""Per-tenant report counters on the embedded store (port ReportCounters): each delta's processed
marker and the counters it adds are written in one transaction, so a change counts once."""
from __future__ import annotations

from typing import Sequence

from ...ports import ReportDelta
from .database import OnDatabase


class SqliteReports(OnDatabase):
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
                "INSERT INTO report_counters VALUES (?, ?, ?, ?) ON CONFLICT (tenant_id, name, region)"
                " DO UPDATE SET value = value + excluded.value",
                [(tenant_id, name, n, self.region) for (tenant_id, name), n in totals.items() if n])
        return applied

    def report_counters(self, tenant_id: str) -> dict[str, int]:
        rows = self.db.conn().execute("SELECT name, SUM(value) FROM report_counters WHERE tenant_id=?"
                                      " GROUP BY name ORDER BY name", (tenant_id,))
        return {name: value for name, value in rows}
