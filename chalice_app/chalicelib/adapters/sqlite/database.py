"""Shared SQLite plumbing: per-thread connections, WAL, transactions."""
from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ...config import DEFAULTS, PLATFORM_REGION


class SqliteDatabase:
    """A SQLite file opened in WAL mode, one connection per thread.

    synchronous=FULL: a committed payment survives a power cut, not only a
    process crash. Writers take the lock up front (BEGIN IMMEDIATE) so two
    processes never deadlock upgrading a read lock. Threads of one process
    queue on a mutex first: SQLite's busy handler sleeps in coarse steps
    (up to 100 ms), which wrecks latency when threads race for the file.
    """

    _writers: dict[str, threading.Lock] = {}
    _writers_guard = threading.Lock()

    def __init__(self, path: Path | str, schema: str, synchronous: str = "FULL"):
        self.path = str(path)
        self.synchronous = synchronous  # OFF only for data a power cut may lose (rate-limit counters)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._writers_guard:
            self._write_lock = self._writers.setdefault(self.path, threading.Lock())
        conn = self.conn()
        conn.executescript(schema)

    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

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
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class OnDatabase:
    """One store concern on a SqliteDatabase shared with the others (a commit spans them), as
    `region` writes and reads it: rows that only their region may act on (outbox, audit queue,
    control records) are marked with it, and a region reads only its own."""

    def __init__(self, db: SqliteDatabase, region: str = DEFAULTS[PLATFORM_REGION]):
        self.db, self.region = db, region
