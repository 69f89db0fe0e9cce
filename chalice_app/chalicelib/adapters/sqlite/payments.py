"""Reads of payments and their timelines on the embedded store (port PaymentReads)."""
from __future__ import annotations

from typing import Any

import orjson

from ...domain.payment import Payment
from ..cursors import decode_cursor, encode_cursor
from .database import OnDatabase


class SqlitePayments(OnDatabase):
    def get_payment(self, tenant_id: str, payment_id: str) -> Payment | None:
        row = self.db.conn().execute("SELECT body FROM payments WHERE tenant_id=? AND payment_id=?",
                                     (tenant_id, payment_id)).fetchone()
        return Payment.from_dict(orjson.loads(row[0])) if row else None

    def list_payments(self, tenant_id: str, status: str | None, limit: int,
                      cursor: str | None) -> tuple[list[Payment], str | None]:
        after = decode_cursor(cursor) if cursor else "\uffff"
        sql = "SELECT body FROM payments WHERE tenant_id=? AND payment_id<?"
        args: list[Any] = [tenant_id, after]
        if status:
            sql += " AND status=?"
            args.append(status)
        rows = self.db.conn().execute(sql + " ORDER BY payment_id DESC LIMIT ?", (*args, limit + 1)).fetchall()
        page = [Payment.from_dict(orjson.loads(r[0])) for r in rows[:limit]]
        return page, (encode_cursor(page[-1].payment_id) if len(rows) > limit else None)

    def timeline(self, tenant_id: str, payment_id: str) -> list[dict[str, Any]]:
        rows = self.db.conn().execute(
            "SELECT seq, at, action, from_state, to_state, stage, detail FROM timeline"
            " WHERE tenant_id=? AND payment_id=? ORDER BY seq", (tenant_id, payment_id)).fetchall()
        return [{"seq": r[0], "at": r[1], "action": r[2], "from": r[3], "to": r[4], "stage": r[5],
                 "detail": orjson.loads(r[6])} for r in rows]

    def payments_by_correlation(self, tenant_id: str, correlation_id: str, limit: int = 100) -> list[str]:
        rows = self.db.conn().execute(
            "SELECT payment_id FROM correlations WHERE tenant_id=? AND correlation_id=? ORDER BY payment_id LIMIT ?",
            (tenant_id, correlation_id, limit)).fetchall()
        return [r[0] for r in rows]

    def count_recent_payments(self, tenant_id: str, customer_id: str, since: str) -> int:
        (n,) = self.db.conn().execute(
            "SELECT COUNT(*) FROM payments WHERE tenant_id=? AND customer_id=? AND created_at>=?",
            (tenant_id, customer_id, since)).fetchone()
        return n
