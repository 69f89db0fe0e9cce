"""Test doubles shared across suites: a controllable clock, a recording webhook poster."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone


class FakeClock:
    """Time that moves only when told to; sleep() advances it instead of waiting."""

    def __init__(self, start: datetime | None = None):
        self.t = start or datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)

    def now(self) -> datetime:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


class RecordingPoster:
    """Stands in for HTTP webhook delivery; answers `status` (or raises `error`)."""

    def __init__(self, status: int = 200):
        self.status, self.error, self.calls = status, None, []

    def __call__(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        self.calls.append((url, body, headers))
        if self.error:
            raise self.error
        return self.status
