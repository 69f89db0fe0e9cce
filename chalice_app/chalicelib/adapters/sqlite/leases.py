"""Leases on one SQLite file shared by the regions of a laptop (`make local REGIONS=2`): it stands
in for the strongly consistent control table, since every region reads and writes the same file
and a conditional UPDATE there is checked against everyone at once."""
from __future__ import annotations

from pathlib import Path

from ...ports import Intent, Lease, LeaseLost
from .database import SqliteDatabase

SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (home TEXT PRIMARY KEY, owner TEXT NOT NULL, epoch INTEGER NOT NULL,
    expires_at REAL NOT NULL, handback_to TEXT NOT NULL DEFAULT '') WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS intents (payment_id TEXT NOT NULL, kind TEXT NOT NULL, tenant_id TEXT NOT NULL,
    home TEXT NOT NULL, psp TEXT NOT NULL, idempotency_key TEXT NOT NULL, epoch INTEGER NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (payment_id, kind)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS intents_by_home ON intents (home);
"""
_COLUMNS = "home, owner, epoch, expires_at, handback_to"


class SqliteLeases:
    def __init__(self, path: Path | str):
        self.db = SqliteDatabase(path, SCHEMA)

    def read(self, home: str) -> Lease | None:
        row = self.db.conn().execute(f"SELECT {_COLUMNS} FROM leases WHERE home=?", (home,)).fetchone()
        return Lease(*row) if row else None

    def all(self) -> list[Lease]:
        return [Lease(*r) for r in self.db.conn().execute(f"SELECT {_COLUMNS} FROM leases ORDER BY home")]

    def acquire(self, home: str, owner: str, now: float, ttl_s: float, skew_s: float) -> Lease:
        with self.db.write() as conn:
            row = conn.execute("SELECT owner, epoch, expires_at FROM leases WHERE home=?", (home,)).fetchone()
            if row is not None and row[2] + skew_s > now:
                raise LeaseLost(f"{home}'s lease is {row[0]}'s (epoch {row[1]}) until {row[2]:.3f} + {skew_s:g} s skew")
            lease = Lease(home, owner, (row[1] if row else 0) + 1, now + ttl_s)
            conn.execute("INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?, '')",
                         (home, owner, lease.epoch, lease.expires_at))
        return lease

    def renew(self, lease: Lease, now: float, ttl_s: float) -> Lease:
        with self.db.write() as conn:
            row = conn.execute("SELECT handback_to FROM leases WHERE home=? AND owner=? AND epoch=? AND expires_at>?",
                               (lease.home, lease.owner, lease.epoch, now)).fetchone()
            if row is None:
                raise LeaseLost(f"{lease.home}'s lease (epoch {lease.epoch}) is no longer {lease.owner}'s to renew")
            conn.execute("UPDATE leases SET expires_at=? WHERE home=?", (now + ttl_s, lease.home))
        return Lease(lease.home, lease.owner, lease.epoch, now + ttl_s, row[0])

    def release(self, lease: Lease, now: float) -> None:
        with self.db.write() as conn:
            if conn.execute("UPDATE leases SET expires_at=? WHERE home=? AND owner=? AND epoch=?",
                            (now, lease.home, lease.owner, lease.epoch)).rowcount == 0:
                raise LeaseLost(f"{lease.home}'s lease (epoch {lease.epoch}) is no longer {lease.owner}'s")

    def ask_back(self, home: str, region: str) -> None:
        with self.db.write() as conn:
            conn.execute("UPDATE leases SET handback_to=? WHERE home=? AND owner<>?", (region, home, region))

    def put_intent(self, intent: Intent) -> None:
        with self.db.write() as conn:
            conn.execute("INSERT OR REPLACE INTO intents VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (intent.payment_id, intent.kind, intent.tenant_id, intent.home, intent.psp,
                          intent.idempotency_key, intent.epoch, intent.at))

    def intents(self, home: str) -> list[Intent]:
        rows = self.db.conn().execute("SELECT payment_id, tenant_id, home, psp, idempotency_key, kind, epoch, at"
                                      " FROM intents WHERE home=? ORDER BY at", (home,))
        return [Intent(*r) for r in rows]

    def clear_intent(self, home: str, payment_id: str) -> None:
        with self.db.write(durable=False) as conn:  # a lost clear only costs one more status check
            conn.execute("DELETE FROM intents WHERE payment_id=?", (payment_id,))

    def close(self) -> None:
        self.db.close()
