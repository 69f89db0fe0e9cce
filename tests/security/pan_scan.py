"""The PAN scanner used by test_pan_scan: Luhn-valid 13-19 digit runs and raw test PANs, anywhere.

A hit is either
- a run of 13-19 ASCII digits, not part of a longer digit run, that passes Luhn (except epoch
  milliseconds and runs inside ids: hex digests and this platform's ULIDs, see
  domain/cards.py: inside_id), or
- any occurrence of one of the raw test PANs (even inside a longer run).
ULIDs, epoch milliseconds and ISO timestamps make digit runs too; only these two
kinds count. Base64 (DLQ entries carry the original record base64-encoded) is
decoded by the callers before scanning.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from chalicelib.domain.cards import epoch_ms, inside_id, luhn_ok

# Every card number any test or the demo sends (simulator behaviours + well-known test cards).
TEST_PANS = ("4242424242424242", "4000000000000002", "4000000000009995", "4000000000000119",
             "4000000000000077", "4000000000000101", "5555555555554444", "378282246310005",
             "6011111111111117", "4222222222222", "6759649826438453")
TEST_IBANS = ("DE89370400440532013000", "GB82WEST12345698765432")
_RUN = re.compile(rb"(?<![0-9])[0-9]{13,19}(?![0-9])")


@dataclass(frozen=True)
class Hit:
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


def scan_bytes(where: str, data: bytes) -> list[Hit]:
    hits = [Hit(where, f"Luhn-valid {len(m.group(0))}-digit run ending {m.group(0)[-4:].decode()}")
            for m in _RUN.finditer(data) if luhn_ok(m.group(0).decode()) and not epoch_ms(m.group(0))
            and not inside_id(data, m.start(), m.end())]
    for secret in (*TEST_PANS, *TEST_IBANS):
        if secret.encode() in data or secret.encode("utf-16-le") in data:
            hits.append(Hit(where, f"raw test secret ending {secret[-4:]}"))
    return hits


def _maybe_b64(value: str) -> bytes | None:
    if len(value) < 16 or len(value) % 4:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def scan_value(where: str, value: Any) -> list[Hit]:
    """Scan a decoded value: strings, bytes, JSON inside them, and base64 inside those (nested)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        hits = scan_bytes(where, raw)
        try:
            return hits + scan_value(where + " (json)", json.loads(raw))
        except (ValueError, UnicodeDecodeError):
            return hits
    if isinstance(value, str):
        hits = scan_bytes(where, value.encode())
        decoded = _maybe_b64(value)
        if decoded is not None:
            hits += scan_value(where + " (base64)", decoded)
        return hits
    if isinstance(value, dict):
        return [h for k, v in value.items() for h in scan_value(f"{where}.{k}", k) + scan_value(f"{where}.{k}", v)]
    if isinstance(value, (list, tuple)):
        return [h for i, v in enumerate(value) for h in scan_value(f"{where}[{i}]", v)]
    if isinstance(value, int) and 10 ** 12 <= abs(value) < 10 ** 19:
        return scan_bytes(where, str(value).encode())
    return []


def sqlite_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.read_bytes()[:16] == b"SQLite format 3\x00")


def scan_sqlite(path: Path) -> tuple[list[Hit], int]:
    """Every row of every table (values decoded), plus the raw bytes of the file and its -wal/-shm."""
    hits: list[Hit] = []
    rows = 0
    for side in (path, Path(str(path) + "-wal"), Path(str(path) + "-shm"), Path(str(path) + "-journal")):
        if side.exists():
            hits += scan_bytes(side.name + " (raw bytes)", side.read_bytes())
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for i, row in enumerate(conn.execute(f'SELECT * FROM "{table}"')):  # noqa: S608 - names from sqlite_master
                rows += 1
                hits += scan_value(f"{path.name}:{table}[{i}]", list(row))
    finally:
        conn.close()
    return hits, rows


def scan_files(paths: Iterable[Path]) -> list[Hit]:
    return [h for p in paths for h in scan_bytes(str(p.name), p.read_bytes())]


def scan_bus(bus: Any) -> tuple[list[Hit], int]:
    """Every record of every topic (DLQ topics included): key, headers and value, decoded."""
    hits, n, _ = scan_topics(bus)
    return hits, n


def scan_topics(bus: Any, label: str = "") -> tuple[list[Hit], int, int]:
    """(hits, records, of which DLQ records) over every topic of `bus`."""
    hits: list[Hit] = []
    n = dlq = 0
    for topic in bus.topics():
        for r in bus.read_all(topic):
            n += 1
            dlq += topic.endswith(".dlq")
            where = f"{label}{topic}@{r.partition}:{r.offset}"
            hits += scan_value(where + " key", r.key) + scan_value(where + " value", r.value)
            hits += [h for k, v in r.headers for h in scan_value(f"{where} header {k}", v)]
    return hits, n, dlq


def scan_tree(root: Path) -> tuple[list[Hit], dict[str, int]]:
    """Every file under `root`: SQLite files row by row (and raw bytes), each SQLite bus topic by
    topic (DLQ entries decoded), every other file (logs, -wal, JSON) as raw bytes. Returns figures."""
    from chalicelib.adapters.sqlite.bus import SqliteBus
    hits: list[Hit] = []
    figures = dict.fromkeys(("sqlite_files", "rows", "topic_records", "dlq_records", "log_files", "other_files",
                             "bytes"), 0)
    files = sqlite_files(root)
    for path in files:
        h, n = scan_sqlite(path)
        hits += h
        figures["rows"] += n
        figures["bytes"] += sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
        if path.name == "bus.db":
            h, n, dlq = scan_topics(SqliteBus(path), f"{path.parent.name}/")
            hits += h
            figures["topic_records"] += n
            figures["dlq_records"] += dlq
    figures["sqlite_files"] = len(files)
    others = [p for p in root.rglob("*") if p.is_file() and p not in files]
    hits += [h for p in others for h in scan_bytes(str(p.relative_to(root)), p.read_bytes())]
    figures["log_files"] = sum(1 for p in others if p.suffix == ".log")
    figures["other_files"] = len(others)
    figures["bytes"] += sum(p.stat().st_size for p in others)
    return hits, figures
