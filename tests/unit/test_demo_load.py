"""`payctl demo`'s load flags and report, without a stack (the e2e suite runs it against one)."""
from __future__ import annotations

import pytest
from payctl.demo import DemoError, Load, percentile, summarize


def test_count_mode_is_the_default():
    assert Load.parse(None, None, None, None) == Load(20, None, 8)
    assert Load.parse(300, None, None, 4) == Load(300, None, 4)


def test_rate_with_duration_sends_rate_times_duration_with_enough_clients():
    assert Load.parse(None, 50, 30, None) == Load(1500, 50.0, 25)
    assert Load.parse(None, 0.5, 3, None) == Load(2, 0.5, 8)  # rounded, never below one payment
    assert Load.parse(10, 5, None, None) == Load(10, 5.0, 8)  # a count at a rate


@pytest.mark.parametrize("count, rate, duration, concurrency, says", [
    (0, None, None, None, "--count must be at least 1"),
    (None, 0, 5, None, "--rate must be"),
    (None, float("nan"), 5, None, "--rate must be"),
    (None, None, 5, None, "--duration needs --rate"),
    (None, 10, -1, None, "--duration must be"),
    (5, 10, 3, None, "not both"),
    (None, None, None, 0, "--concurrency must be at least 1"),
    (2_000_000, None, None, None, "at most"),
])
def test_bad_flags_say_which_and_why(count, rate, duration, concurrency, says):
    with pytest.raises(DemoError, match=says):
        Load.parse(count, rate, duration, concurrency)


def test_percentile_is_nearest_rank():
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile(list(range(1, 101)), 0.99) == 99


def test_report_measures_accept_to_final_by_the_api_clock():
    final = {"p1": {"status": "settled", "created_at": "2026-01-01T00:00:00.000000Z",
                    "updated_at": "2026-01-01T00:00:00.100000Z"},
             "p2": {"status": "failed", "created_at": "2026-01-01T00:00:01.000000Z",
                    "updated_at": "2026-01-01T00:00:02.000000Z"}}
    r = summarize(Load(4, 2.0, 8), 4, ["p1", "p2", "p3"], {"rejected 429": 1}, final, 0, 5.0, 1.5, "http://x")
    assert (r["sent"], r["accepted"], r["rejected"], r["final"], r["failed"], r["still_processing"]) == (4, 3, 1, 2, 1, 1)
    assert r["outcomes"] == {"rejected 429": 1, "settled": 1, "failed": 1, "still processing": 1}
    assert r["latency_ms"]["p50"] == 100.0 and r["latency_ms"]["max"] == 1000.0
    assert r["end_to_end_s"] == 2.0 and r["payments_per_s"] == 1.0  # 2 final over first accept -> last final
    assert r["mode"] == "rate" and r["accepted_per_s"] == 2.0


def test_report_with_nothing_final_has_no_rates():
    r = summarize(Load(1, None, 8), 1, ["p1"], {}, {}, 0, 1.0, 0.1, "http://x")
    assert r["payments_per_s"] is None and r["latency_ms"] == {"p50": None, "p95": None, "p99": None, "max": None}


def test_progress_without_a_terminal_prints_plain_lines():
    import io

    from rich.console import Console

    from payctl.demo import _Lines
    out = io.StringIO()
    lines = _Lines(Console(file=out, force_terminal=False, width=200), every_s=3600)
    task = lines.add_task("sending", total=3)
    for _ in range(3):
        lines.advance(task)
    assert out.getvalue().splitlines() == ["payctl demo: sending 3/3"]  # the interval, then completion
