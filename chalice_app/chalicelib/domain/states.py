"""The payment state machine: one table, written once.

README's state diagram is generated from TRANSITIONS (`payctl states --mermaid`)
and a test checks the two agree.
"""
from __future__ import annotations

from enum import Enum


class State(str, Enum):
    INITIATED = "initiated"
    VALIDATED = "validated"
    SCREENED = "screened"
    ROUTED = "routed"
    AUTHORIZING = "authorizing"
    OUTCOME_UNKNOWN = "outcome_unknown"
    REQUIRES_ACTION = "requires_action"  # the PSP waits for the shopper (3-D Secure): resumed by webhook or status
    AUTHORIZED = "authorized"
    REQUIRES_CAPTURE = "requires_capture"
    CAPTURING = "capturing"
    CANCELLING = "cancelling"
    CAPTURED = "captured"
    SETTLED = "settled"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    DECLINED = "declined"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REQUIRES_REVIEW = "requires_review"


class Action(str, Enum):
    VALIDATE = "validate"
    APPROVE_RISK = "approve_risk"
    HOLD_FOR_REVIEW = "hold_for_review"
    ROUTE = "route"
    START_ATTEMPT = "start_attempt"
    MARK_UNKNOWN = "mark_unknown"
    AWAIT_ACTION = "await_action"
    AUTHORIZE = "authorize"
    DECLINE = "decline"
    FAIL = "fail"
    AWAIT_CAPTURE = "await_capture"
    REQUEST_CAPTURE = "request_capture"
    CAPTURE = "capture"
    REQUEST_CANCEL = "request_cancel"
    CANCEL = "cancel"
    VOID = "void"
    SETTLE = "settle"
    REFUND_PARTIAL = "refund_partial"
    REFUND_FULL = "refund_full"


S, A = State, Action

# (state, action) -> next state. Anything absent is illegal.
TRANSITIONS: dict[tuple[State, Action], State] = {
    (S.INITIATED, A.VALIDATE): S.VALIDATED,
    (S.INITIATED, A.FAIL): S.FAILED,
    (S.INITIATED, A.CANCEL): S.CANCELLED,
    (S.VALIDATED, A.APPROVE_RISK): S.SCREENED,
    (S.VALIDATED, A.HOLD_FOR_REVIEW): S.REQUIRES_REVIEW,
    (S.VALIDATED, A.DECLINE): S.DECLINED,
    (S.VALIDATED, A.CANCEL): S.CANCELLED,
    (S.SCREENED, A.ROUTE): S.ROUTED,
    (S.SCREENED, A.FAIL): S.FAILED,
    (S.SCREENED, A.CANCEL): S.CANCELLED,
    (S.ROUTED, A.START_ATTEMPT): S.AUTHORIZING,
    (S.ROUTED, A.CANCEL): S.CANCELLED,
    (S.AUTHORIZING, A.START_ATTEMPT): S.AUTHORIZING,  # failover to the next PSP
    (S.AUTHORIZING, A.MARK_UNKNOWN): S.OUTCOME_UNKNOWN,
    (S.AUTHORIZING, A.AWAIT_ACTION): S.REQUIRES_ACTION,
    (S.AUTHORIZING, A.AUTHORIZE): S.AUTHORIZED,
    (S.AUTHORIZING, A.DECLINE): S.DECLINED,
    (S.AUTHORIZING, A.FAIL): S.FAILED,
    (S.OUTCOME_UNKNOWN, A.AUTHORIZE): S.AUTHORIZED,
    (S.OUTCOME_UNKNOWN, A.DECLINE): S.DECLINED,
    (S.OUTCOME_UNKNOWN, A.START_ATTEMPT): S.AUTHORIZING,  # PSP proved it never processed it
    (S.OUTCOME_UNKNOWN, A.FAIL): S.FAILED,
    (S.OUTCOME_UNKNOWN, A.HOLD_FOR_REVIEW): S.REQUIRES_REVIEW,
    (S.OUTCOME_UNKNOWN, A.AWAIT_ACTION): S.REQUIRES_ACTION,  # the replay found the first call waiting on 3DS
    # Only the PSP's answer about this same attempt moves it on: never another PSP, never a retry.
    (S.REQUIRES_ACTION, A.AUTHORIZE): S.AUTHORIZED,
    (S.REQUIRES_ACTION, A.DECLINE): S.DECLINED,
    (S.REQUIRES_ACTION, A.FAIL): S.FAILED,
    (S.AUTHORIZED, A.CAPTURE): S.CAPTURED,
    (S.AUTHORIZED, A.AWAIT_CAPTURE): S.REQUIRES_CAPTURE,
    (S.AUTHORIZED, A.FAIL): S.FAILED,
    (S.REQUIRES_CAPTURE, A.REQUEST_CAPTURE): S.CAPTURING,
    (S.REQUIRES_CAPTURE, A.REQUEST_CANCEL): S.CANCELLING,
    (S.CAPTURING, A.CAPTURE): S.CAPTURED,
    (S.CAPTURING, A.FAIL): S.FAILED,
    (S.CANCELLING, A.VOID): S.CANCELLED,
    (S.CANCELLING, A.FAIL): S.FAILED,
    (S.CAPTURED, A.SETTLE): S.SETTLED,
    (S.SETTLED, A.REFUND_PARTIAL): S.PARTIALLY_REFUNDED,
    (S.SETTLED, A.REFUND_FULL): S.REFUNDED,
    (S.PARTIALLY_REFUNDED, A.REFUND_PARTIAL): S.PARTIALLY_REFUNDED,
    (S.PARTIALLY_REFUNDED, A.REFUND_FULL): S.REFUNDED,
    (S.REQUIRES_REVIEW, A.CANCEL): S.CANCELLED,
}

# What merchants see. Every internal state maps to one public status.
PUBLIC_STATUS: dict[State, str] = {
    **{s: "processing" for s in (S.INITIATED, S.VALIDATED, S.SCREENED, S.ROUTED,
                                 S.AUTHORIZING, S.OUTCOME_UNKNOWN, S.AUTHORIZED,
                                 S.CAPTURING, S.CANCELLING, S.CAPTURED)},
    S.REQUIRES_ACTION: "requires_action",
    S.REQUIRES_CAPTURE: "requires_capture",
    S.SETTLED: "settled",
    S.PARTIALLY_REFUNDED: "partially_refunded",
    S.REFUNDED: "refunded",
    S.DECLINED: "declined",
    S.FAILED: "failed",
    S.CANCELLED: "cancelled",
    S.REQUIRES_REVIEW: "requires_review",
}
PUBLIC_STATUSES = tuple(sorted(set(PUBLIC_STATUS.values())))

# States in which the pipeline has nothing more to do on its own (it waits for
# the merchant, an operator, or nothing at all).
RESTING: frozenset[State] = frozenset(s for s, p in PUBLIC_STATUS.items() if p != "processing")
FINAL: frozenset[State] = frozenset({S.REFUNDED, S.DECLINED, S.FAILED, S.CANCELLED})


# How far along the flow each non-final state is (a state further on never goes back before it).
RANK: dict[State, int] = {
    S.INITIATED: 0, S.VALIDATED: 1, S.SCREENED: 2, S.ROUTED: 3, S.AUTHORIZING: 4, S.OUTCOME_UNKNOWN: 4,
    S.REQUIRES_ACTION: 4,
    S.AUTHORIZED: 5, S.REQUIRES_CAPTURE: 6, S.CAPTURING: 7, S.CANCELLING: 7, S.CAPTURED: 8, S.SETTLED: 9,
    S.PARTIALLY_REFUNDED: 10, S.REFUNDED: 11,
}
# The state a payment is in once an event of this type has been committed with it.
ANNOUNCES: dict[str, State] = {
    "payments.initiated": S.INITIATED, "payments.validated": S.VALIDATED, "payments.screened": S.SCREENED,
    "payments.routed": S.ROUTED, "payments.authorized": S.AUTHORIZED, "payments.capture_requested": S.CAPTURING,
    "payments.cancel_requested": S.CANCELLING, "payments.captured": S.CAPTURED,
    "payments.requires_action": S.REQUIRES_ACTION,
}


def behind(state: State, event_type: str) -> bool:
    """The payment is in an earlier state than the event says it reached: the write that came with
    the event has not arrived here yet (another region's, replicated item by item)."""
    announced = ANNOUNCES.get(event_type)
    if announced is None or state not in RANK:  # declined, failed, cancelled, in review: nothing comes after
        return False
    return RANK[state] < RANK[announced]


class IllegalTransition(Exception):
    def __init__(self, payment_id: str, state: State, action: Action):
        self.payment_id, self.state, self.action = payment_id, state, action
        super().__init__(
            f"payment {payment_id}: action '{action.value}' is not allowed in state '{state.value}'")


def next_state(payment_id: str, state: State, action: Action) -> State:
    try:
        return TRANSITIONS[(state, action)]
    except KeyError:
        raise IllegalTransition(payment_id, state, action) from None


def mermaid() -> str:
    """The state diagram, generated from the table, for README.md."""
    lines = ["stateDiagram-v2", f"    [*] --> {S.INITIATED.value}"]
    for (src, action), dst in TRANSITIONS.items():
        lines.append(f"    {src.value} --> {dst.value}: {action.value}")
    return "\n".join(lines)
