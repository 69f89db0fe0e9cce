"""Stages: one module per stage, each a function from an event + stored state to a decision.

Every stage module exposes NAME, CONSUMES (its input topics) and handle(event, ctx).
A stage that waits on something outside the store (a PSP, a merchant's webhook) sets
CALLS_OUT = True: the handler then works on a batch's partitions concurrently, so one
slow answer holds up only its own partition; the others take a batch's partitions in
turn and commit them in one transaction.
"""
from . import authorization, capture, notification, refund, risk, routing, settlement, validation

STAGES = {m.NAME: m for m in (validation, risk, routing, authorization, capture, refund, settlement, notification)}

# The seven stages of the main flow, in order (refund is a side branch).
FLOW = ("validation", "risk", "routing", "authorization", "capture", "settlement", "notification")


def topics() -> list[str]:
    return sorted({t for m in STAGES.values() for t in m.CONSUMES})
