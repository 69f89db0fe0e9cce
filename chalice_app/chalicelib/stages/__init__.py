"""Stages: one module per stage, each a function from an event + stored state to a decision.

Every stage module exposes NAME, CONSUMES (its input topics) and handle(event, ctx).
"""
from . import authorization, capture, notification, refund, risk, routing, settlement, validation

STAGES = {m.NAME: m for m in (validation, risk, routing, authorization, capture, refund, settlement, notification)}

# The seven stages of the main flow, in order (refund is a side branch).
FLOW = ("validation", "risk", "routing", "authorization", "capture", "settlement", "notification")


def topics() -> list[str]:
    return sorted({t for m in STAGES.values() for t in m.CONSUMES})
