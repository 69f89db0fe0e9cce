"""Per-tenant rate limit, shared by every API process (every Lambda container): 429 with Retry-After.

SharedRateLimiter (what the API uses) works in two steps:

1. precheck(caller key), before any store work, even before the key is looked up: a token
   bucket in this process keyed by the API key's hash. A single caller flooding one process
   (one container) is refused here, in memory: a 429 costs no store read or write, so one
   noisy tenant cannot slow the others through the store.
2. take(tenant), after authentication: a fixed window of RATE_LIMIT_BURST / RATE_LIMIT_PER_S
   seconds counted through the store, shared by every API process (every Lambda
   container): one atomic conditional increment per admitted request (SQLite: an upsert in a
   file of its own without fsync; DynamoDB: a conditional ADD on "<tenant>#rate" / window,
   TTL cleans up). A window admits RATE_LIMIT_BURST requests, so the long-run rate is
   RATE_LIMIT_PER_S across all instances; a refused request waits for the next window
   (Retry-After). Once the store says a window is full, this process remembers it until the
   window ends, so further refusals there cost no store call either. Like any fixed window, up
   to twice the burst can pass around a window boundary.
"""
from __future__ import annotations

import math
import threading
import time
from typing import Callable

from ..ports.store import RequestCounters


class RateLimiter:
    def __init__(self, rate_per_s: float, burst: int, now: Callable[[], float] = time.monotonic):
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst, self.now = float(rate_per_s), int(burst), now
        self._buckets: dict[str, tuple[float, float]] = {}  # tenant -> (tokens, at)
        self._lock = threading.Lock()

    def precheck(self, caller_key: str) -> float:
        """Nothing to decide before authentication: take() decides it all."""
        return 0.0

    def take(self, tenant_id: str) -> float:
        """0.0 if the request may go ahead, else the seconds until one token is back."""
        with self._lock:
            now = self.now()
            tokens, at = self._buckets.get(tenant_id, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + max(0.0, now - at) * self.rate)
            if tokens >= 1.0 - 1e-9:  # float refill may land a hair under a whole token
                self._buckets[tenant_id] = (tokens - 1.0, now)
                return 0.0
            self._buckets[tenant_id] = (tokens, now)
            return (1.0 - tokens) / self.rate


class SharedRateLimiter:
    """The tenant's limit across processes: a fixed-window counter in the store, behind an in-memory
    bucket per API key that decides floods before any store work."""

    def __init__(self, counters: RequestCounters, rate_per_s: float, burst: int, now: Callable[[], float] = time.time,
                 local: RateLimiter | None = None):
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.counters, self.burst, self.now = counters, int(burst), now
        self.window_s = burst / float(rate_per_s)
        self.local = local if local is not None else RateLimiter(rate_per_s, burst, now)
        self._full: dict[str, int] = {}  # tenant -> the window the store said is full

    def precheck(self, caller_key: str) -> float:
        """0.0 if the caller (an API key's hash) may go on to authentication, else the seconds to wait.
        In memory only: a flood is refused before any store read or write."""
        return self.local.take(caller_key)

    def take(self, tenant_id: str) -> float:
        """0.0 if the request may go ahead, else the seconds until the tenant's next window."""
        now = self.now()
        window = int(now // self.window_s)
        end = (window + 1) * self.window_s
        if self._full.get(tenant_id) != window:
            if self.counters.count_request(tenant_id, window, self.burst, int(end) + 60):
                return 0.0
            self._full[tenant_id] = window  # refusals until the window ends need no store call
        return max(end - now, 1e-3)


def retry_after(wait_s: float) -> int:
    """Retry-After is whole seconds; never 0 for a refused request."""
    return max(1, math.ceil(wait_s))
