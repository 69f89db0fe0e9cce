"""AuditLog on its own SQLite file ($DATA_DIR/audit.db in embedded mode).

Triggers refuse UPDATE and DELETE of entries, so only someone editing the file
can change them -- which `payctl audit verify` detects (services/audit.py).
Column tenant_id holds the chain's name: "<tenant>@<region>" (audit/chain.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import orjson

from ...audit.chain import Head, HeadSigner, chain_name, link, split_chain
from ...config import DEFAULTS, PLATFORM_REGION
from ...ports import AuditPending
from .database import OnDatabase, SqliteDatabase

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    tenant_id TEXT NOT NULL, seq INTEGER NOT NULL, body BLOB NOT NULL, hash TEXT NOT NULL,
    PRIMARY KEY (tenant_id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_heads (tenant_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, hash TEXT NOT NULL,
    mac TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_sources (tenant_id TEXT NOT NULL, source TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, source)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_meta (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
"""


class SqliteAuditLog:
    def __init__(self, path: Path | str, signer: HeadSigner, region: str = DEFAULTS[PLATFORM_REGION]):
        self.db = SqliteDatabase(path, SCHEMA)
        self.signer, self.region = signer, region
        columns = {r[1] for r in self.db.conn().execute("PRAGMA table_info(audit_heads)")}
        if "mac" not in columns:  # a log from before heads were signed: its heads fail verify until re-made
            with self.db.write() as conn:
                conn.execute("ALTER TABLE audit_heads ADD COLUMN mac TEXT")

    def append(self, tenant_id: str, entries: Sequence[tuple[str | None, dict[str, Any]]]) -> list[dict[str, Any]]:
        self.signer.ready()
        tenant_id, chain = tenant_id, chain_name(tenant_id, self.region)
        with self.db.write() as conn:
            row = conn.execute("SELECT seq, hash, mac FROM audit_heads WHERE tenant_id=?", (chain,)).fetchone()
            sources = [s for s, _ in entries if s is not None]
            chained = {r[0] for r in conn.execute(  # one lookup for the batch, not one per entry
                "SELECT source FROM audit_sources WHERE tenant_id=? AND source IN (SELECT value FROM json_each(?))",
                (chain, orjson.dumps(sources)))} if sources else set()
            todo = [(s, b) for s, b in entries if s is None or s not in chained]
            if not todo:
                return []
            linked, (seq, digest, mac) = link(tenant_id, tuple(row) if row else None, todo, self.signer, self.region)
            conn.executemany("INSERT INTO audit VALUES (?, ?, ?, ?)",
                             [(chain, e["seq"], e["raw"], e["hash"]) for e in linked])
            conn.executemany("INSERT INTO audit_sources VALUES (?, ?, ?)",
                             [(chain, e["source"], e["seq"]) for e in linked if e["source"]])
            conn.execute("INSERT OR REPLACE INTO audit_heads VALUES (?, ?, ?, ?)", (chain, seq, digest, mac))
        return [e["entry"] for e in linked]

    def _chain(self, tenant_id: str, region: str | None) -> str:
        return chain_name(tenant_id, self.region if region is None else region)

    def rows(self, tenant_id: str, region: str | None = None) -> list[tuple[int, bytes, str]]:
        return self.db.conn().execute("SELECT seq, body, hash FROM audit WHERE tenant_id=? ORDER BY seq",
                                      (self._chain(tenant_id, region),)).fetchall()

    def head(self, tenant_id: str, region: str | None = None) -> Head | None:
        row = self.db.conn().execute("SELECT seq, hash, mac FROM audit_heads WHERE tenant_id=?",
                                     (self._chain(tenant_id, region),)).fetchone()
        return (row[0], row[1], row[2]) if row else None

    def _chains(self) -> list[tuple[str, str]]:
        rows = self.db.conn().execute("SELECT tenant_id FROM audit UNION SELECT tenant_id FROM audit_heads").fetchall()
        return sorted(split_chain(r[0]) for r in rows)

    def tenants(self) -> list[str]:
        return sorted({t for t, _ in self._chains()})

    def regions(self, tenant_id: str) -> list[str]:
        return [r for t, r in self._chains() if t == tenant_id]

    def meta(self, name: str) -> bytes | None:
        row = self.db.conn().execute("SELECT value FROM audit_meta WHERE name=?", (name,)).fetchone()
        return bytes(row[0]) if row else None

    def put_meta_if_absent(self, name: str, value: bytes) -> bytes:
        with self.db.write() as conn:
            conn.execute("INSERT OR IGNORE INTO audit_meta VALUES (?, ?)", (name, value))
            (stored,) = conn.execute("SELECT value FROM audit_meta WHERE name=?", (name,)).fetchone()
        return bytes(stored)

    def close(self) -> None:
        self.db.close()


class SqliteAuditQueue(OnDatabase):
    """State-change audit rows in the store's own file (table audit_pending, written by the unit of
    work in the payment's transaction), waiting for the chainer (services/audit.py) to chain them."""

    def pending_audit(self, limit: int) -> list[AuditPending]:
        rows = self.db.conn().execute("SELECT id, tenant_id, source, body FROM audit_pending"
                                      " WHERE origin IN (?, '') ORDER BY id LIMIT ?", (self.region, limit)).fetchall()
        return [AuditPending(r[0], r[1], r[2], orjson.loads(r[3])) for r in rows]

    def mark_audited(self, ids: Sequence[int]) -> None:
        # No fsync of its own: rows whose deletion a power cut undid are chained already, and
        # the chainer skips them by source.
        with self.db.write(durable=False) as conn:
            conn.executemany("DELETE FROM audit_pending WHERE id=?", [(i,) for i in ids])

    def pending_audit_count(self, tenant_id: str) -> int:
        (n,) = self.db.conn().execute("SELECT COUNT(*) FROM audit_pending WHERE tenant_id=? AND origin IN (?, '')",
                                      (tenant_id, self.region)).fetchone()
        return n
