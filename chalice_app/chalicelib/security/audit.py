"""Append-only, hash-chained audit log per tenant, and the check behind `payctl audit verify`.

Entry n of a tenant stores its body (seq, tenant, time, actor, action, subject,
correlation id, detail) and hash_n = SHA-256(hash_{n-1} || canonical body), with
hash_0 = 64 zeros. Editing a body breaks its hash; removing an entry leaves a gap
in seq (or a chain that no longer links); swapping two entries puts each body's
seq at the other's place. A head record (last seq and hash per tenant) catches a
removed tail. verify() names the first entry that does not hold.

Embedded mode keeps the log in its own SQLite file (`$DATA_DIR/audit.db`) whose
triggers refuse UPDATE and DELETE, so only someone editing the file can change it
-- which is what verify detects.
"""
from __future__ import annotations

import getpass
import hashlib
import os
import threading
from pathlib import Path
from typing import Any

import orjson

from ..adapters.sqlite_base import SqliteDatabase
from ..clock import iso

GENESIS = "0" * 64
SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    tenant_id TEXT NOT NULL, seq INTEGER NOT NULL, body BLOB NOT NULL, hash TEXT NOT NULL,
    PRIMARY KEY (tenant_id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_heads (tenant_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, hash TEXT NOT NULL)
    WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
"""


def chain_hash(previous: str, body: bytes) -> str:
    return hashlib.sha256(previous.encode() + body).hexdigest()


def canonical(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


class SqliteAuditLog:
    def __init__(self, path: Path | str):
        self.db = SqliteDatabase(path, SCHEMA)

    def append(self, tenant_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Add the tenant's next entry (seq and hash assigned here, in one write transaction)."""
        with self.db.write() as conn:
            row = conn.execute("SELECT seq, hash FROM audit_heads WHERE tenant_id=?", (tenant_id,)).fetchone()
            seq, previous = (row[0] + 1, row[1]) if row else (1, GENESIS)
            entry = {**body, "tenant_id": tenant_id, "seq": seq}
            raw = canonical(entry)
            digest = chain_hash(previous, raw)
            conn.execute("INSERT INTO audit VALUES (?, ?, ?, ?)", (tenant_id, seq, raw, digest))
            conn.execute("INSERT OR REPLACE INTO audit_heads VALUES (?, ?, ?)", (tenant_id, seq, digest))
        return {**entry, "hash": digest}

    def rows(self, tenant_id: str) -> list[tuple[int, bytes, str]]:
        """(seq, body, hash) in stored seq order."""
        return self.db.conn().execute("SELECT seq, body, hash FROM audit WHERE tenant_id=? ORDER BY seq",
                                      (tenant_id,)).fetchall()

    def head(self, tenant_id: str) -> tuple[int, str] | None:
        row = self.db.conn().execute("SELECT seq, hash FROM audit_heads WHERE tenant_id=?", (tenant_id,)).fetchone()
        return (row[0], row[1]) if row else None

    def tenants(self) -> list[str]:
        rows = self.db.conn().execute("SELECT tenant_id FROM audit UNION SELECT tenant_id FROM audit_heads"
                                      " ORDER BY 1").fetchall()
        return [r[0] for r in rows]


def verify_tenant(log: SqliteAuditLog, tenant_id: str) -> dict[str, Any]:
    """{"tenant_id", "entries", "ok", "problem"}: the first entry that breaks the chain, named."""
    previous, expected = GENESIS, 1
    rows = log.rows(tenant_id)
    for seq, raw, stored in rows:
        where = f"entry {seq}"
        if seq != expected:
            return _bad(tenant_id, len(rows), seq, f"entry {expected} is missing (next stored entry is {seq})")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _bad(tenant_id, len(rows), seq, f"{where} is not readable")
        if body.get("seq") != seq or body.get("tenant_id") != tenant_id:
            return _bad(tenant_id, len(rows), seq, f"{where} holds entry {body.get('seq')} of "
                        f"{body.get('tenant_id')}: entries were moved or reordered")
        digest = chain_hash(previous, raw)
        if digest != stored:
            return _bad(tenant_id, len(rows), seq, f"{where} was altered (its hash does not match its content)")
        previous, expected = digest, expected + 1
    head = log.head(tenant_id)
    if head is not None and (head[0] != expected - 1 or head[1] != previous):
        return _bad(tenant_id, len(rows), expected, f"entries after {expected - 1} were removed "
                    f"(the head says {head[0]} entries)")
    return {"tenant_id": tenant_id, "entries": len(rows), "ok": True, "problem": None, "entry": None}


def _bad(tenant_id: str, n: int, seq: int, problem: str) -> dict[str, Any]:
    return {"tenant_id": tenant_id, "entries": n, "ok": False, "problem": problem, "entry": seq}


_lock = threading.Lock()


def audit_log(platform: Any) -> SqliteAuditLog:
    """The platform's audit log (embedded: $DATA_DIR/audit.db), made on first use."""
    with _lock:
        log = getattr(platform, "audit_log", None)
        if log is None:
            log = SqliteAuditLog(platform.settings.data_dir / "audit.db")
            platform.audit_log = log
        return log


def actor() -> str:
    """Who runs payctl: the OS user (admin actions only happen through payctl)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"payctl:{user}"


def record(platform: Any, tenant_id: str, action: str, subject: str | None = None, *,
           who: str | None = None, correlation_id: str | None = None, **detail: Any) -> dict[str, Any]:
    """Append one entry: who did what to which subject, when, under which correlation id."""
    return audit_log(platform).append(tenant_id, {
        "at": iso(platform.clock.now()), "actor": who or actor(), "action": action, "subject": subject,
        "correlation_id": correlation_id or f"corr_admin_{os.urandom(8).hex()}", "detail": detail})
