"""Small store concerns on the embedded store: reminders (Reminders), control records
(ControlRecords) and vault ciphertexts (Secrets). Commits set and clear reminders and write secrets."""
from __future__ import annotations

from typing import Any

import orjson

from ...ports import Reminder
from .database import OnDatabase


class SqliteReminders(OnDatabase):
    def due_reminders(self, now: str, limit: int) -> list[Reminder]:
        """Due reminders this region set ('' : from before regions), earliest first."""
        rows = self.db.conn().execute("SELECT tenant_id, payment_id, due_at FROM reminders WHERE due_at<=?"
                                      " AND origin IN (?, '') ORDER BY due_at LIMIT ?",
                                      (now, self.region, limit)).fetchall()
        return [Reminder(*r) for r in rows]


class SqliteControls(OnDatabase):
    """A region's own control records (its breakers): kept per region, as in the global table."""

    def get_control(self, name: str) -> dict[str, Any] | None:
        row = self.db.conn().execute("SELECT body FROM control WHERE name=?", (f"{name}@{self.region}",)).fetchone()
        return orjson.loads(row[0]) if row else None

    def put_control(self, name: str, value: dict[str, Any]) -> None:
        with self.db.write() as conn:
            conn.execute("INSERT OR REPLACE INTO control VALUES (?, ?)", (f"{name}@{self.region}", orjson.dumps(value)))


class SqliteSecrets(OnDatabase):
    def get_secret(self, tenant_id: str, token: str) -> bytes | None:
        row = self.db.conn().execute("SELECT ciphertext FROM vault WHERE tenant_id=? AND token=?",
                                     (tenant_id, token)).fetchone()
        return row[0] if row else None
