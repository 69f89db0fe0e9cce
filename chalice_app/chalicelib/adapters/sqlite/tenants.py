"""Tenants, their hashed API keys and DLQ redrive marks on the embedded store (port TenantDirectory)."""
from __future__ import annotations

import sqlite3
from typing import Any, Sequence

import orjson

from ...ports import AlreadyExists
from .database import OnDatabase


class SqliteTenants(OnDatabase):
    def put_tenant(self, tenant: dict[str, Any]) -> None:
        with self.db.write() as conn:
            conn.execute("INSERT OR REPLACE INTO tenants VALUES (?, ?)", (tenant["tenant_id"], orjson.dumps(tenant)))

    def get_tenant(self, tenant_id: str) -> dict[str, Any] | None:
        row = self.db.conn().execute("SELECT body FROM tenants WHERE tenant_id=?", (tenant_id,)).fetchone()
        return orjson.loads(row[0]) if row else None

    def list_tenants(self) -> list[dict[str, Any]]:
        rows = self.db.conn().execute("SELECT body FROM tenants ORDER BY tenant_id").fetchall()
        return [orjson.loads(r[0]) for r in rows]

    def add_api_key(self, tenant_id: str, key_hash: str, prefix: str, at: str) -> None:
        try:
            with self.db.write() as conn:
                conn.execute("INSERT INTO api_keys VALUES (?, ?, ?, ?, NULL)", (key_hash, tenant_id, prefix, at))
        except sqlite3.IntegrityError:
            raise AlreadyExists("API key already registered") from None

    def tenant_for_key(self, key_hash: str) -> str | None:
        row = self.db.conn().execute("SELECT tenant_id FROM api_keys WHERE key_hash=? AND revoked_at IS NULL",
                                     (key_hash,)).fetchone()
        return row[0] if row else None

    def list_api_keys(self, tenant_id: str) -> list[dict[str, Any]]:
        rows = self.db.conn().execute("SELECT key_hash, prefix, created_at, revoked_at FROM api_keys"
                                      " WHERE tenant_id=? ORDER BY created_at, key_hash", (tenant_id,)).fetchall()
        return [{"key_hash": r[0], "prefix": r[1], "created_at": r[2], "revoked_at": r[3]} for r in rows]

    def revoke_api_key(self, key_hash: str, at: str) -> bool:
        with self.db.write() as conn:
            cur = conn.execute("UPDATE api_keys SET revoked_at=? WHERE key_hash=? AND revoked_at IS NULL",
                                (at, key_hash))
            return cur.rowcount == 1

    def mark_redriven(self, entry_ids: Sequence[str], at: str) -> None:
        with self.db.write() as conn:
            conn.executemany("INSERT OR IGNORE INTO dlq_redrives VALUES (?, ?)", [(i, at) for i in entry_ids])

    def redriven_ids(self) -> set[str]:
        return {r[0] for r in self.db.conn().execute("SELECT entry_id FROM dlq_redrives")}
