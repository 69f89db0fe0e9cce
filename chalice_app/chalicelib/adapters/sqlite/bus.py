"""Embedded EventBus: a durable, partitioned log in SQLite with consumer-group offsets.

Kafka semantics where they matter: records are appended to a partition
chosen by a stable hash of the key (so one payment's events stay in order),
offsets are dense per partition, and a group's committed offset is the next
record to read. A consumer re-reads from its committed offsets after a crash.
"""
from __future__ import annotations

import time
import zlib
from pathlib import Path
from typing import Sequence

import orjson

from ...ports import BusRecord, OutRecord
from .database import SqliteDatabase

SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (topic TEXT PRIMARY KEY, partitions INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS heads (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL, key TEXT NOT NULL,
    value BLOB NOT NULL, headers BLOB NOT NULL, ts INTEGER NOT NULL,
    PRIMARY KEY (topic, partition, offset)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS offsets (
    grp TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, partition)) WITHOUT ROWID;
"""


def partition_for(key: str, partitions: int) -> int:
    return zlib.crc32(key.encode()) % partitions


class SqliteBus:
    def __init__(self, path: Path | str, default_partitions: int = 4):
        self.db = SqliteDatabase(path, SCHEMA)
        self.default_partitions = default_partitions
        self._partitions: dict[str, int] = {}

    def ensure_topics(self, topics: Sequence[str], partitions: int | None = None) -> None:
        """Create missing topics with `partitions` partitions (existing ones keep theirs)."""
        n = partitions or self.default_partitions
        with self.db.write() as conn:
            for t in topics:
                conn.execute("INSERT OR IGNORE INTO topics VALUES (?, ?)", (t, n))
                for p in range(n):
                    conn.execute("INSERT OR IGNORE INTO heads VALUES (?, ?, 0)", (t, p))

    def partitions(self, topic: str) -> int:
        n = self._partitions.get(topic)
        if n is None:
            row = self.db.conn().execute("SELECT partitions FROM topics WHERE topic=?", (topic,)).fetchone()
            if row is None:
                self.ensure_topics([topic])
                return self.partitions(topic)
            n = self._partitions[topic] = row[0]
        return n

    def publish(self, records: Sequence[OutRecord]) -> None:
        """Append all records in one transaction (all or nothing)."""
        if not records:
            return
        by_partition: dict[tuple[str, int], list[OutRecord]] = {}
        for r in records:  # in order within each partition, as given
            by_partition.setdefault((r.topic, partition_for(r.key, self.partitions(r.topic))), []).append(r)
        now = int(time.time() * 1000)
        with self.db.write() as conn:
            rows = []
            for (topic, p), placed in by_partition.items():  # one head move per partition, not per record
                (first,) = conn.execute(
                    "UPDATE heads SET next_offset=next_offset+? WHERE topic=? AND partition=?"
                    " RETURNING next_offset - ?", (len(placed), topic, p, len(placed))).fetchone()
                rows += [(topic, p, first + i, r.key, r.value,
                          orjson.dumps([[k, v.decode("latin-1")] for k, v in r.headers]), now)
                         for i, r in enumerate(placed)]
            conn.executemany("INSERT INTO log VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def consumer(self, group: str, topics: Sequence[str], member: int = 0, members: int = 1) -> SqliteConsumer:
        """A group member owning partitions p where p % members == member."""
        return SqliteConsumer(self, group, list(topics), member, members)

    def read_all(self, topic: str) -> list[BusRecord]:
        rows = self.db.conn().execute(
            "SELECT topic, partition, offset, key, value, headers, ts FROM log WHERE topic=?"
            " ORDER BY partition, offset", (topic,)).fetchall()  # Kafka orders within a partition only
        return [_record(r) for r in rows]

    def topics(self) -> list[str]:
        return [r[0] for r in self.db.conn().execute("SELECT topic FROM topics ORDER BY topic")]

    def end_offsets(self, topic: str) -> dict[int, int]:
        rows = self.db.conn().execute("SELECT partition, next_offset FROM heads WHERE topic=?", (topic,))
        return {p: o for p, o in rows}

    def committed_offsets(self, group: str) -> dict[tuple[str, int], int]:
        """A group's committed offsets, read without joining it (dashboard queue lag)."""
        rows = self.db.conn().execute("SELECT topic, partition, next_offset FROM offsets WHERE grp=?", (group,))
        return {(t, p): o for t, p, o in rows}


def _record(r: tuple) -> BusRecord:
    headers = tuple((k, v.encode("latin-1")) for k, v in orjson.loads(r[5]))
    return BusRecord(r[0], r[1], r[2], r[3], r[4], headers, r[6])


class SqliteConsumer:
    def __init__(self, bus: SqliteBus, group: str, topics: list[str], member: int, members: int):
        self.bus, self.group = bus, group
        self.assigned = [(t, p) for t in topics for p in range(bus.partitions(t)) if p % members == member]
        conn = bus.db.conn()
        committed = {(t, p): o for t, p, o in conn.execute(
            "SELECT topic, partition, next_offset FROM offsets WHERE grp=?", (group,))}
        self.position = {tp: committed.get(tp, 0) for tp in self.assigned}
        self._next = 0  # round-robin start, so one busy partition cannot starve the rest
        self._topics = orjson.dumps(sorted({t for t, _ in self.assigned}))

    def poll(self, max_records: int) -> list[BusRecord]:
        conn = self.bus.db.conn()
        # One look at the heads first: only partitions with records past our position are read.
        heads = {(t, p): o for t, p, o in conn.execute(
            "SELECT topic, partition, next_offset FROM heads WHERE topic IN (SELECT value FROM json_each(?))",
            (self._topics,))}
        out: list[BusRecord] = []
        n = len(self.assigned)
        for i in range(n):
            if len(out) >= max_records:
                break
            topic, part = self.assigned[(self._next + i) % n]
            if heads.get((topic, part), 0) <= self.position[(topic, part)]:
                continue
            rows = conn.execute(
                "SELECT topic, partition, offset, key, value, headers, ts FROM log"
                " WHERE topic=? AND partition=? AND offset>=? ORDER BY offset LIMIT ?",
                (topic, part, self.position[(topic, part)], max_records - len(out))).fetchall()
            if rows:
                out.extend(_record(r) for r in rows)
                self.position[(topic, part)] = rows[-1][2] + 1
        self._next = (self._next + 1) % max(n, 1)
        return out

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        # Without its own fsync (synced by the file's next durable commit): an offset lost to a
        # power cut only redelivers records, which the stages drop as duplicates -- Kafka's own
        # at-least-once, and a batch's fsync fewer.
        with self.bus.db.write(durable=False) as conn:
            conn.executemany(
                "INSERT INTO offsets VALUES (?, ?, ?, ?) ON CONFLICT (grp, topic, partition)"
                " DO UPDATE SET next_offset=excluded.next_offset",
                [(self.group, t, p, o) for (t, p), o in offsets.items()])

    def seek(self, topic: str, partition: int, offset: int) -> None:
        self.position[(topic, partition)] = offset

    def committed(self) -> dict[tuple[str, int], int]:
        rows = self.bus.db.conn().execute("SELECT topic, partition, next_offset FROM offsets WHERE grp=?",
                                          (self.group,))
        return {(t, p): o for t, p, o in rows}

    def lag(self) -> int:
        committed = self.committed()
        total = 0
        for topic in {t for t, _ in self.assigned}:
            for p, end in self.bus.end_offsets(topic).items():
                if (topic, p) in self.position:
                    total += end - committed.get((topic, p), 0)
        return total

    def close(self) -> None:
        pass
