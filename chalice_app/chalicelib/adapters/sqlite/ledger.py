"""The double-entry ledger on the embedded store (port Ledger): balances are kept with each
posting, not derived, so that `payctl ledger check` can prove they match."""
from __future__ import annotations

from typing import Any

from .database import OnDatabase


class SqliteLedger(OnDatabase):
    def balances(self, tenant_id: str) -> list[dict[str, Any]]:
        rows = self.db.conn().execute(  # one row per region that posted: the balance is their sum
            "SELECT account, currency, SUM(balance) FROM balances WHERE tenant_id=? GROUP BY account, currency"
            " ORDER BY account, currency", (tenant_id,)).fetchall()
        return [{"account": r[0], "currency": r[1], "balance": r[2]} for r in rows]

    def ledger_drift(self) -> list[dict[str, Any]]:
        rows = self.db.conn().execute(
            "SELECT tenant_id, account, currency, b.balance, p.total FROM"
            " (SELECT tenant_id, account, currency, SUM(balance) AS balance FROM balances"
            "  GROUP BY tenant_id, account, currency) b"
            " FULL OUTER JOIN (SELECT tenant_id, account, currency, SUM(amount) AS total FROM postings"
            "                  GROUP BY tenant_id, account, currency) p USING (tenant_id, account, currency)"
            " WHERE b.balance IS NOT p.total").fetchall()
        return [{"tenant_id": r[0], "account": r[1], "currency": r[2], "balance": r[3], "postings_sum": r[4]}
                for r in rows]

    def ledger_totals(self) -> list[dict[str, Any]]:
        rows = self.db.conn().execute(
            "SELECT txn_id, currency, SUM(amount), COUNT(*) FROM postings GROUP BY txn_id, currency").fetchall()
        return [{"txn_id": r[0], "currency": r[1], "sum": r[2], "legs": r[3]} for r in rows]

    def postings_for(self, tenant_id: str, payment_id: str) -> list[dict[str, Any]]:
        rows = self.db.conn().execute(
            "SELECT txn_id, account, currency, amount, batch, at FROM postings WHERE tenant_id=? AND payment_id=?"
            " ORDER BY id", (tenant_id, payment_id)).fetchall()
        return [dict(zip(("txn_id", "account", "currency", "amount", "batch", "at"), r)) for r in rows]
