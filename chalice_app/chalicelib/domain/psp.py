"""What a PSP can answer, in our own words (each connector maps its vendor's)."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Outcome(str, Enum):
    APPROVED = "approved"            # money moved / authorization held
    DECLINED = "declined"            # hard decline: do not try elsewhere
    SOFT_DECLINED = "soft_declined"  # PSP refused without processing: another PSP may try
    UNAVAILABLE = "unavailable"      # provably not processed (connection refused, explicit 5xx)
    UNKNOWN = "unknown"              # timeout / lost response: may or may not have been processed
    NOT_FOUND = "not_found"          # status query: the PSP never saw this idempotency key


FAILOVER_OUTCOMES = frozenset({Outcome.SOFT_DECLINED, Outcome.UNAVAILABLE})


@dataclass(frozen=True)
class PspResult:
    outcome: Outcome
    psp_reference: str | None = None
    code: str | None = None
    message: str | None = None
    latency_ms: float = 0.0
