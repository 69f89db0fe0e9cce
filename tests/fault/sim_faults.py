"""Crash injection and determinism for the simulator.

A crash is a BaseException (SimCrash) raised at a named crash point -- just
before or after a durable effect: a store commit, a PSP call, a bus append,
an offsets commit. Handlers catch Exception, never BaseException, so a
crash unwinds the whole worker like a SIGKILL: whatever was committed stays,
whatever was in memory (positions, retry counters) is gone.

The adapters are wrapped, not changed: every write still goes to the real
SQLite adapter, with one crash point before and one after it.
"""
from __future__ import annotations

import dataclasses
import random
from collections import Counter
from contextlib import contextmanager
from typing import Any, Iterator

from chalicelib import ids
from chalicelib.handlers import batch as handler


class SimCrash(BaseException):
    """The process died at a crash point (BaseException: no `except Exception` swallows it)."""


class Crasher:
    """Arms one crash at the n-th crash point hit during a simulation step."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.countdown = 0  # 0: disarmed
        self.at: str | None = None  # or: crash at the first hit of this named point (regression tests)
        self.dead = False  # after a crash nothing more happens until the step ends
        self.crashes: Counter = Counter()
        self.hits = 0

    def arm(self, max_points: int) -> None:
        self.countdown = self.rng.randint(1, max_points)

    def arm_at(self, point: str) -> None:
        self.at = point

    def disarm(self) -> None:
        self.countdown, self.dead, self.at = 0, False, None

    def __call__(self, point: str) -> None:
        self.hits += 1
        if self.dead:
            raise SimCrash(point)
        if self.at == point:
            self.countdown = 1
        if self.countdown:
            self.countdown -= 1
            if not self.countdown:
                self.dead = True
                self.crashes[point] += 1
                raise SimCrash(point)


class _Wrapped:
    """Delegates everything to `inner`; the listed write methods get crash points around them."""

    WRITES: tuple[str, ...] = ()
    PREFIX = ""

    def __init__(self, inner: Any, crash: Crasher):
        self._inner, self._crash = inner, crash

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in self.WRITES:
            return attr

        def guarded(*args: Any, **kwargs: Any) -> Any:
            self._crash(f"{self.PREFIX}.{name}:before")
            result = attr(*args, **kwargs)
            self._crash(f"{self.PREFIX}.{name}:after")
            return result
        return guarded


class _CrashingPart(_Wrapped):
    """One store port whose writes get crash points ("store.<method>:before/after")."""
    WRITES = ("commit", "commit_many", "put_control", "mark_published", "claim_idempotency", "release_idempotency",
              "purge_expired_idempotency", "apply_report", "advance")
    PREFIX = "store"


def CrashingStore(inner: Any, crash: Crasher) -> Any:
    """The Store with every port wrapped: a commit, a relay's mark, a claim... may crash before or after."""
    return dataclasses.replace(inner, **{f.name: _CrashingPart(getattr(inner, f.name), crash)
                                         for f in dataclasses.fields(inner)})


class CrashingConsumer(_Wrapped):
    WRITES = ("commit",)
    PREFIX = "offsets"


class CrashingBus(_Wrapped):
    WRITES = ("publish",)
    PREFIX = "bus"

    def consumer(self, group: str, topics: Any, member: int = 0, members: int = 1) -> CrashingConsumer:
        return CrashingConsumer(self._inner.consumer(group, topics, member, members), self._crash)


class InlineExecutor:
    """Stands in for handle_batch's partition pool: partitions one after another, in batch order.

    Same results as the pool (each partition in order, independently); no threads, so the
    interleaving is the seed's alone, and a crash stops the rest of the batch as SIGKILL would."""

    def __init__(self, max_workers: int | None = None):
        pass

    def __enter__(self) -> InlineExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def map(self, fn, items):
        return [fn(x) for x in items]


@contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """Counter-based ids (they pick partitions: keys must not depend on the wall clock) and no threads."""
    saved_new_id, saved_pool = ids.new_id, handler.partition_pool
    n = iter(range(1, 1 << 62))
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

    def new_id(prefix: str) -> str:
        x, digits = next(n) + (seed << 24), []
        for _ in range(26):  # Crockford base32 like a ULID, so id-shape checks still hold
            x, r = divmod(x, 32)
            digits.append(alphabet[r])
        return f"{prefix}_{''.join(reversed(digits))}"

    ids.new_id, handler.partition_pool = new_id, lambda stage_name: InlineExecutor()
    try:
        yield
    finally:
        ids.new_id, handler.partition_pool = saved_new_id, saved_pool
