"""Two regions on one laptop: what DynamoDB global tables and MSK Replicator do between AWS regions.

Each region's store is its own SQLite file. enable() puts change capture into a store: triggers
note every write of a replicated table (table, primary key, time, writing region) in `_changes`,
and keep each row's (time, region) in `_row_clock`. A Replicator copies each noted row from one
store to the other as it is now, item by item, last writer wins on (time, region) -- as global
tables settle conflicts -- after a configurable lag. It can hold a direction back (a partition) and
drop a window of changes (a region lost before it replicated them). It also mirrors the source
region's bus topics into the other region's bus under the source's prefix ("<region>.<topic>"), as
MSK Replicator does; nothing consumes the mirrors (a region taking over re-drives from the store).

Nothing in chalicelib knows about this: the triggers live in the store file, and a replicated
row is written with the triggers told to stand aside (`_repl_applying`), so it is never sent back.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("payments.replicator")

# The tables a global table would hold (every store table) except what is each region's own:
# feed_readers (a stream's position belongs to its reader), control (breakers, checkpoints),
# id_counters (the ids a region handed out in its own range).
LOCAL_ONLY = {"feed_readers", "control", "id_counters"}
NOW = "((julianday('now') - 2440587.5) * 86400.0)"


def _tables(conn: sqlite3.Connection) -> dict[str, list[str]]:
    """{table: its primary-key columns} of the store's replicated tables."""
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
             if not r[0].startswith(("_", "sqlite_")) and r[0] not in LOCAL_ONLY]
    out = {}
    for name in names:
        cols = sorted((r[5], r[1]) for r in conn.execute(f"PRAGMA table_info({name})") if r[5])
        if cols:
            out[name] = [c for _, c in cols]
    return out


def enable(db_path: Path | str, region: str) -> None:
    """Change capture in the store at `db_path` (made by open_store first), written as `region`. Idempotent."""
    conn = sqlite3.connect(db_path, timeout=30)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("CREATE TABLE IF NOT EXISTS _changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL,"
                     " pk TEXT NOT NULL, ts REAL NOT NULL, origin TEXT NOT NULL)")
        conn.execute("CREATE TABLE IF NOT EXISTS _row_clock (tbl TEXT NOT NULL, pk TEXT NOT NULL, ts REAL NOT NULL,"
                     " origin TEXT NOT NULL, PRIMARY KEY (tbl, pk)) WITHOUT ROWID")
        conn.execute("CREATE TABLE IF NOT EXISTS _repl_applying (one INTEGER PRIMARY KEY)")
        for table, pk in _tables(conn).items():
            for op, row in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")):
                key = "json_array(" + ", ".join(f"{row}.{c}" for c in pk) + ")"
                conn.execute(
                    f"CREATE TRIGGER IF NOT EXISTS _repl_{table}_{op.lower()} AFTER {op} ON {table}"
                    f" WHEN NOT EXISTS (SELECT 1 FROM _repl_applying) BEGIN"
                    f" INSERT INTO _changes (tbl, pk, ts, origin) VALUES ('{table}', {key}, {NOW}, '{region}');"
                    # Delete + insert, not INSERT OR REPLACE: an outer statement's conflict policy
                    # (an upsert's) overrides the one of a statement inside its trigger.
                    f" DELETE FROM _row_clock WHERE tbl = '{table}' AND pk = {key};"
                    f" INSERT INTO _row_clock VALUES ('{table}', {key}, {NOW}, '{region}'); END")
        conn.execute("COMMIT")
    finally:
        conn.close()


@dataclass
class Link:
    """One direction: source region's store and bus -> target region's."""
    source: str
    target: str
    src_store: Path
    dst_store: Path
    src_bus: Path | None = None
    dst_bus: Path | None = None
    cursor: int = 0
    bus_cursor: dict[tuple[str, int], int] = field(default_factory=dict)
    held: bool = False  # a partition: nothing goes across until released
    drop_until: float = 0.0  # changes noted before this time are lost (the region died with them)
    copied: int = 0
    skipped: int = 0  # older than what the target has (last writer wins)
    dropped: int = 0
    mirrored: int = 0


class Replicator:
    def __init__(self, links: list[Link], lag_s: float = 0.0, batch: int = 500):
        self.links, self.lag_s, self.batch = links, lag_s, batch
        self._conns: dict[str, sqlite3.Connection] = {}
        self._buses: dict[str, Any] = {}
        self._schema: dict[str, dict[str, tuple[list[str], list[str]]]] = {}  # store -> table -> (key, columns)

    def _conn(self, path: Path) -> sqlite3.Connection:
        conn = self._conns.get(str(path))
        if conn is None:
            conn = self._conns[str(path)] = sqlite3.connect(path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def step(self) -> int:
        """Copy what is due on every link; returns how many rows moved."""
        return sum(self._store_step(link) + self._bus_step(link) for link in self.links if not link.held)

    def _store_step(self, link: Link) -> int:
        src, dst = self._conn(link.src_store), self._conn(link.dst_store)
        due = time.time() - self.lag_s
        changes = src.execute("SELECT seq, tbl, pk, ts, origin FROM _changes WHERE seq > ? AND ts <= ?"
                              " ORDER BY seq LIMIT ?", (link.cursor, due, self.batch)).fetchall()
        if not changes:
            return 0
        tables = self._tables(link.src_store, src)
        dst.execute("BEGIN IMMEDIATE")
        try:
            dst.execute("INSERT OR IGNORE INTO _repl_applying VALUES (1)")
            for seq, tbl, pk, ts, origin in changes:
                if ts < link.drop_until:
                    link.dropped += 1
                    continue
                if origin != link.source:  # the target's own write, noted here when it replicated: skip
                    continue
                have = dst.execute("SELECT ts, origin FROM _row_clock WHERE tbl=? AND pk=?", (tbl, pk)).fetchone()
                if have is not None and (have[0], have[1]) >= (ts, origin):
                    link.skipped += 1
                    continue
                pk_columns, columns = tables[tbl]
                where = " AND ".join(f"{c}=?" for c in pk_columns)
                key = json.loads(pk)
                row = src.execute(f"SELECT {', '.join(columns)} FROM {tbl} WHERE {where}", key).fetchone()
                dst.execute(f"DELETE FROM {tbl} WHERE {where}", key)
                if row is not None:  # the item as it is now in the source (a later change may follow)
                    dst.execute(f"INSERT INTO {tbl} ({', '.join(columns)}) VALUES ({', '.join('?' * len(row))})", row)
                dst.execute("INSERT OR REPLACE INTO _row_clock VALUES (?, ?, ?, ?)", (tbl, pk, ts, origin))
                link.copied += 1
            dst.execute("DELETE FROM _repl_applying")
            dst.execute("COMMIT")
        except BaseException:
            dst.execute("ROLLBACK")
            raise
        link.cursor = changes[-1][0]
        return len(changes)

    def _bus_step(self, link: Link) -> int:
        """MSK Replicator: the source's topics into the target's bus as <source>.<topic>."""
        if link.src_bus is None or link.dst_bus is None:
            return 0
        from chalicelib.ports import OutRecord  # noqa: PLC0415
        src = self._conn(link.src_bus)
        moved = 0
        for topic, partition, head in src.execute("SELECT topic, partition, next_offset FROM heads").fetchall():
            if topic.split(".", 1)[0] != "payments":  # a mirror (<region>.payments...) is never mirrored on
                continue
            at = link.bus_cursor.get((topic, partition), 0)
            if head <= at:
                continue
            rows = src.execute("SELECT offset, key, value, headers FROM log WHERE topic=? AND partition=? AND offset>=?"
                               " ORDER BY offset LIMIT ?", (topic, partition, at, self.batch)).fetchall()
            if not rows:
                continue
            headers = [tuple((k, v.encode("latin-1")) for k, v in json.loads(r[3])) for r in rows]
            self._target_bus(link.dst_bus).publish([OutRecord(f"{link.source}.{topic}", r[1], r[2], h)
                                                    for r, h in zip(rows, headers)])
            link.bus_cursor[(topic, partition)] = rows[-1][0] + 1
            moved += len(rows)
            link.mirrored += len(rows)
        return moved

    def _target_bus(self, path: Path) -> Any:
        from chalicelib.adapters.sqlite.bus import SqliteBus  # noqa: PLC0415
        bus = self._buses.get(str(path))
        if bus is None:
            bus = self._buses[str(path)] = SqliteBus(path)
        return bus

    def _tables(self, path: Path, conn: sqlite3.Connection) -> dict[str, tuple[list[str], list[str]]]:
        """{table: (key columns, all columns)} of a store, read once (its schema is made before enable())."""
        schema = self._schema.get(str(path))
        if schema is None:
            schema = self._schema[str(path)] = {
                t: (pk, [r[1] for r in conn.execute(f"PRAGMA table_info({t})")]) for t, pk in _tables(conn).items()}
        return schema

    def status(self) -> list[dict[str, Any]]:
        return [{"from": k.source, "to": k.target, "held": k.held, "copied": k.copied, "skipped": k.skipped,
                 "dropped": k.dropped, "mirrored": k.mirrored, "cursor": k.cursor} for k in self.links]


def main(argv: list[str] | None = None) -> int:
    """`python -m laptop.replicator --region NAME=DATA_DIR --region NAME=DATA_DIR [--lag-s S]`."""
    ap = argparse.ArgumentParser(prog="laptop.replicator", description=__doc__.split("\n\n")[0])
    ap.add_argument("--region", action="append", required=True, metavar="NAME=DATA_DIR")
    ap.add_argument("--lag-s", type=float, default=0.2, help="copy a change this long after it was made")
    ap.add_argument("--status", type=Path, help="write link figures to this JSON file now and then")
    args = ap.parse_args(argv)
    regions = dict(r.split("=", 1) for r in args.region)
    if len(regions) != 2:
        ap.error("give exactly two --region NAME=DATA_DIR")
    (a, da), (b, db) = ((n, Path(d)) for n, d in regions.items())
    links = [Link(a, b, da / "store.db", db / "store.db", da / "bus.db", db / "bus.db"),
             Link(b, a, db / "store.db", da / "store.db", db / "bus.db", da / "bus.db")]
    rep = Replicator(links, lag_s=args.lag_s)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    last = 0.0
    while not stop.is_set():
        try:
            moved = rep.step()
        except sqlite3.OperationalError as e:  # a store being created or locked long: try again
            log.warning("replication step failed", extra={"error": str(e)})
            moved = 0
        if args.status and time.monotonic() - last > 1.0:
            last = time.monotonic()
            args.status.write_text(json.dumps(rep.status()))
        if not moved:
            stop.wait(0.02)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
