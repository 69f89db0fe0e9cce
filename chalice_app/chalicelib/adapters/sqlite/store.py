"""Embedded PaymentStore + TenantDirectory on one SQLite file (WAL).

Keys begin with the tenant id, as in the DynamoDB single-table design, so a
read with another tenant's id finds nothing rather than being filtered after.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import orjson

from ...audit.rows import rows_for
from ...codec import payment_json
from ...domain.events import Event
from ...domain.payment import Payment
from ...ports import (
    AlreadyExists,
    AlreadyProcessed,
    Changes,
    ConcurrencyConflict,
    IdempotencyRecord,
    OutboxRecord,
    Reminder,
)
from ..cursors import decode_cursor, encode_cursor
from .database import SqliteDatabase
from .feed import PRUNE, SqliteFeed, migrate
from .security import RATE_SCHEMA, SecurityRows

SCHEMA = """
CREATE TABLE IF NOT EXISTS payments (
    tenant_id TEXT NOT NULL, payment_id TEXT NOT NULL, version INTEGER NOT NULL,
    status TEXT NOT NULL, customer_id TEXT, created_at TEXT NOT NULL, body BLOB NOT NULL,
    PRIMARY KEY (tenant_id, payment_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS payments_by_status ON payments (tenant_id, status, payment_id);
CREATE INDEX IF NOT EXISTS payments_by_customer ON payments (tenant_id, customer_id, created_at);
CREATE TABLE IF NOT EXISTS correlations (
    tenant_id TEXT NOT NULL, correlation_id TEXT NOT NULL, payment_id TEXT NOT NULL,
    PRIMARY KEY (tenant_id, correlation_id, payment_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS timeline (
    tenant_id TEXT NOT NULL, payment_id TEXT NOT NULL, seq INTEGER NOT NULL, at TEXT NOT NULL,
    action TEXT NOT NULL, from_state TEXT NOT NULL, to_state TEXT NOT NULL, stage TEXT NOT NULL,
    detail BLOB NOT NULL, PRIMARY KEY (tenant_id, payment_id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, event BLOB NOT NULL, published INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS processed (
    consumer TEXT NOT NULL, event_id TEXT NOT NULL, PRIMARY KEY (consumer, event_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idempotency (
    tenant_id TEXT NOT NULL, key TEXT NOT NULL, request_hash TEXT NOT NULL, status_code INTEGER NOT NULL,
    response BLOB NOT NULL, headers BLOB NOT NULL, expires_at INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'completed', locked_until INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reminders (
    tenant_id TEXT NOT NULL, payment_id TEXT NOT NULL, due_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, payment_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS reminders_due ON reminders (due_at);
CREATE TABLE IF NOT EXISTS control (name TEXT PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS postings (
    id INTEGER PRIMARY KEY AUTOINCREMENT, txn_id TEXT NOT NULL, tenant_id TEXT NOT NULL,
    payment_id TEXT NOT NULL, account TEXT NOT NULL, currency TEXT NOT NULL, amount INTEGER NOT NULL,
    batch TEXT NOT NULL, at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS postings_by_tenant ON postings (tenant_id, account, currency);
CREATE TABLE IF NOT EXISTS balances (
    tenant_id TEXT NOT NULL, account TEXT NOT NULL, currency TEXT NOT NULL, balance INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, account, currency)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS vault (
    tenant_id TEXT NOT NULL, token TEXT NOT NULL, ciphertext BLOB NOT NULL,
    PRIMARY KEY (tenant_id, token)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tenants (tenant_id TEXT PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS api_keys (
    key_hash TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, prefix TEXT NOT NULL,
    created_at TEXT NOT NULL, revoked_at TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_pending (
    id INTEGER PRIMARY KEY AUTOINCREMENT, tenant_id TEXT NOT NULL, source TEXT NOT NULL, body BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS audit_pending_by_tenant ON audit_pending (tenant_id);
CREATE TABLE IF NOT EXISTS dlq_redrives (entry_id TEXT PRIMARY KEY, at TEXT NOT NULL) WITHOUT ROWID;
"""


def _translate(e: sqlite3.IntegrityError) -> Exception:
    if e.sqlite_errorname in ("SQLITE_CONSTRAINT_PRIMARYKEY", "SQLITE_CONSTRAINT_UNIQUE"):
        return AlreadyExists(str(e))
    return e  # a NOT NULL or CHECK failure is a bug, not a duplicate


def _committed(changes: Changes) -> None:
    p = changes.payment
    if p is not None:
        p.version = (changes.expected_version or 0) + 1
        p.pending_timeline.clear()


@dataclass
class _Unit:
    """One Changes as the rows it writes, built outside the write lock."""
    processed: tuple[str, str] | None = None
    payment: tuple[Any, ...] | None = None  # INSERT row (created) or UPDATE parameters
    created: bool = False
    correlation: tuple[str, str, str] | None = None
    timeline: list[tuple[Any, ...]] = field(default_factory=list)  # rows without their seq
    audit: list[tuple[str, str, bytes]] = field(default_factory=list)
    outbox: list[tuple[bytes]] = field(default_factory=list)
    postings: list[tuple[Any, ...]] = field(default_factory=list)
    idempotency: tuple[tuple[Any, ...], tuple[Any, ...]] | None = None  # (DELETE parameters, row)
    reminders: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    secrets: list[tuple[str, str, bytes]] = field(default_factory=list)


def _prepare(changes: Changes) -> _Unit:
    unit = _Unit(processed=changes.processed, secrets=list(changes.secrets))
    p = changes.payment
    if p is not None:
        expected = changes.expected_version
        body = changes.payment_body or payment_json(p, (expected or 0) + 1)
        if expected is None:
            unit.created = True
            unit.payment = (p.tenant_id, p.payment_id, p.status, (p.customer or {}).get("id"), p.created_at, body)
            unit.correlation = (p.tenant_id, p.correlation_id, p.payment_id)
        else:
            unit.payment = (expected + 1, p.status, body, p.tenant_id, p.payment_id, expected)
        unit.timeline = [(p.tenant_id, p.payment_id, t.at, t.action, t.from_state, t.to_state, t.stage,
                          orjson.dumps(t.detail)) for t in p.pending_timeline]
        unit.audit = [(t, src, orjson.dumps(body)) for t, src, body in rows_for(changes)]
    unit.outbox = [(orjson.dumps(e.stored()),) for e in changes.events]
    unit.postings = [(x.txn_id, x.tenant_id, x.payment_id, x.account, x.currency, x.amount, x.batch, x.at)
                     for x in changes.postings]
    if changes.idempotency:
        r = changes.idempotency
        unit.idempotency = ((r.tenant_id, r.key, r.created_at, r.request_hash, r.created_at),
                            SqliteStore._idempotency_row(r))
    unit.reminders = [("DELETE FROM reminders WHERE tenant_id=? AND payment_id=?", (rem.tenant_id, rem.payment_id))
                      if rem.due_at is None else
                      ("INSERT OR REPLACE INTO reminders VALUES (?, ?, ?)", (rem.tenant_id, rem.payment_id, rem.due_at))
                      for rem in changes.reminders]
    return unit


def _execute(conn: sqlite3.Connection, unit: _Unit) -> None:
    if unit.processed:
        cur = conn.execute("INSERT OR IGNORE INTO processed VALUES (?, ?)", unit.processed)
        if cur.rowcount == 0:
            raise AlreadyProcessed(f"{unit.processed[0]} already processed {unit.processed[1]}")
    if unit.payment is not None:
        if unit.created:
            conn.execute("INSERT INTO payments VALUES (?, ?, 1, ?, ?, ?, ?)", unit.payment)
            conn.execute("INSERT INTO correlations VALUES (?, ?, ?)", unit.correlation)
        elif conn.execute("UPDATE payments SET version=?, status=?, body=? WHERE tenant_id=? AND payment_id=?"
                          " AND version=?", unit.payment).rowcount == 0:
            raise ConcurrencyConflict(f"payment {unit.payment[4]} changed since version {unit.payment[5]}")
        if unit.timeline:  # each entry numbered after the payment's last (a statement per entry, not two)
            conn.executemany("INSERT INTO timeline SELECT ?1, ?2, COALESCE(MAX(seq), 0) + 1, ?3, ?4, ?5, ?6, ?7, ?8"
                             " FROM timeline WHERE tenant_id=?1 AND payment_id=?2", unit.timeline)
        conn.executemany("INSERT INTO audit_pending (tenant_id, source, body) VALUES (?, ?, ?)", unit.audit)
    if unit.outbox:
        conn.executemany("INSERT INTO outbox (event) VALUES (?)", unit.outbox)
    if unit.postings:
        conn.executemany("INSERT INTO postings (txn_id, tenant_id, payment_id, account, currency, amount, batch, at)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", unit.postings)
        # Balances are kept, not derived, so that `payctl ledger check` can prove they match.
        conn.executemany("INSERT INTO balances VALUES (?, ?, ?, ?) ON CONFLICT (tenant_id, account, currency)"
                         " DO UPDATE SET balance = balance + excluded.balance",
                         [(tenant_id, account, currency, amount)
                          for _, tenant_id, _, account, currency, amount, _, _ in unit.postings])
    if unit.idempotency:
        # Replaces our own in-flight claim (same request hash) or an expired record;
        # a live record of another request is a conflict.
        conn.execute("DELETE FROM idempotency WHERE tenant_id=? AND key=? AND (expires_at<=? OR"
                     " (state='in_flight' AND (request_hash=? OR locked_until<=?)))", unit.idempotency[0])
        conn.execute(SqliteStore._INSERT_IDEMPOTENCY, unit.idempotency[1])
    for sql, params in unit.reminders:
        conn.execute(sql, params)
    for row in unit.secrets:
        conn.execute("INSERT INTO vault VALUES (?, ?, ?)", row)


class SqliteStore(SqliteFeed, SecurityRows):
    def __init__(self, path: Path | str):
        self.db = SqliteDatabase(path, SCHEMA)
        with self.db.write() as conn:
            migrate(conn)
        # Rate-limit counters: a write per API request, so a file of their own without fsync.
        self.rates = SqliteDatabase(Path(path).with_name(Path(path).stem + "-ratelimit.db"), RATE_SCHEMA, "OFF")

    # -- unit of work ------------------------------------------------------------
    # Every row is built (serialized, hashed, audited) before the write lock is taken: the lock
    # is what every writer of the file waits for, so only the statements run while holding it.
    def commit(self, changes: Changes) -> None:
        """Write state, timeline, audit rows, outbox, dedupe marker, ledger and idempotency at once."""
        unit = _prepare(changes)
        try:
            with self.db.write() as conn:
                _execute(conn, unit)
        except sqlite3.IntegrityError as e:
            raise _translate(e) from None
        _committed(changes)

    def commit_many(self, batch: Sequence[Changes]) -> list[Exception | None]:
        """Several units of work in one transaction: one fsync for the lot.

        Each unit still commits all or nothing, in order, inside its own savepoint:
        one that fails (already processed, a version conflict, a duplicate) is rolled
        back alone and its error is returned in its slot (None: committed). Savepoints
        are taken only when needed: the batch is first written without them (the usual
        case, every unit commits), and only if a unit fails is the whole transaction
        rolled back and written again, unit by unit."""
        units = [_prepare(changes) for changes in batch]
        try:
            with self.db.write() as conn:
                for unit in units:
                    _execute(conn, unit)
            results: list[Exception | None] = [None] * len(units)
        except (AlreadyProcessed, ConcurrencyConflict, sqlite3.IntegrityError):
            results = self._commit_units(units)
        for changes, error in zip(batch, results):
            if error is None:
                _committed(changes)
        return results

    def _commit_units(self, units: list[_Unit]) -> list[Exception | None]:
        """Each unit in its own savepoint: one that fails is rolled back alone."""
        results: list[Exception | None] = []
        with self.db.write() as conn:
            for unit in units:
                conn.execute("SAVEPOINT unit")
                try:
                    _execute(conn, unit)
                except (AlreadyProcessed, ConcurrencyConflict, sqlite3.IntegrityError) as e:
                    conn.execute("ROLLBACK TO unit")
                    results.append(_translate(e) if isinstance(e, sqlite3.IntegrityError) else e)
                else:
                    results.append(None)
                conn.execute("RELEASE unit")
        return results

    # -- reads -------------------------------------------------------------------------
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

    _INSERT_IDEMPOTENCY = ("INSERT INTO idempotency (tenant_id, key, request_hash, status_code, response, headers,"
                           " expires_at, state, locked_until, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
    _SELECT_IDEMPOTENCY = ("SELECT tenant_id, key, request_hash, status_code, response, headers, expires_at,"
                           " created_at, state, locked_until FROM idempotency WHERE tenant_id=? AND key=?")

    @staticmethod
    def _idempotency_row(r: IdempotencyRecord) -> tuple:
        return (r.tenant_id, r.key, r.request_hash, r.status_code, r.response, orjson.dumps(r.headers),
                r.expires_at, r.state, r.locked_until, r.created_at)

    @staticmethod
    def _idempotency_record(row: tuple) -> IdempotencyRecord:
        return IdempotencyRecord(row[0], row[1], row[2], row[3], row[4], orjson.loads(row[5]), *row[6:])

    def get_idempotency(self, tenant_id: str, key: str, now: int) -> IdempotencyRecord | None:
        row = self.db.conn().execute(self._SELECT_IDEMPOTENCY + " AND expires_at>?", (tenant_id, key, now)).fetchone()
        return self._idempotency_record(row) if row else None

    def claim_idempotency(self, record: IdempotencyRecord) -> IdempotencyRecord | None:
        now = record.created_at
        # No fsync of its own: a claim guards concurrent requests while they run. The request's
        # answer waits for its durable commit, which syncs the claim with it; a claim lost to a
        # power cut belongs to a request that was never answered, and its retry claims again.
        with self.db.write(durable=False) as conn:
            row = conn.execute(self._SELECT_IDEMPOTENCY, (record.tenant_id, record.key)).fetchone()
            if row:
                found = self._idempotency_record(row)
                live = found.expires_at > now and (found.state == "completed" or found.locked_until > now)
                if live:
                    return found
                conn.execute("DELETE FROM idempotency WHERE tenant_id=? AND key=?", (record.tenant_id, record.key))
            conn.execute(self._INSERT_IDEMPOTENCY, self._idempotency_row(record))
        return None

    def release_idempotency(self, tenant_id: str, key: str, request_hash: str) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM idempotency WHERE tenant_id=? AND key=? AND state='in_flight'"
                         " AND request_hash=?", (tenant_id, key, request_hash))

    def due_reminders(self, now: str, limit: int) -> list[Reminder]:
        rows = self.db.conn().execute("SELECT tenant_id, payment_id, due_at FROM reminders WHERE due_at<=?"
                                      " ORDER BY due_at LIMIT ?", (now, limit)).fetchall()
        return [Reminder(*r) for r in rows]

    def get_control(self, name: str) -> dict[str, Any] | None:
        row = self.db.conn().execute("SELECT body FROM control WHERE name=?", (name,)).fetchone()
        return orjson.loads(row[0]) if row else None

    def put_control(self, name: str, value: dict[str, Any]) -> None:
        with self.db.write() as conn:
            conn.execute("INSERT OR REPLACE INTO control VALUES (?, ?)", (name, orjson.dumps(value)))

    def purge_expired_idempotency(self, now: int) -> int:
        with self.db.write() as conn:
            return conn.execute("DELETE FROM idempotency WHERE expires_at<=?", (now,)).rowcount

    def get_secret(self, tenant_id: str, token: str) -> bytes | None:
        row = self.db.conn().execute("SELECT ciphertext FROM vault WHERE tenant_id=? AND token=?",
                                     (tenant_id, token)).fetchone()
        return row[0] if row else None

    def balances(self, tenant_id: str) -> list[dict[str, Any]]:
        rows = self.db.conn().execute(
            "SELECT account, currency, balance FROM balances WHERE tenant_id=? ORDER BY account, currency",
            (tenant_id,)).fetchall()
        return [{"account": r[0], "currency": r[1], "balance": r[2]} for r in rows]

    def ledger_drift(self) -> list[dict[str, Any]]:
        rows = self.db.conn().execute(
            "SELECT tenant_id, account, currency, b.balance, p.total FROM"
            " (SELECT tenant_id, account, currency, balance FROM balances) b"
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

    # -- outbox ------------------------------------------------------------------------
    def pending_outbox(self, limit: int) -> list[OutboxRecord]:
        rows = self.db.conn().execute("SELECT id, event FROM outbox WHERE published = 0 ORDER BY id LIMIT ?",
                                      (limit,)).fetchall()
        return [OutboxRecord(r[0], Event.from_dict(orjson.loads(r[1]))) for r in rows]

    def mark_published(self, ids: Sequence[int]) -> None:
        # No fsync of its own: a mark lost to a power cut only publishes the events again, and
        # consumers drop duplicates by event id.
        with self.db.write(durable=False) as conn:
            conn.executemany("UPDATE outbox SET published = 1 WHERE id=?", [(i,) for i in ids])
            conn.execute(PRUNE)  # kept only while a change-feed reader still needs them

    # -- tenants -----------------------------------------------------------------------
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
