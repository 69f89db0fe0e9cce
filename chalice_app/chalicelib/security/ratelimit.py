"""Per-tenant rate limit: a token bucket per tenant, refilled at RATE_LIMIT_PER_S up to RATE_LIMIT_BURST.

A request takes one token; with none left it is answered 429 with Retry-After
(whole seconds until a token is back). Buckets live in the API process: in
Lambda that is one limit per warm container, so the effective ceiling is the
limit times the API's concurrency (reserved concurrency bounds it); a shared
limit would need a conditional write per request.
"""
from __future__ import annotations

import math
import threading
import time
from typing import Any, Callable


class RateLimiter:
    def __init__(self, rate_per_s: float, burst: int, now: Callable[[], float] = time.monotonic):
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst, self.now = float(rate_per_s), int(burst), now
        self._buckets: dict[str, tuple[float, float]] = {}  # tenant -> (tokens, at)
        self._lock = threading.Lock()

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


def retry_after(wait_s: float) -> int:
    """Retry-After is whole seconds; never 0 for a refused request."""
    return max(1, math.ceil(wait_s))


_made = threading.Lock()


def limiter_for(platform: Any) -> RateLimiter:
    """The platform's limiter, made on first use from its settings (tests may install their own)."""
    with _made:
        limiter = getattr(platform, "rate_limiter", None)
        if limiter is None:
            s = platform.settings
            limiter = RateLimiter(s.rate_limit_per_s, s.rate_limit_burst)
            platform.rate_limiter = limiter
        return limiter
