"""One noisy tenant must not slow the others: a flood from one tenant against the real local stack
(`make local`'s processes) over HTTP, with a second tenant and /health measured meanwhile.

The stated bound (README, "Security model"): while one tenant sends 500 requests/s for 5 s, another
tenant's p99 stays under QUIET_P99_MS and /health's p50 under HEALTH_P50_MS; the flood gets 429s,
and no more of it is admitted than its limit allows (burst + rate x time, over at most two windows).
"""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest

from ..stack import start_local, stop_local

FLOOD_PER_S, SECONDS, FLOODERS = 500, 5.0, 16
RATE, BURST = 100, 200  # the flooded tenant's limit, smaller than the default so that it bites
QUIET_P99_MS, HEALTH_P50_MS = 500.0, 50.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = start_local(tmp_path_factory.mktemp("noisy"), RATE_LIMIT_PER_S=str(RATE), RATE_LIMIT_BURST=str(BURST))
    yield stack
    stop_local(stack)


def _get(base: str, path: str, key: str | None) -> tuple[int, float]:
    req = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {key}"} if key else {})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()
            code = r.status
    except urllib.error.HTTPError as e:
        e.read()
        code = e.code
    return code, (time.perf_counter() - started) * 1000


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def test_a_flood_from_one_tenant_leaves_the_others_within_the_bound(stack):
    noisy = stack.payctl("tenant", "create", "noisy")["api_key"]
    quiet = stack.payctl("tenant", "create", "quiet")["api_key"]
    codes: dict[int, int] = {}
    lock = threading.Lock()
    stop = time.monotonic() + SECONDS

    def flood() -> None:
        start, sent = time.monotonic(), 0
        while time.monotonic() < stop:
            delay = start + sent * FLOODERS / FLOOD_PER_S - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            code, _ = _get(stack.base, "/v1/payments?limit=1", noisy)
            with lock:
                codes[code] = codes.get(code, 0) + 1
            sent += 1
    flooders = [threading.Thread(target=flood) for _ in range(FLOODERS)]
    for t in flooders:
        t.start()
    quiet_ms, health_ms, quiet_codes = [], [], set()
    while time.monotonic() < stop:
        code, ms = _get(stack.base, "/v1/payments?limit=1", quiet)
        quiet_codes.add(code)
        quiet_ms.append(ms)
        health_ms.append(_get(stack.base, "/health", None)[1])
        time.sleep(0.05)
    for t in flooders:
        t.join()
    report = {"flood": codes, "quiet_p50_ms": round(_pct(quiet_ms, 0.5), 1),
              "quiet_p99_ms": round(_pct(quiet_ms, 0.99), 1), "health_p50_ms": round(_pct(health_ms, 0.5), 1),
              "quiet_requests": len(quiet_ms)}
    print("\nnoisy tenant:", json.dumps(report))
    assert quiet_codes == {200}, report  # the quiet tenant is never refused
    assert codes.get(429, 0) > 0 and set(codes) <= {200, 429}, report
    assert codes.get(200, 0) <= 2 * BURST + RATE * SECONDS, report  # two windows at most, plus the refill
    assert report["quiet_p99_ms"] < QUIET_P99_MS and report["health_p50_ms"] < HEALTH_P50_MS, report
