"""The Payment aggregate under random action sequences, plus the rules it must guard explicitly.

The property test applies legal and illegal actions alike. A refused action
(IllegalTransition / DomainError) is rolled back to the snapshot taken before
it, exactly as a stage or the API does when it does not commit; the
invariants are then checked after every step.
"""
from __future__ import annotations

import copy
import json
from typing import Callable

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.codec import payment_json
from chalicelib.domain.payment import DomainError, DoubleAuthorization, Payment
from chalicelib.domain.states import FINAL, PUBLIC_STATUS, TRANSITIONS, Action, IllegalTransition, State

AT = "2026-11-25T10:00:00.000000Z"
PAYMENT_ID = "pay_01JD0000000000000000000001"
PSPS = ("sim-a", "sim-b", "sim-c")
HELD = ("authorized", "captured", "voided")  # an attempt whose authorization succeeded at the PSP
# Timeline entries that record an event without changing state.
NO_STATE_CHANGE = {"request_refund", "refund_failed", "settle_refund"}


def new_payment(amount: int = 10_000, capture_mode: str = "automatic", currency: str = "EUR") -> Payment:
    return Payment(
        tenant_id="ten_demo", payment_id=PAYMENT_ID, amount=amount, currency=currency, capture_mode=capture_mode,
        payment_method={"type": "card", "card": {"token": "tok_1", "bin": "424242", "last4": "4242",
                                                 "exp_month": 12, "exp_year": 2030}},
        reference="order-1", customer={"id": "c1", "country": "DE"}, correlation_id="corr-1", created_at=AT)


# -- a legal path to every state -------------------------------------------------------
def _authorizing(p):
    _screened(p)
    p.set_route(AT, ["sim-a", "sim-b"])
    p.start_attempt(AT, "sim-a")


def _screened(p):
    p.validate(AT)
    p.screen(AT, "approve", 0, [])


def _authorized(p):
    _authorizing(p)
    p.attempt_authorized(AT, "psp_ref_1")


def _requires_capture(p):
    _authorized(p)
    p.await_capture(AT)


def _settled(p):
    _authorized(p)
    p.captured(AT, p.amount, "psp_ref_1")
    p.settle(AT, "2026-11-25")


PATHS: dict[State, Callable[[Payment], None]] = {
    State.INITIATED: lambda p: None,
    State.VALIDATED: lambda p: p.validate(AT),
    State.SCREENED: _screened,
    State.ROUTED: lambda p: (_screened(p), p.set_route(AT, ["sim-a"])),
    State.AUTHORIZING: _authorizing,
    State.OUTCOME_UNKNOWN: lambda p: (_authorizing(p), p.attempt_unknown(AT, "timeout")),
    State.REQUIRES_ACTION: lambda p: (_authorizing(p), p.attempt_requires_action(AT, "psp_3ds", {"type": "redirect"})),
    State.AUTHORIZED: _authorized,
    State.REQUIRES_CAPTURE: _requires_capture,
    State.CAPTURING: lambda p: (_requires_capture(p), p.request_capture(AT, p.amount)),
    State.CANCELLING: lambda p: (_requires_capture(p), p.request_cancel(AT)),
    State.CAPTURED: lambda p: (_authorized(p), p.captured(AT, p.amount, "psp_ref_1")),
    State.SETTLED: _settled,
    State.PARTIALLY_REFUNDED: lambda p: (_settled(p), p.request_refund(AT, "re_1", p.amount // 4, None),
                                         p.refund_succeeded(AT, "re_1", "psp_re_1")),
    State.REFUNDED: lambda p: (_settled(p), p.request_refund(AT, "re_1", p.amount, None),
                               p.refund_succeeded(AT, "re_1", "psp_re_1")),
    State.DECLINED: lambda p: (p.validate(AT), p.screen(AT, "reject", 100, ["blocked"])),
    State.FAILED: lambda p: p.fail(AT, "validation", "invalid_amount", "bad"),
    State.CANCELLED: lambda p: p.request_cancel(AT),
    State.REQUIRES_REVIEW: lambda p: (p.validate(AT), p.screen(AT, "review", 60, ["big"])),
}


def payment_in(state: State, **kw) -> Payment:
    p = new_payment(**kw)
    PATHS[state](p)
    assert p.state == state
    return p


def test_the_payment_api_reaches_every_state():
    assert set(PATHS) == set(State)
    for state in State:
        assert payment_in(state).state == state


# -- invariants ------------------------------------------------------------------------
def check_invariants(p: Payment, before: State) -> None:
    assert isinstance(p.state, State)
    assert p.status == PUBLIC_STATUS[p.state]
    previous = State.INITIATED
    for entry in p.pending_timeline:
        assert entry.from_state == previous.value, "timeline is not a contiguous chain of states"
        if entry.action in NO_STATE_CHANGE:
            assert entry.to_state == entry.from_state, entry
        else:
            key = (State(entry.from_state), Action(entry.action))
            assert TRANSITIONS.get(key) == State(entry.to_state), f"illegal timeline entry {entry}"
        previous = State(entry.to_state)
    assert previous == p.state, "state changed without a timeline entry"
    held = [a for a in p.attempts if a.status in HELD]
    assert len(held) <= 1, f"more than one successful authorization: {held}"
    assert [a.number for a in p.attempts] == list(range(1, len(p.attempts) + 1))
    assert 0 <= p.refunded_amount <= p.captured_amount
    assert sum(r.amount for r in p.refunds if r.status in ("pending", "succeeded")) <= p.captured_amount
    if before in FINAL:
        assert p.state == before, f"left final state {before.value} for {p.state.value}"


# -- random actions ------------------------------------------------------------------------
def _psp(d):
    return d.draw(st.sampled_from(PSPS))


def _any_refund_or_unknown(p: Payment, d) -> str:
    # Any refund, settled or not, or an unknown id: the aggregate must refuse what is not pending.
    return d.draw(st.sampled_from([r.refund_id for r in p.refunds] + ["re_unknown"]))


def _request_refund(p, d):
    amount = d.draw(st.one_of(st.just(p.refundable_amount), st.integers(-1, p.captured_amount + 2)))
    p.request_refund(AT, f"re_{len(p.refunds) + 1}", amount, None)


ACTIONS: dict[str, tuple[Callable[[Payment, st.DataObject], object], tuple[Action, ...] | None]] = {
    # name: (apply, the table actions that make it legal; None = no state change of its own)
    "validate": (lambda p, d: p.validate(AT), (Action.VALIDATE,)),
    "screen_approve": (lambda p, d: p.screen(AT, "approve", d.draw(st.integers(0, 59)), []), (Action.APPROVE_RISK,)),
    "screen_review": (lambda p, d: p.screen(AT, "review", 60, ["amount"]), (Action.HOLD_FOR_REVIEW,)),
    "screen_reject": (lambda p, d: p.screen(AT, "reject", 100, ["country"]), (Action.DECLINE,)),
    "set_route": (lambda p, d: p.set_route(AT, d.draw(st.lists(st.sampled_from(PSPS), min_size=1, unique=True))),
                  (Action.ROUTE,)),
    "start_attempt": (lambda p, d: p.start_attempt(AT, _psp(d)), (Action.START_ATTEMPT,)),
    "attempt_authorized": (lambda p, d: p.attempt_authorized(AT, "psp_ref"), (Action.AUTHORIZE,)),
    "attempt_declined": (lambda p, d: p.attempt_declined(AT, "do_not_honor", "declined"), (Action.DECLINE,)),
    "attempt_failed": (lambda p, d: p.attempt_failed(AT, "unavailable", "503"), None),
    "attempt_unknown": (lambda p, d: p.attempt_unknown(AT, "timeout"), (Action.MARK_UNKNOWN,)),
    "attempt_requires_action": (lambda p, d: p.attempt_requires_action(AT, "psp_3ds", {"type": "redirect"}),
                                (Action.AWAIT_ACTION,)),
    "await_capture": (lambda p, d: p.await_capture(AT), (Action.AWAIT_CAPTURE,)),
    "request_capture": (lambda p, d: p.request_capture(AT, d.draw(st.integers(-1, p.amount + 1))),
                        (Action.REQUEST_CAPTURE,)),
    "captured": (lambda p, d: p.captured(AT, d.draw(st.integers(1, p.amount)), "psp_cap"), (Action.CAPTURE,)),
    "request_cancel": (lambda p, d: p.request_cancel(AT), (Action.REQUEST_CANCEL, Action.CANCEL)),
    "voided": (lambda p, d: p.voided(AT), (Action.VOID,)),
    "settle": (lambda p, d: p.settle(AT, "2026-11-25"), (Action.SETTLE,)),
    "request_refund": (_request_refund, (Action.REFUND_PARTIAL, Action.REFUND_FULL)),
    "refund_succeeded": (lambda p, d: p.refund_succeeded(AT, _any_refund_or_unknown(p, d), "psp_re"),
                         (Action.REFUND_PARTIAL, Action.REFUND_FULL)),
    "refund_failed": (lambda p, d: p.refund_failed(AT, _any_refund_or_unknown(p, d), "refused"),
                      (Action.REFUND_PARTIAL, Action.REFUND_FULL)),
    "fail": (lambda p, d: p.fail(AT, "some_stage", "boom", "it broke"), (Action.FAIL,)),
}


def _available(p: Payment) -> list[str]:
    return list(ACTIONS)


def _targets(p: Payment, name: str) -> set[State] | None:
    """States the table allows this action to reach from here (None: no state change of its own).

    Used only to steer the search deep into the graph, never to decide what is legal."""
    table_actions = ACTIONS[name][1]
    if table_actions is None:
        return {p.state} if p.state in (State.AUTHORIZING, State.OUTCOME_UNKNOWN) else set()
    return {TRANSITIONS[(p.state, a)] for a in table_actions if (p.state, a) in TRANSITIONS}


def _choose(p: Payment, data) -> str:
    names = _available(p)
    plausible = [n for n in names if _targets(p, n)]
    onward = [n for n in plausible if not _targets(p, n) <= FINAL]
    mode = data.draw(st.integers(0, 9), label="mode")
    if mode == 0 or not plausible:
        pool = names  # anything, legal or not
    elif mode == 1 or not onward:
        pool = plausible  # includes ending the payment (fail, cancel, decline)
    else:
        pool = onward  # keep the payment alive so deep states get exercised
    return data.draw(st.sampled_from(pool), label="action")


def _snapshot(p: Payment) -> Payment:
    """A deep copy to roll back to; timeline entries are append-only, so that list is copied shallowly."""
    timeline, p.pending_timeline = p.pending_timeline, []
    try:
        snapshot = copy.deepcopy(p)
    finally:
        p.pending_timeline = timeline
    snapshot.pending_timeline = list(timeline)
    return snapshot


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.integers(1, 1_000_000), st.sampled_from(["automatic", "manual"]))
def test_random_action_sequences_keep_the_invariants(data, amount, capture_mode):
    p = new_payment(amount=amount, capture_mode=capture_mode)
    poke_final = 3  # a few actions against a final state are enough to show it stays put
    for _ in range(data.draw(st.integers(1, 40), label="steps")):
        if p.state in FINAL:
            if poke_final == 0:
                break
            poke_final -= 1
        name = _choose(p, data)
        before, snapshot = p.state, _snapshot(p)
        try:
            ACTIONS[name][0](p, data)
        except IllegalTransition as e:
            assert e.payment_id == PAYMENT_ID and e.state == before
            p = snapshot
        except DomainError:
            p = snapshot
        check_invariants(p, before)
    # Whatever happened, the persistence shape survives a JSON round trip.
    doc = json.loads(json.dumps(p.to_dict()))
    assert Payment.from_dict(doc).to_dict() == p.to_dict()
    # The stores' fast serializer writes exactly what to_dict would.
    assert payment_json(p, 7) == orjson.dumps(p.to_dict() | {"version": 7})
    assert payment_json(p) == orjson.dumps(p.to_dict())


# -- explicit rules --------------------------------------------------------------------------------------
def test_authorizing_twice_raises_double_authorization():
    p = payment_in(State.AUTHORIZED)
    with pytest.raises(DoubleAuthorization):
        p.attempt_authorized(AT, "psp_ref_2")
    assert [a.status for a in p.attempts] == ["authorized"]


def test_authorizing_twice_across_attempts_raises_double_authorization():
    p = payment_in(State.OUTCOME_UNKNOWN)
    p.attempt_authorized(AT, "psp_ref_1")
    with pytest.raises(DoubleAuthorization):
        p.attempt_authorized(AT, "psp_ref_again")


@pytest.mark.parametrize("state", [State.AUTHORIZED, State.REQUIRES_CAPTURE, State.CAPTURED, State.SETTLED,
                                   State.CANCELLING])
def test_no_new_attempt_once_authorized(state):
    p = payment_in(state)
    with pytest.raises(DoubleAuthorization):
        p.start_attempt(AT, "sim-b")
    assert len(p.attempts) == 1


def test_failover_starts_a_numbered_attempt_with_its_own_idempotency_key():
    p = payment_in(State.AUTHORIZING)
    p.attempt_failed(AT, "unavailable", "503")
    second = p.start_attempt(AT, "sim-b")
    assert (second.number, second.psp, second.status) == (2, "sim-b", "pending")
    assert p.attempts[0].idempotency_key != second.idempotency_key
    assert p.tried_psps() == ["sim-a", "sim-b"]


def test_request_capture_bounds():
    p = payment_in(State.REQUIRES_CAPTURE, amount=500)
    for bad in (0, -1, 501):
        with pytest.raises(DomainError):
            p.request_capture(AT, bad)
    assert p.state == State.REQUIRES_CAPTURE
    p.request_capture(AT, 500)
    assert p.state == State.CAPTURING


def test_partial_then_full_refund():
    p = payment_in(State.SETTLED, amount=1000)
    p.request_refund(AT, "re_1", 300, "damaged")
    assert p.refundable_amount == 700
    with pytest.raises(DomainError):
        p.request_refund(AT, "re_2", 701, None)
    p.refund_succeeded(AT, "re_1", "psp_re_1")
    assert (p.state, p.refunded_amount) == (State.PARTIALLY_REFUNDED, 300)
    p.request_refund(AT, "re_2", 700, None)
    p.refund_succeeded(AT, "re_2", "psp_re_2")
    assert (p.state, p.refunded_amount, p.refundable_amount) == (State.REFUNDED, 1000, 0)


def test_failed_refund_releases_its_reservation():
    p = payment_in(State.SETTLED, amount=1000)
    p.request_refund(AT, "re_1", 1000, None)
    assert p.refundable_amount == 0
    p.refund_failed(AT, "re_1", "refused")
    assert (p.state, p.refundable_amount) == (State.SETTLED, 1000)


@pytest.mark.parametrize("state", [State.CAPTURED, State.DECLINED, State.REFUNDED, State.CANCELLED])
def test_refund_is_an_illegal_transition_outside_settled_states(state):
    p = payment_in(state)
    refunds = list(p.refunds)
    with pytest.raises(IllegalTransition):  # the state machine refuses it, as capture and cancel (HTTP 409)
        p.request_refund(AT, "re_new", 1, None)
    assert p.refunds == refunds and p.state == state


def _full_payment() -> Payment:
    p = payment_in(State.PARTIALLY_REFUNDED, amount=4321, capture_mode="manual", currency="JPY")
    p.request_refund(AT, "re_2", 7, "late")
    p.refund_failed(AT, "re_2", "refused")
    p.version, p.updated_at, p.region = 7, "2026-11-25T11:00:00.000000Z", "eu-west-1"
    p.metadata = {"order": "42", "note": "ünïcode"}
    p.failure = {"code": "x", "message": "y", "stage": "z"}
    return p


def test_to_dict_from_dict_round_trip_preserves_everything():
    p = _full_payment()
    doc = p.to_dict()
    assert "pending_timeline" not in doc
    assert doc["state"] == "partially_refunded"
    back = Payment.from_dict(json.loads(json.dumps(doc)))
    assert back.to_dict() == doc
    assert back.state is State.PARTIALLY_REFUNDED
    assert back.attempts == p.attempts and back.refunds == p.refunds
    assert back.pending_timeline == []
    # Every field of the dataclass made the trip (nothing silently dropped).
    for name in Payment.__dataclass_fields__:
        if name != "pending_timeline":
            assert getattr(back, name) == getattr(p, name), name
    assert (back.refunded_amount, back.refundable_amount, back.authorized_attempt) == (
        p.refunded_amount, p.refundable_amount, p.authorized_attempt)


# -- bugs found while writing these tests (see the report) ------------------------------------------------
def test_second_cancel_while_cancelling_does_not_skip_the_void():
    p = payment_in(State.REQUIRES_CAPTURE)
    assert p.request_cancel(AT) is True  # void requested
    with pytest.raises(IllegalTransition):
        p.request_cancel(AT)  # today: returns False and moves to CANCELLED
    assert p.state == State.CANCELLING


def test_refund_cannot_succeed_after_it_failed():
    p = payment_in(State.SETTLED, amount=100)
    p.request_refund(AT, "re_1", 60, None)
    p.refund_failed(AT, "re_1", "refused")
    p.request_refund(AT, "re_2", 60, None)
    p.refund_succeeded(AT, "re_2", "psp_re_2")
    with pytest.raises(DomainError):
        p.refund_succeeded(AT, "re_1", "psp_re_1")
    assert p.refunded_amount <= p.captured_amount


@pytest.mark.parametrize("state", [State.AUTHORIZING, State.OUTCOME_UNKNOWN])
def test_failover_requires_the_current_attempt_to_have_failed(state):
    p = payment_in(state)
    with pytest.raises(DomainError):
        p.start_attempt(AT, "sim-b")
    assert len(p.attempts) == 1


@pytest.mark.parametrize("state", [State.INITIATED, State.ROUTED, State.DECLINED])
def test_capture_without_authorization_is_an_illegal_transition(state):
    p = payment_in(state)
    with pytest.raises(IllegalTransition):
        p.captured(AT, p.amount, None)


@pytest.mark.parametrize("state", [State.AUTHORIZED, State.REQUIRES_CAPTURE, State.SETTLED])
def test_attempt_failed_cannot_erase_an_authorization(state):
    p = payment_in(state)
    with pytest.raises((IllegalTransition, DomainError)):
        p.attempt_failed(AT, "unavailable", "late 503")
    assert p.authorized_attempt is not None


@pytest.mark.parametrize("state,action", [
    (State.INITIATED, lambda p: p.start_attempt(AT, "sim-a")),
    (State.INITIATED, lambda p: p.request_capture(AT, 1)),
    (State.CAPTURED, lambda p: p.request_refund(AT, "re_1", 1, None)),
    (State.SETTLED, lambda p: p.validate(AT)),
    (State.SETTLED, lambda p: p.request_cancel(AT)),
    pytest.param(State.SETTLED, lambda p: p.fail(AT, "x", "boom", "late failure")),
    pytest.param(State.INITIATED, lambda p: p.set_route(AT, ["sim-a"])),
    pytest.param("declined_by_psp", lambda p: p.attempt_authorized(AT, "psp_ref_late")),
    pytest.param(State.REFUNDED, lambda p: p.voided(AT)),
], ids=["start_attempt", "request_capture", "request_refund", "validate", "request_cancel", "fail", "set_route",
        "attempt_authorized", "voided"])
def test_a_refused_action_leaves_the_payment_unchanged(state, action):
    if state == "declined_by_psp":
        p = payment_in(State.AUTHORIZING)
        p.attempt_declined(AT, "do_not_honor", "declined")
    else:
        p = payment_in(state)
    before = copy.deepcopy(p.to_dict())
    timeline = len(p.pending_timeline)
    with pytest.raises((IllegalTransition, DomainError)):
        action(p)
    assert p.to_dict() == before
    assert len(p.pending_timeline) == timeline
