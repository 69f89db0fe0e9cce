"""Invariant checks run after every simulation (DESIGN.md §5, I1-I4), returning violations as text."""
from __future__ import annotations

from collections import Counter
from typing import Any

import orjson

from chalicelib.domain.states import TRANSITIONS, Action, State

# Timeline entries that record something without changing state (from == to by design).
NO_STATE_CHANGE = {"request_refund", "refund_failed", "settle_refund", "notify", "status_check"}
HELD_AT_PSP = {"authorized", "captured", "voided"}


def check_all(sim: Any) -> list[str]:
    store, tenant = sim.store, sim.tenant_id
    payments = sim.all_payments()
    dlq_keys = {e["key"] for e in sim.dlq_entries()}
    out: list[str] = []
    approvals, captures = Counter(), Counter()
    for psp in sim.psps.values():
        approvals.update(psp.approvals())
        captures.update(psp.captured)
    out += [f"I1 {ref}: captured {n} times at the PSP" for ref, n in captures.items() if n > 1]
    for p in payments:
        pid = p.payment_id
        # I1: at most one successful authorization, at the PSP and in the store, and they agree.
        if approvals[pid] > 1:
            out.append(f"I1 {pid}: {approvals[pid]} successful authorizations at the PSPs")
        held = [a for a in p.attempts if a.status in HELD_AT_PSP]
        if len(held) > 1:
            out.append(f"I1 {pid}: {len(held)} authorized attempts in the store")
        if approvals[pid] and not held and p.status not in ("processing", "requires_review"):
            out.append(f"I1 {pid}: PSP charged it but the store says {p.state.value} ({_attempts(p)})")
        if held and not approvals[pid]:
            out.append(f"I1 {pid}: store says authorized, no PSP approval")
        # I2: nothing lost.
        if p.status == "processing" and pid not in dlq_keys:
            out.append(f"I2 {pid}: still {p.state.value} and named by no DLQ entry ({_attempts(p)})")
        out.extend(_timeline(pid, store.payments.timeline(tenant, pid), p.state.value))
    out.extend(_ledger(sim, payments))
    out.extend(_idempotency(sim, payments))
    out.extend(_reports(sim, payments))
    return out


def _reports(sim: Any, payments: list[Any]) -> list[str]:
    """The reporting consumer's counters, crashed and redelivered, equal a recount of the final state."""
    got = sim.raw_store.reports.report_counters(sim.tenant_id)
    held = {p.payment_id for p in payments if any(a.status in HELD_AT_PSP for a in p.attempts)}
    want: Counter = Counter(payments=len(payments), authorized=len(held))
    for p in payments:  # attempts are counted once authorization is decided: approved, or failed for good
        if p.payment_id in held or p.status in ("declined", "failed", "requires_review"):
            want.update(f"psp:{a.psp}:attempts" for a in p.attempts)
    return [f"reports: {k} counted {got.get(k, 0)}, recount {n}" for k, n in sorted(want.items())
            if got.get(k, 0) != n]


def _attempts(p: Any) -> str:
    return ", ".join(f"{a.psp}#{a.number}:{a.status}" for a in p.attempts) or "no attempts"


def _timeline(pid: str, timeline: list[dict[str, Any]], final: str) -> list[str]:
    """I3: every entry legal, chained to the one before, applied once."""
    out, state, seen = [], "initiated", set()
    if [t["seq"] for t in timeline] != list(range(1, len(timeline) + 1)):
        out.append(f"I3 {pid}: timeline sequence has gaps")
    for t in timeline:
        what = f"{t['action']} {t['from']}->{t['to']}"
        if t["from"] != state:
            out.append(f"I3 {pid}: '{what}' does not follow state {state}")
        if t["from"] == t["to"] and t["action"] in NO_STATE_CHANGE:
            pass
        else:
            try:
                legal = TRANSITIONS.get((State(t["from"]), Action(t["action"]))) == State(t["to"])
            except ValueError:
                legal = False
            if not legal:
                out.append(f"I3 {pid}: illegal transition '{what}'")
        once = (t["action"], t["from"], t["to"], orjson.dumps(t["detail"], option=orjson.OPT_SORT_KEYS))
        if once in seen:
            out.append(f"I3 {pid}: '{what}' {t['detail']} applied twice")
        seen.add(once)
        state = t["to"]
    if state != final:
        out.append(f"I3 {pid}: timeline ends in {state}, payment is {final}")
    return out


def _ledger(sim: Any, payments: list[Any]) -> list[str]:
    """I4: every transaction balanced per currency; one capture posting set per settled payment."""
    out = [f"I4 {t['txn_id']}: {t['currency']} sums to {t['sum']}" for t in sim.store.ledger.ledger_totals() if t["sum"]]
    for p in payments:
        txns = Counter(x["txn_id"] for x in sim.store.ledger.postings_for(sim.tenant_id, p.payment_id))
        capture = txns.get(f"txn_{p.payment_id}_capture", 0)
        settled = p.state.value in ("settled", "partially_refunded", "refunded")
        if settled and capture != 3 or not settled and capture:
            out.append(f"I4 {p.payment_id}: {capture} capture legs for a {p.state.value} payment")
        for r in p.refunds:
            legs = txns.get(f"txn_{r.refund_id}", 0)
            if legs not in (0, 2) or (legs and r.status != "succeeded"):
                out.append(f"I4 {p.payment_id}: refund {r.refund_id} ({r.status}) has {legs} legs")
    return out


def _idempotency(sim: Any, payments: list[Any]) -> list[str]:
    """Same key + same body -> exactly one payment; every stored payment was answered under one key."""
    out, owner = [], {}
    for key, answered in sim.answers.items():
        if len(answered) > 1:
            out.append(f"API key {key}: answered with {len(answered)} different payments {sorted(answered)}")
        for pid in answered:
            if pid in owner:
                out.append(f"API {pid}: answered under two keys {owner[pid]} and {key}")
            owner[pid] = key
    for p in payments:
        if p.payment_id not in owner:
            out.append(f"API {p.payment_id}: stored but never answered 202 under any key")
    out.extend(sim.api_violations)
    return out
