"""What a region does right after taking a home region's lease (LeaseKeeper.step said so): a dead
peer's, its own back, or its own again after a lapse. Before anything new is attempted:

1. PSP calls that may have happened are resolved by asking that PSP, with the same idempotency
   key. The intents in the control store name them even when the payment's own record of the
   attempt never replicated here. Such an attempt is marked unknown and its status check is due
   now (stages/reconciliation.py). Routing is never recomputed over an attempt that may exist.
2. Every other payment of the home still in flight is driven on from the state it is in here: the
   event that leads to its next step is published again. The stages skip what was done already.
3. The home's committed but unpublished events are published (another region's outbox items
   replicate here; only a takeover publishes them).

Whatever has not replicated here yet is retried by the stages, never dropped (stages/context.py).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

from ..clock import iso
from ..domain.payment import Payment
from ..domain.states import State
from ..handlers.relay import relay_once
from ..ports import Changes, Intent, Platform, Reminder
from ..stages.context import StageContext
from .ownership import LeaseKeeper

log = logging.getLogger("payments.regions")
NAME = "takeover"
PAGE = 200


def _resume(ctx: StageContext, p: Payment) -> tuple[str, dict[str, Any]] | None:
    """The event that moves `p` on from its state here (None: its next step is not an event's)."""
    s = p.state
    if s == State.INITIATED:
        return "payments.initiated", {"amount": p.amount, "currency": p.currency, "capture_mode": p.capture_mode,
                                      "payment_method": p.payment_method, "reference": p.reference,
                                      **({"customer": p.customer} if p.customer else {}), "metadata": p.metadata}
    if s == State.VALIDATED:
        return "payments.validated", {"amount": p.amount, "currency": p.currency}
    if s == State.SCREENED:
        return "payments.screened", {"decision": p.risk.get("decision", "approve"), "score": p.risk.get("score", 0)}
    if s in (State.ROUTED, State.AUTHORIZING):  # an AUTHORIZING one with a pending attempt never gets here
        return "payments.routed", {"psps": p.route}
    attempt = p.authorized_attempt
    if s == State.AUTHORIZED and attempt is not None:
        return "payments.authorized", {"psp": attempt.psp, "attempt": attempt.number,
                                       "psp_reference": attempt.psp_reference or "", "capture_mode": p.capture_mode,
                                       "amount": p.amount, "currency": p.currency}
    if s == State.CAPTURING:
        asked = [t for t in ctx.store.payments.timeline(p.tenant_id, p.payment_id) if t["action"] == "request_capture"]
        return "payments.capture_requested", {"amount": (asked[-1]["detail"] if asked else {}).get("amount", p.amount)}
    if s == State.CANCELLING:
        return "payments.cancel_requested", {"reason": None}
    if s == State.CAPTURED and attempt is not None:
        return "payments.captured", {"psp": attempt.psp, "amount": p.captured_amount or p.amount,
                                     "currency": p.currency, "psp_reference": attempt.psp_reference or ""}
    return None


def _may_have_reached_psp(ctx: StageContext, p: Payment, intent: Intent | None) -> bool:
    """Mark the attempt a PSP may know of as unknown, its status check due now. True if it did.

    An intent whose payment here has not even reached routing (those writes never replicated) pins
    the route to the intent's PSP: routing is never recomputed over an attempt that may exist."""
    if intent is not None and not p.attempts and intent.idempotency_key == f"{p.payment_id}-a1":
        if p.state == State.SCREENED:
            p.set_route(ctx.now(), [intent.psp])
        if p.state == State.ROUTED:
            p.start_attempt(ctx.now(), intent.psp)
    if p.state != State.AUTHORIZING:
        return False
    attempt = p.current_attempt
    if attempt is None or attempt.status != "pending":
        if intent is None or attempt is not None and attempt.idempotency_key == intent.idempotency_key:
            return False
        # The intent's attempt never replicated here: write it down as it was (same PSP, same key).
        if intent.idempotency_key != f"{p.payment_id}-a{len(p.attempts) + 1}":
            return False
        attempt = p.start_attempt(ctx.now(), intent.psp)
    p.attempt_unknown(ctx.now(), f"taken over by {ctx.settings.region}: {attempt.psp} may have processed "
                                 f"{attempt.idempotency_key}; asking it before anything else")
    return True


def take_over(platform: Platform, home: str) -> dict[str, int]:
    """Scan `home`'s payments after taking its lease; returns what was done, by kind."""
    ctx = StageContext(NAME, platform)
    store, leases = platform.store, platform.ownership.leases
    done = {"status_checks": 0, "redriven": 0, "left": 0, "republished": 0, "not_here_yet": 0}
    intents: dict[str, Intent] = {}
    for intent in leases.intents(home):
        if intent.kind == "authorize":
            intents[intent.payment_id] = intent
    seen: set[str] = set()
    for tenant in store.tenants.list_tenants():
        cursor: str | None = None
        while True:
            page, cursor = store.payments.list_payments(tenant["tenant_id"], "processing", PAGE, cursor)
            for p in page:
                if (p.region or platform.settings.region) != home:
                    continue
                seen.add(p.payment_id)
                done[_drive(ctx, p, intents.get(p.payment_id))] += 1
            if cursor is None:
                break
    for payment_id, intent in intents.items():
        if payment_id in seen:
            continue
        p = store.payments.get_payment(intent.tenant_id, payment_id)
        if p is None:  # its creation has not replicated here: its events will wait for it (retried)
            done["not_here_yet"] += 1
        elif p.is_final or p.is_resting:
            leases.clear_intent(home, payment_id)
    if home != platform.settings.region:
        while published := relay_once(store.outbox, platform.bus, origin=home):  # what its own relay never did
            done["republished"] += published
    log.warning("home region taken over", extra={"region": platform.settings.region, "home": home, **done})
    return done


def _drive(ctx: StageContext, p: Payment, intent: Intent | None) -> str:
    epoch, version = ctx.own(p), p.version
    changed = _may_have_reached_psp(ctx, p, intent)
    if p.state == State.OUTCOME_UNKNOWN:
        p.epoch = epoch
        due = Reminder(p.tenant_id, p.payment_id, iso(ctx.clock.now()))
        ctx.store.commit(Changes(payment=p if changed else None, expected_version=version if changed else None,
                                 reminders=[due], actor=f"stage:{NAME}"))
        return "status_checks"
    resume = _resume(ctx, p)
    if resume is None:
        return "left"
    ctx.store.commit(Changes(events=[ctx.event(None, p, *resume)], actor=f"stage:{NAME}"))
    return "redriven"


def keep_leases(platform: Platform, seconds: float, sleep: Callable[[float], None] = time.sleep,
                monotonic: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """The lease keeper for `seconds` (the scheduled Lambda: a minute's worth per invocation): a
    LeaseKeeper step every third of the ttl, and a scan of each home it takes."""
    s = platform.settings
    keeper = LeaseKeeper(platform.ownership, s.lease_ttl_s, s.takeover_regions, s.failback)
    deadline, steps, taken = monotonic() + seconds, 0, []
    while True:
        for home in keeper.step():
            taken.append({"home": home, **take_over(platform, home)})
        steps += 1
        if monotonic() + s.lease_ttl_s / 3 > deadline:
            return {"steps": steps, "taken": taken}
        sleep(s.lease_ttl_s / 3)
