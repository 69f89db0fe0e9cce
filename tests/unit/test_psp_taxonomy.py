"""The shared PSP error taxonomy decides retry, cascade or stop, and the stages act on it as it says."""
from __future__ import annotations

import pytest

from chalicelib.domain.psp import (DECISIONS, FAILOVER_OUTCOMES, Decision, ErrorClass, Outcome, PspResult, decide,
                                   outcome_for)
from chalicelib.errors import TransientError
from chalicelib.stages import capture

EXPECTED = {  # (authorization, follow-up: capture / void / refund)
    ErrorClass.HARD_DECLINE: (Decision.STOP, Decision.STOP),
    ErrorClass.SOFT_DECLINE: (Decision.CASCADE, Decision.RETRY),
    ErrorClass.FRAUD: (Decision.STOP, Decision.STOP),
    ErrorClass.INSUFFICIENT_FUNDS: (Decision.STOP, Decision.STOP),
    ErrorClass.AUTHENTICATION_REQUIRED: (Decision.STOP, Decision.STOP),
    ErrorClass.PSP_ERROR: (Decision.CASCADE, Decision.STOP),
    ErrorClass.UNAVAILABLE: (Decision.CASCADE, Decision.RETRY),
    ErrorClass.UNKNOWN: (Decision.RETRY, Decision.RETRY),
}


def test_every_class_has_a_decision_and_the_issue_names_every_class():
    assert set(DECISIONS) == set(ErrorClass) == set(EXPECTED)
    assert {e.value for e in ErrorClass} >= {"hard_decline", "soft_decline", "fraud", "insufficient_funds",
                                              "authentication_required", "psp_error", "unavailable", "unknown"}


@pytest.mark.parametrize("error", list(ErrorClass))
def test_decisions(error):
    assert (decide(error), decide(error, authorization=False)) == EXPECTED[error]


@pytest.mark.parametrize("error", list(ErrorClass))
def test_the_authorization_stage_fails_over_exactly_when_the_taxonomy_says_cascade(error):
    outcome = outcome_for(error)
    assert (outcome in FAILOVER_OUTCOMES) == (decide(error) is Decision.CASCADE)
    assert (outcome is Outcome.DECLINED) == (decide(error) is Decision.STOP)
    assert (outcome is Outcome.UNKNOWN) == (decide(error) is Decision.RETRY)  # resolved at the same PSP


@pytest.mark.parametrize("error", list(ErrorClass))
def test_the_capture_stage_retries_exactly_when_the_taxonomy_says_retry(error):
    result = PspResult(outcome_for(error, authorization=False), None, error.value, "x", error_class=error)
    retried = False
    try:
        capture._definite(result, "capture", type("P", (), {"payment_id": "pay_1"})())
    except TransientError:
        retried = True
    assert retried == (decide(error, authorization=False) is Decision.RETRY)


def test_an_unknown_outcome_is_never_cascaded():
    # I1: a request that may have been processed must be resolved at the PSP that got it.
    assert outcome_for(ErrorClass.UNKNOWN) not in FAILOVER_OUTCOMES
    assert decide(ErrorClass.UNKNOWN) is Decision.RETRY
