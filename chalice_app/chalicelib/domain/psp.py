"""What a PSP can answer, in our own words (each connector maps its vendor's)."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any


class Outcome(str, Enum):
    APPROVED = "approved"            # money moved / authorization held
    DECLINED = "declined"            # hard decline: do not try elsewhere
    SOFT_DECLINED = "soft_declined"  # PSP refused without processing: another PSP may try
    UNAVAILABLE = "unavailable"      # provably not processed (connection refused, explicit 5xx)
    UNKNOWN = "unknown"              # timeout / lost response: may or may not have been processed
    NOT_FOUND = "not_found"          # status query: the PSP never saw this idempotency key
    REQUIRES_ACTION = "requires_action"  # the shopper must act (3-D Secure, a redirect): see next_action
    PENDING = "pending"              # the PSP took the request and decides later (by webhook): not final


FAILOVER_OUTCOMES = frozenset({Outcome.SOFT_DECLINED, Outcome.UNAVAILABLE})


@dataclass(frozen=True)
class PspResult:
    outcome: Outcome
    psp_reference: str | None = None
    code: str | None = None
    message: str | None = None
    latency_ms: float = 0.0
    error_class: ErrorClass | None = None  # the shared taxonomy, for connectors that map into it
    # REQUIRES_ACTION: what the shopper must do, in our words: {"type": "redirect", "url", "method",
    # "return_url"} or {"type": "sdk", "psp_type", "data"} for an action only the PSP's client SDK runs.
    next_action: dict[str, Any] | None = None


class ErrorClass(str, Enum):
    """Why a PSP said no, or said nothing: the taxonomy every connector maps its vendor's codes into.

    The issue's "unavailable/unknown" is two members here, because they decide differently: a
    request the PSP provably did not process may go elsewhere; one it may have processed may not."""
    HARD_DECLINE = "hard_decline"                        # the issuer refused for good (do not honor, expired)
    SOFT_DECLINE = "soft_decline"                        # refused for now (issuer unavailable, try again)
    FRAUD = "fraud"                                      # a fraud screen, or a lost/stolen card
    INSUFFICIENT_FUNDS = "insufficient_funds"
    AUTHENTICATION_REQUIRED = "authentication_required"  # 3-D Secure / SCA asked for
    PSP_ERROR = "psp_error"                              # the PSP refused our request itself (validation, auth)
    UNAVAILABLE = "unavailable"                          # provably not processed (refused connection, 429)
    UNKNOWN = "unknown"                                  # may or may not have been processed


class Decision(str, Enum):
    RETRY = "retry"      # ask the same PSP again with the same idempotency key, never another PSP
    CASCADE = "cascade"  # not processed, or refused for a reason the next PSP may not share
    STOP = "stop"        # final for this payment: no retry, no other PSP


# Authorization: fraud, insufficient funds and SCA stop -- another PSP reaches the same issuer, and
# cascading around a fraud screen or an SCA request is what card schemes penalize.
DECISIONS: dict[ErrorClass, Decision] = {
    ErrorClass.HARD_DECLINE: Decision.STOP,
    ErrorClass.SOFT_DECLINE: Decision.CASCADE,
    ErrorClass.FRAUD: Decision.STOP,
    ErrorClass.INSUFFICIENT_FUNDS: Decision.STOP,
    ErrorClass.AUTHENTICATION_REQUIRED: Decision.STOP,
    ErrorClass.PSP_ERROR: Decision.CASCADE,
    ErrorClass.UNAVAILABLE: Decision.CASCADE,
    ErrorClass.UNKNOWN: Decision.RETRY,
}


def decide(error: ErrorClass, *, authorization: bool = True) -> Decision:
    """What to do after `error`. A capture, void or refund belongs to the PSP holding the
    authorization, so there is nowhere to cascade: a passing refusal is retried there, and the
    PSP refusing the request itself (wrong state, amount over what is left) is final."""
    decision = DECISIONS[error]
    if authorization or decision is not Decision.CASCADE:
        return decision
    return Decision.STOP if error is ErrorClass.PSP_ERROR else Decision.RETRY


def outcome_for(error: ErrorClass, *, authorization: bool = True) -> Outcome:
    """The port's outcome for an error class, which the stages act on as `decide` says:
    DECLINED stops, SOFT_DECLINED/UNAVAILABLE fail over (authorization) or are retried (follow-ups),
    UNKNOWN is resolved by asking the same PSP about the same key."""
    if error is ErrorClass.UNKNOWN:
        return Outcome.UNKNOWN
    if error is ErrorClass.UNAVAILABLE:
        return Outcome.UNAVAILABLE
    return Outcome.DECLINED if decide(error, authorization=authorization) is Decision.STOP else Outcome.SOFT_DECLINED
