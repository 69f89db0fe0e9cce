"""The transition table in domain/states.py: complete, closed, and honest about what merchants see."""
from __future__ import annotations

from collections import deque

import pytest

from chalicelib.domain.states import (
    FINAL, PUBLIC_STATUS, PUBLIC_STATUSES, RESTING, TRANSITIONS, Action, IllegalTransition, State, mermaid,
    next_state,
)

EXPECTED_PUBLIC = {"processing", "requires_action", "requires_capture", "settled", "declined", "failed", "cancelled", "refunded",
                   "partially_refunded", "requires_review"}


def _reachable(start: State) -> set[State]:
    seen, todo = {start}, deque([start])
    while todo:
        here = todo.popleft()
        for (src, _), dst in TRANSITIONS.items():
            if src == here and dst not in seen:
                seen.add(dst)
                todo.append(dst)
    return seen


def test_every_state_is_reachable_from_initiated():
    unreachable = set(State) - _reachable(State.INITIATED)
    assert not unreachable, f"no path from initiated to {sorted(s.value for s in unreachable)}"


def test_every_state_has_a_public_status():
    assert set(PUBLIC_STATUS) == set(State)


def test_public_statuses_are_exactly_the_documented_ones():
    assert set(PUBLIC_STATUS.values()) == EXPECTED_PUBLIC
    assert PUBLIC_STATUSES == tuple(sorted(EXPECTED_PUBLIC))


@pytest.mark.parametrize("state", sorted(FINAL, key=lambda s: s.value), ids=lambda s: s.value)
def test_final_states_have_no_outgoing_transitions(state):
    outgoing = {a.value: d.value for (s, a), d in TRANSITIONS.items() if s == state}
    assert outgoing == {}


def test_final_states_are_the_terminal_ones():
    # A state with no way out must be declared FINAL, and FINAL states are resting ones.
    terminal = {s for s in State if not any(src == s for (src, _) in TRANSITIONS)}
    assert terminal == FINAL
    assert FINAL <= RESTING


def test_resting_states_are_exactly_the_non_processing_ones():
    assert RESTING == {s for s, public in PUBLIC_STATUS.items() if public != "processing"}


@pytest.mark.parametrize("state", sorted(set(State) - FINAL, key=lambda s: s.value), ids=lambda s: s.value)
def test_every_live_state_can_still_finish(state):
    assert _reachable(state) & FINAL, f"{state.value} can never reach a final state"


def test_table_only_uses_declared_states_and_actions():
    for (src, action), dst in TRANSITIONS.items():
        assert isinstance(src, State) and isinstance(action, Action) and isinstance(dst, State)


def test_every_action_is_used_by_the_table():
    assert {a for (_, a) in TRANSITIONS} == set(Action)


def test_next_state_follows_the_table():
    for (src, action), dst in TRANSITIONS.items():
        assert next_state("pay_x", src, action) is dst


@pytest.mark.parametrize("state,action", [(State.SETTLED, Action.AUTHORIZE), (State.INITIATED, Action.CAPTURE),
                                          (State.CANCELLED, Action.CANCEL), (State.REFUNDED, Action.REFUND_FULL)])
def test_illegal_transition_names_payment_state_and_action(state, action):
    assert (state, action) not in TRANSITIONS
    with pytest.raises(IllegalTransition) as info:
        next_state("pay_01JD0000000000000000000042", state, action)
    message = str(info.value)
    assert "pay_01JD0000000000000000000042" in message
    assert f"'{state.value}'" in message
    assert f"'{action.value}'" in message
    assert (info.value.payment_id, info.value.state, info.value.action) == ("pay_01JD0000000000000000000042",
                                                                            state, action)


def test_every_missing_pair_is_illegal():
    for state in State:
        for action in Action:
            if (state, action) in TRANSITIONS:
                continue
            with pytest.raises(IllegalTransition):
                next_state("pay_x", state, action)


def test_mermaid_has_one_line_per_transition():
    lines = mermaid().splitlines()
    assert lines[0] == "stateDiagram-v2"
    assert lines[1].strip() == "[*] --> initiated"
    edges = [line.strip() for line in lines[2:]]
    expected = [f"{s.value} --> {d.value}: {a.value}" for (s, a), d in TRANSITIONS.items()]
    assert sorted(edges) == sorted(expected)
    assert len(edges) == len(set(edges)) == len(TRANSITIONS)
