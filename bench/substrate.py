"""The bare substrate: the pipeline's SQLite writes and log appends with no orchestration.

The counts per payment come from the pipeline run just measured (rows changed
per database, log records appended, write transactions), never from a guess.
Two loops over two files opened exactly like the adapters open theirs (WAL,
synchronous=FULL):
- `batched`: the writes of `batch` payments per transaction and file -- the
  floor a pipeline that commits per batch could reach, the upper bound;
- `same_txns`: the writes grouped into as many transactions per payment as the
  pipeline actually used, so the two figures separate fsync cost from code cost.
"""
from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

STORE_SCHEMA = ("CREATE TABLE rows (k TEXT NOT NULL, seq INTEGER NOT NULL, body BLOB NOT NULL,"
                " PRIMARY KEY (k, seq)) WITHOUT ROWID")
BUS_SCHEMA = ("CREATE TABLE log (topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,"
              " key TEXT NOT NULL, value BLOB NOT NULL, headers BLOB NOT NULL, ts INTEGER NOT NULL,"
              " PRIMARY KEY (topic, partition, offset)) WITHOUT ROWID;"
              "CREATE TABLE marks (k TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID")


def _open(path: Path, schema: str) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.executescript(schema)
    return conn


def _spread(per_payment: float, i: int) -> int:
    """How many of a fractional per-payment count fall on payment i (the total stays exact)."""
    return int(per_payment * (i + 1)) - int(per_payment * i)


def _ends(rows: int, commits: int) -> set[int]:
    """Indexes of the rows after which to commit: `commits` evenly spread over `rows`."""
    return {(c + 1) * rows // commits - 1 for c in range(commits)} if commits else set()


class _File:
    """One database file: rows go into the open transaction; commit() ends it (one fsync)."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn, self.open = conn, False

    def write(self, sql: str, args: tuple) -> None:
        if not self.open:
            self.conn.execute("BEGIN IMMEDIATE")
            self.open = True
        self.conn.execute(sql, args)

    def commit(self) -> None:
        if self.open:
            self.conn.execute("COMMIT")
            self.open = False


def run_substrate(data_dir: Path, n: int, writes: dict[str, float], row_bytes: float, value_bytes: float,
                  batch: int = 100, txns: tuple[float, float] | None = None) -> float:
    """Payments/s of the bare loop. batch: payments per transaction; txns: (store, bus) per payment."""
    data_dir.mkdir(parents=True, exist_ok=True)
    tag = "batched" if txns is None else "same-txns"
    store = _File(_open(data_dir / f"substrate-{tag}-store.db", STORE_SCHEMA))
    bus = _File(_open(data_dir / f"substrate-{tag}-bus.db", BUS_SCHEMA))
    body, value = os.urandom(int(row_bytes) or 1), os.urandom(int(value_bytes) or 1)
    headers = b'[["tenant_id","ten_x"],["correlation_id","c"],["event_type","payments.x"]]'
    offsets = [0, 0, 0, 0]
    start = time.perf_counter()
    for i in range(n):
        key = f"pay_{i:012d}"
        if txns is None:
            commits = (1, 1) if (i + 1) % batch == 0 else (0, 0)
        else:
            commits = (_spread(txns[0], i), _spread(txns[1], i))
        rows = max(_spread(writes["store_rows"], i), commits[0])  # a transaction with no write costs no fsync
        ends = _ends(rows, commits[0])
        for seq in range(rows):
            store.write("INSERT INTO rows VALUES (?, ?, ?)", (key, seq, body))
            if seq in ends:
                store.commit()
        appends = _spread(writes["log_appends"], i)
        total = max(appends + _spread(writes["bus_rows"], i), commits[1])
        ends = _ends(total, commits[1])
        for j in range(total):
            if j < appends:
                part = (i + j) % 4
                bus.write("INSERT INTO log VALUES (?, ?, ?, ?, ?, ?, ?)",
                          ("t", part, offsets[part], key, value, headers, 0))
                offsets[part] += 1
            else:
                bus.write("INSERT INTO marks VALUES (?, 1) ON CONFLICT (k) DO UPDATE SET n = n + 1", (f"m{j % 64}",))
            if j in ends:
                bus.commit()
    store.commit()
    bus.commit()
    elapsed = time.perf_counter() - start
    store.conn.close()
    bus.conn.close()
    return n / elapsed


def substrate_figures(data_dir: Path, n: int, run: Any, batch: int) -> dict[str, Any]:
    w = run.writes
    batched = run_substrate(data_dir, n, w, run.store_row_bytes, run.log_value_bytes, batch=batch)
    same = run_substrate(data_dir, min(n, 2000), w, run.store_row_bytes, run.log_value_bytes,
                         txns=(w["store_txns"], w["bus_txns"]))
    return {"per_payment": {k: round(v, 3) for k, v in w.items()},
            "row_bytes": round(run.store_row_bytes), "log_value_bytes": round(run.log_value_bytes),
            "batch_payments_per_txn": batch, "payments_per_s": round(batched, 1),
            "same_txns_payments_per_s": round(same, 1)}
