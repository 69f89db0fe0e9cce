"""The system clock (tests inject their own, see tests/fakes.py)."""
from __future__ import annotations

import time
from datetime import datetime, timezone


def iso(dt: datetime) -> str:
    """2026-01-31T12:00:00.000000Z. isoformat, not strftime: less than half the time, and every
    event, timeline entry and stage record stamps a few of these."""
    if dt.tzinfo is not timezone.utc:
        dt = dt.astimezone(timezone.utc)
    return dt.isoformat(timespec="microseconds")[:-6] + "Z"


def parse_iso(s: str) -> datetime:
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)
