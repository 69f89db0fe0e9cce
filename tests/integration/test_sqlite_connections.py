"""SqliteDatabase's connections outlive their threads (chalice local runs every request on a new
thread): a finished thread's connection is reused by the next, never shared by two live threads,
and never handed over inside a transaction."""
from __future__ import annotations

import threading

from chalicelib.adapters.sqlite.database import SqliteDatabase

SCHEMA = "CREATE TABLE IF NOT EXISTS t (x INTEGER)"


def _in_thread(fn):
    out = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


def test_a_new_thread_takes_a_finished_threads_connection(tmp_path):
    db = SqliteDatabase(tmp_path / "a.db", SCHEMA)
    first = _in_thread(lambda: id(db.conn()))
    second = _in_thread(lambda: id(db.conn()))
    assert first == second  # opened once, reused
    assert _in_thread(lambda: db.conn().execute("PRAGMA journal_mode").fetchone()[0]) == "wal"


def test_live_threads_never_share_a_connection(tmp_path):
    db = SqliteDatabase(tmp_path / "b.db", SCHEMA)
    ready, go = threading.Barrier(4), threading.Event()
    seen: list[int] = []

    def hold() -> None:
        seen.append(id(db.conn()))
        ready.wait()
        go.wait()
    threads = [threading.Thread(target=hold) for _ in range(3)]
    for t in threads:
        t.start()
    ready.wait()
    seen.append(id(db.conn()))
    go.set()
    for t in threads:
        t.join()
    assert len(set(seen)) == 4


def test_a_connection_left_in_a_transaction_is_rolled_back_before_reuse(tmp_path):
    db = SqliteDatabase(tmp_path / "c.db", SCHEMA)

    def leave_open() -> None:
        db.conn().execute("BEGIN IMMEDIATE")
        db.conn().execute("INSERT INTO t VALUES (1)")
    _in_thread(leave_open)  # the thread ends mid-transaction
    assert _in_thread(lambda: db.conn().in_transaction) is False
    assert db.conn().execute("SELECT COUNT(*) FROM t").fetchone()[0] == 0
    with db.write() as conn:  # and the write lock is free
        conn.execute("INSERT INTO t VALUES (2)")
    assert _in_thread(lambda: db.conn().execute("SELECT x FROM t").fetchall()) == [(2,)]


def test_the_pool_keeps_at_most_pool_size_idle_connections(tmp_path):
    db = SqliteDatabase(tmp_path / "d.db", SCHEMA)
    db.POOL_SIZE = 2
    ready, go = threading.Barrier(5), threading.Event()

    def hold() -> None:
        db.conn()
        ready.wait()
        go.wait()
    threads = [threading.Thread(target=hold) for _ in range(4)]
    for t in threads:
        t.start()
    ready.wait()
    go.set()
    for t in threads:
        t.join()
    assert len(db._idle) == 2
    db.close()
    assert db._idle == []
