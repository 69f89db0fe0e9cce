"""The dashboard in a real headless browser: Debian's chromium driven by Playwright, against `make local`.

Needs /usr/bin/chromium (`apt-get install chromium`; `playwright install` is never used).
Without it the test is skipped with the reason, unless CI=1 or REQUIRE_BROWSER=1: then it fails.
The screenshot lands in test-artifacts/dashboard.png (git-ignored).
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from chalicelib.adapters.sqlite.bus import SqliteBus
from chalicelib.ports import OutRecord
from chalicelib.stages import FLOW

from ..stack import ROOT

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "test-artifacts"
WAIT_MS = 60_000


def _no_browser(reason: str) -> None:
    if os.environ.get("CI") == "1" or os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser test required (CI=1 / REQUIRE_BROWSER=1) but {reason}", pytrace=False)
    pytest.skip(f"{reason}; install Debian's chromium (apt-get install -y chromium) to run it")


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _no_browser("the playwright package is not installed (make install pins it)")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        _no_browser(f"no browser at {CHROMIUM}")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def dashboard_url(local_stack) -> str:
    """`make local` must print where the dashboard is."""
    printed = [m.group(1) for line in local_stack.output if (m := re.search(r"dashboard\s+(http://\S+)", line))]
    assert printed, "make local did not print the dashboard URL:\n" + "".join(local_stack.output)
    assert printed[0] == f"http://127.0.0.1:{local_stack.env['DASHBOARD_PORT']}/"
    return printed[0]


def test_dashboard_shows_the_demo_payments_and_a_timeline(browser, local_stack):
    url = dashboard_url(local_stack)
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("requestfailed", lambda req: problems.append(f"request failed: {req.url}"))

    page.goto(url)
    page.wait_for_selector("body[data-loaded=true]", timeout=WAIT_MS)
    assert problems == []
    assert page.inner_text("#dlq-depth") == "0"

    report = local_stack.payctl("demo", "--count", "20", "--timeout", "90")
    assert report["accepted"] == 20 and report["outcomes"].get("still processing", 0) == 0
    listed = {p["id"]: p for p in local_stack.list_all()}
    assert len(listed) == 20  # a fresh stack: the demo's payments are all there is

    # A poison record on the bus: the worker dead-letters it, the dashboard shows it for inspection.
    SqliteBus(Path(local_stack.env["DATA_DIR"]) / "bus.db").publish(
        [OutRecord("payments.initiated", "pay_poison_browser", b'{"not": "an event"',
                   (("tenant_id", local_stack.tenant_id.encode()),))])

    # The charts and tables catch up by polling /api/metrics every 2 s.
    page.wait_for_function("""() => {
        const rows = document.querySelectorAll('#recent-payments tbody tr').length;
        const accepted = document.querySelector('#throughput-chart polyline[data-series=accepted]');
        return rows >= 20 && accepted && Number(accepted.dataset.total) >= 20
            && document.querySelector('#tile-payments').textContent === '20'
            && document.querySelector('#dlq-depth').textContent === '1';
    }""", timeout=WAIT_MS)
    shown = page.eval_on_selector_all("#recent-payments tbody tr", "rows => rows.map(r => r.dataset.paymentId)")
    assert set(shown) == set(listed)
    statuses = page.eval_on_selector_all("#recent-payments tbody tr td:nth-child(4)", "cells => cells.map(c => c.textContent)")
    assert sorted(statuses) == sorted(p["status"] for p in listed.values())
    totals = page.eval_on_selector_all("#throughput-chart polyline",
                                       "ls => Object.fromEntries(ls.map(l => [l.dataset.series, Number(l.dataset.total)]))")
    settled = sum(1 for p in listed.values() if p["status"] == "settled")
    assert totals["accepted"] == 20 and totals["settled"] == settled
    bars = page.eval_on_selector_all("#latency-chart rect.p95", "rs => rs.map(r => r.dataset.stage)")
    assert set(FLOW) <= set(bars)  # every stage of the flow has a latency bar (reconciliation too, if it ran)
    assert "20 payments" in page.inner_text("#report-summary")
    currencies = page.eval_on_selector_all("#report-currencies tbody td:first-child", "cs => cs.map(c => c.textContent)")
    assert currencies == ["EUR", "GBP", "USD"]
    shown_psps = page.eval_on_selector_all("#psp-health tbody tr",
                                           "rows => rows.map(r => [r.cells[0].textContent, r.cells[1].textContent])")
    served = page.evaluate("() => fetch('/api/metrics').then(r => r.json()).then(m => m.psps.map(p => [p.psp, p.breaker]))")
    assert shown_psps == served and [p for p, _ in shown_psps] == ["sim-a", "sim-b"]

    # Inspect the DLQ entry.
    page.click("#dlq tbody tr")
    page.wait_for_selector("#dlq-detail:not([hidden])")
    assert "pay_poison_browser" in page.inner_text("#dlq-detail")

    # Drill down into a settled payment's timeline.
    pid = next(p for p, doc in listed.items() if doc["status"] == "settled")
    page.click(f"#recent-payments tbody tr[data-payment-id='{pid}']")
    page.wait_for_selector("#trace-panel:not([hidden])")
    page.wait_for_function("pid => document.querySelector('#trace-panel').dataset.paymentId === pid", arg=pid)
    stages = page.eval_on_selector_all("#trace-steps tbody td:nth-child(2)", "cs => cs.map(c => c.textContent)")
    assert [s for s in dict.fromkeys(stages) if s in FLOW] == list(FLOW)  # all seven, in order
    gaps = page.eval_on_selector_all("#trace-steps tbody td:nth-child(5)", "cs => cs.map(c => Number(c.textContent))")
    assert all(g >= 0 for g in gaps)
    assert len(page.query_selector_all("#trace-chart rect.step")) == len(stages)
    assert pid in page.inner_text("#trace-title") and "settled" in page.inner_text("#trace-title")

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    print(f"\nscreenshot: {shot}")
    assert problems == []
    page.close()
