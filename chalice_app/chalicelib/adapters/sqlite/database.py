"""Shared SQLite plumbing: per-thread connections, WAL, transactions."""
from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ...config import DEFAULTS, PLATFORM_REGION


class _Lease:
    """A thread's hold on a pooled connection: dropped with the thread's locals when the thread ends,
    which hands the connection back to the pool for the next thread."""

    __slots__ = ("conn", "db")

    def __init__(self, conn: sqlite3.Connection, db: SqliteDatabase):
        self.conn, self.db = conn, db

    def __del__(self) -> None:
        if self.conn is not None:
            self.db._release(self.conn)


class SqliteDatabase:
    """A SQLite file opened in WAL mode, one connection per thread at a time.

    Connections outlive their threads: when a thread ends, its connection goes back to a small pool
    and the next new thread takes it instead of opening the file again. chalice local (make local's
    API) runs every request on a new thread, and opening a connection (plus its pragmas and the
    schema's first parse) was a third of the API process's time under load (issue 19's profile).

    synchronous=FULL: a committed payment survives a power cut, not only a
    process crash. Writers take the lock up front (BEGIN IMMEDIATE) so two
    processes never deadlock upgrading a read lock. Threads of one process
    queue on a mutex first: SQLite's busy handler sleeps in coarse steps
    (up to 100 ms), which wrecks latency when threads race for the file.
    """

    _writers: dict[str, threading.Lock] = {}
    _writers_guard = threading.Lock()
    POOL_SIZE = 16  # idle connections kept per file (3 file handles each in WAL mode); more are closed

    def __init__(self, path: Path | str, schema: str, synchronous: str = "FULL"):
        self.path = str(path)
        self.synchronous = synchronous  # OFF only for data a power cut may lose (rate-limit counters)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._idle: list[sqlite3.Connection] = []
        self._idle_lock = threading.Lock()
        with self._writers_guard:
            self._write_lock = self._writers.setdefault(self.path, threading.Lock())
        conn = self.conn()
        conn.executescript(schema)

    def conn(self) -> sqlite3.Connection:
        """This thread's connection: its own until the thread ends (then pooled), never shared at once."""
        lease = getattr(self._local, "lease", None)
        if lease is None:
            with self._idle_lock:
                conn = self._idle.pop() if self._idle else None
            lease = self._local.lease = _Lease(conn or self._open(), self)
        return lease.conn

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _release(self, conn: sqlite3.Connection) -> None:
        """A finished thread's connection: back to the pool, clean, or closed when the pool is full."""
        try:
            if conn.in_transaction:  # never hand a transaction over (write() always ends its own)
                conn.execute("ROLLBACK")
            with self._idle_lock:
                if len(self._idle) < self.POOL_SIZE:
                    self._idle.append(conn)
                    return
            conn.close()
        except Exception:  # noqa: BLE001 - also at interpreter exit: a connection that cannot be reset is dropped
            pass

    @contextmanager
    def write(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction. durable=False skips this one commit's fsync, for state that only
        matters while the process lives: it is synced with the next durable commit (one WAL
        file, written in order), and a crash of the process alone loses nothing."""
        conn = self.conn()
        relax = not durable and self.synchronous == "FULL"
        with self._write_lock:
            if relax:
                conn.execute("PRAGMA synchronous=NORMAL")
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            finally:
                if relax:
                    conn.execute(f"PRAGMA synchronous={self.synchronous}")

    def close(self) -> None:
        """Close this thread's connection and every idle one (other threads' stay theirs)."""
        lease = getattr(self._local, "lease", None)
        if lease is not None:
            conn, lease.conn = lease.conn, None
            self._local.lease = None
            conn.close()
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class OnDatabase:
    """One store concern on a SqliteDatabase shared with the others (a commit spans them), as
    `region` writes and reads it: rows that only their region may act on (outbox, audit queue,
    control records) are marked with it, and a region reads only its own."""

    def __init__(self, db: SqliteDatabase, region: str = DEFAULTS[PLATFORM_REGION]):
        self.db, self.region = db, region
