"""The embedded unit of work: a Changes written in one SQLite transaction (port UnitOfWork).

Payment (conditional on its version), timeline, audit rows, outbox events, processed marker,
ledger postings and balances, idempotency record, reminders and vault secrets: all or nothing.
Every row is built (serialized, hashed, audited) before the write lock is taken: the lock is
what every writer of the file waits for, so only the statements run while holding it.
"""
from __future__ import annotations

import sqlite3
import zlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import orjson

from ...audit.rows import rows_for
from ...codec import payment_json
from ...ports import AlreadyExists, AlreadyProcessed, Changes, ConcurrencyConflict
from .database import OnDatabase
from .idempotency import INSERT_IDEMPOTENCY, idempotency_row


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
    audit: list[tuple[str, str, bytes, str]] = field(default_factory=list)
    outbox: list[tuple[bytes, str]] = field(default_factory=list)
    postings: list[tuple[Any, ...]] = field(default_factory=list)
    idempotency: tuple[tuple[Any, ...], tuple[Any, ...]] | None = None  # (DELETE parameters, row)
    reminders: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    secrets: list[tuple[str, str, bytes]] = field(default_factory=list)
    region: str = ""


def _prepare(changes: Changes, region: str) -> _Unit:
    unit = _Unit(processed=changes.processed, secrets=list(changes.secrets), region=region)
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
        unit.audit = [(t, src, orjson.dumps(body), region) for t, src, body in rows_for(changes)]
    unit.outbox = [(orjson.dumps(e.stored()), region) for e in changes.events]
    unit.postings = [(x.txn_id, x.tenant_id, x.payment_id, x.account, x.currency, x.amount, x.batch, x.at)
                     for x in changes.postings]
    if changes.idempotency:
        r = changes.idempotency
        unit.idempotency = ((r.tenant_id, r.key, r.created_at, r.request_hash, r.created_at),
                            idempotency_row(r))
    unit.reminders = [("DELETE FROM reminders WHERE tenant_id=? AND payment_id=?", (rem.tenant_id, rem.payment_id))
                      if rem.due_at is None else
                      ("INSERT OR REPLACE INTO reminders VALUES (?, ?, ?, ?)",
                       (rem.tenant_id, rem.payment_id, rem.due_at, region))
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
        conn.executemany("INSERT INTO audit_pending (id, tenant_id, source, body, origin) VALUES (?, ?, ?, ?, ?)",
                         _numbered(conn, "audit_pending", unit.region, unit.audit))
    if unit.outbox:
        conn.executemany("INSERT INTO outbox (id, event, origin) VALUES (?, ?, ?)",
                         _numbered(conn, "outbox", unit.region, unit.outbox))
    if unit.postings:
        conn.executemany("INSERT INTO postings (id, txn_id, tenant_id, payment_id, account, currency, amount, batch, at)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", _numbered(conn, "postings", unit.region, unit.postings))
        # Balances are kept, not derived, so that `payctl ledger check` can prove they match.
        conn.executemany("INSERT INTO balances VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant_id, account, currency, region)"
                         " DO UPDATE SET balance = balance + excluded.balance",
                         [(tenant_id, account, currency, amount, unit.region)
                          for _, tenant_id, _, account, currency, amount, _, _ in unit.postings])
    if unit.idempotency:
        # Replaces our own in-flight claim (same request hash) or an expired record;
        # a live record of another request is a conflict.
        conn.execute("DELETE FROM idempotency WHERE tenant_id=? AND key=? AND (expires_at<=? OR"
                     " (state='in_flight' AND (request_hash=? OR locked_until<=?)))", unit.idempotency[0])
        conn.execute(INSERT_IDEMPOTENCY, unit.idempotency[1])
    for sql, params in unit.reminders:
        conn.execute(sql, params)
    for row in unit.secrets:
        conn.execute("INSERT INTO vault VALUES (?, ?, ?)", row)


ID_SPAN = 10 ** 8  # each region numbers its outbox, audit and posting rows in a range of its own


def id_base(region: str) -> int:
    """Where `region`'s row ids start. Rows keep their ids when another region's store receives them
    (laptop/replicator.py), so two regions must never hand out the same id; and a region counts on
    from its own last id, not from a copied row's (which AUTOINCREMENT would do).

    Ids stay at 12 digits: a 13-19 digit run that passes Luhn is what the PAN scans look for."""
    return (zlib.crc32(region.encode()) % 9000 + 1000) * ID_SPAN


def _numbered(conn: sqlite3.Connection, table: str, region: str, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """`rows` with the next ids of `region`'s range in `table` in front (under the write lock).

    The last id handed out is kept (id_counters), as AUTOINCREMENT keeps it: rows are deleted once
    done with (the outbox's prune), and an id used again would sit behind a change-feed reader's
    position and never be read."""
    row = conn.execute("SELECT last FROM id_counters WHERE name=? AND region=?", (table, region)).fetchone()
    if row is None:  # first use: on from the highest id of the range (a store from before counters)
        base = id_base(region)
        (top,) = conn.execute(f"SELECT MAX(id) FROM {table} WHERE id >= ? AND id < ?",
                              (base, base + ID_SPAN)).fetchone()
        last = top or base
    else:
        last = row[0]
    conn.execute("INSERT INTO id_counters VALUES (?, ?, ?) ON CONFLICT (name, region) DO UPDATE SET last = excluded.last",
                 (table, region, last + len(rows)))
    return [(last + 1 + i, *r) for i, r in enumerate(rows)]


class SqliteUnitOfWork(OnDatabase):
    def commit(self, changes: Changes) -> None:
        """Write state, timeline, audit rows, outbox, dedupe marker, ledger and idempotency at once."""
        unit = _prepare(changes, self.region)
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
        units = [_prepare(changes, self.region) for changes in batch]
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
