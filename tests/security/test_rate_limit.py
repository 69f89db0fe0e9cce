"""Per-tenant rate limit: token bucket, 429 with Retry-After, one tenant never slows another."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.api.ratelimit import RateLimiter, retry_after
from chalicelib.config import ConfigError, Settings

from ..integration.conftest import stack  # noqa: F401 - the in-process platform fixture


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@settings(max_examples=300, deadline=None, database=None)
@given(st.floats(0.5, 50), st.integers(1, 20), st.lists(st.floats(0, 2), min_size=1, max_size=200))
def test_a_bucket_never_allows_more_than_burst_plus_rate_times_elapsed(rate, burst, gaps):
    clock = Clock()
    limiter = RateLimiter(rate, burst, clock)
    start, allowed = clock.t, 0
    for gap in gaps:
        clock.t += gap
        wait = limiter.take("ten_a")
        if wait == 0:
            allowed += 1
        else:
            assert 0 < wait <= 1 / rate + 1e-9
            clock_after = clock.t + wait  # waiting as told is enough
            probe = RateLimiter(rate, burst, lambda: clock_after)
            probe._buckets = dict(limiter._buckets)
            assert probe.take("ten_a") == 0
    assert allowed <= burst + rate * (clock.t - start) + 1e-6


def test_buckets_are_per_tenant():
    clock = Clock()
    limiter = RateLimiter(1, 2, clock)
    assert [limiter.take("ten_a") == 0 for _ in range(3)] == [True, True, False]
    assert limiter.take("ten_b") == 0
    clock.t += 1
    assert limiter.take("ten_a") == 0


@pytest.mark.parametrize("wait, header", [(0.001, 1), (0.999, 1), (1.0, 1), (1.01, 2), (7.5, 8)])
def test_retry_after_is_whole_seconds_never_zero(wait, header):
    assert retry_after(wait) == header


@pytest.mark.parametrize("env", [{"RATE_LIMIT_PER_S": "0"}, {"RATE_LIMIT_PER_S": "x"}, {"RATE_LIMIT_BURST": "0"}])
def test_bad_rate_limit_settings_are_refused(env):
    with pytest.raises(ConfigError):
        Settings.from_env(env)


def test_defaults_come_from_config():
    s = Settings.from_env({})
    assert (s.rate_limit_per_s, s.rate_limit_burst) == (200.0, 1000)


def test_over_the_limit_is_a_429_with_retry_after_and_other_tenants_carry_on(stack):
    clock = Clock()
    stack.platform.rate_limiter = RateLimiter(0.5, 3, clock)
    codes = [stack.get("/v1/payments").status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    r = stack.get("/v1/payments")
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "2" and r.headers["Content-Type"] == "application/problem+json"
    doc = json.loads(r.body)
    assert doc["status"] == 429 and doc["retry_after_s"] == 2
    # every authenticated route counts, POSTs included
    assert stack.post("/v1/payments", {"amount": 1}, **{"Idempotency-Key": "k"}).status_code == 429
    assert stack.get("/v1/payments", stack.other).status_code == 200  # another tenant is not slowed
    # a bad key is a 401 and costs the tenant nothing; /health is never limited
    assert stack.client.http.get("/v1/payments", headers={"Authorization": "Bearer pk_test_nope"}).status_code == 401
    assert stack.client.http.get("/health").status_code == 200
    clock.t += 2
    assert stack.get("/v1/payments").status_code == 200


def test_the_limit_is_shared_by_every_api_process(stack):
    """Two API processes (two Lambda containers) on one store: together they get the tenant's burst, not twice it."""
    from chalicelib import bootstrap
    from chalicelib.api.ratelimit import SharedRateLimiter
    clock = Clock()
    second = bootstrap.build(Settings.from_env())  # another process's platform on the same data
    a = SharedRateLimiter(stack.platform.store.requests, 0.5, 3, clock)
    b = SharedRateLimiter(second.store.requests, 0.5, 3, clock)
    tid = stack.tenant_id
    assert [a.take(tid), b.take(tid), a.take(tid)] == [0, 0, 0]
    wait_a, wait_b = a.take(tid), b.take(tid)
    assert 0 < wait_a <= 6 and 0 < wait_b <= 6 and retry_after(wait_b) >= 1  # window: burst / rate = 6 s
    assert b.take(stack.other["tenant_id"]) == 0  # another tenant carries on
    clock.t += wait_b
    assert b.take(tid) == 0  # the next window
    assert isinstance(second.rate_limiter, SharedRateLimiter)  # what the API uses by default


def test_shared_limit_answers_429_over_http(stack):
    from chalicelib.api.ratelimit import SharedRateLimiter
    clock = Clock()
    clock.t = 1_000_000.0
    stack.platform.rate_limiter = SharedRateLimiter(stack.platform.store.requests, 1, 2, clock)
    assert [stack.get("/v1/payments").status_code for _ in range(2)] == [200, 200]
    r = stack.get("/v1/payments")  # refused by this process's bucket: a token is back in 1 s
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    clock.t += 1
    r = stack.get("/v1/payments")  # the bucket has a token, the shared 2 s window is still full
    assert r.status_code == 429 and r.headers["Retry-After"] == "1" and json.loads(r.body)["retry_after_s"] == 1
    clock.t += 1
    assert stack.get("/v1/payments").status_code == 200


class Counting:
    """A port wrapper that counts the calls of one method."""

    def __init__(self, inner, method: str):
        self.inner, self.method, self.calls = inner, method, 0

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if name != self.method:
            return attr

        def counted(*args, **kwargs):
            self.calls += 1
            return attr(*args, **kwargs)
        return counted


def test_a_429_costs_no_store_work(stack, monkeypatch):
    """A flood is refused before the key is looked up or counted: one noisy tenant cannot load the store
    (its own process's bucket decides), and a window the store said is full is remembered."""
    import dataclasses

    from chalicelib.api.ratelimit import SharedRateLimiter
    clock = Clock()
    counters = Counting(stack.platform.store.requests, "count_request")
    tenants = Counting(stack.platform.store.tenants, "tenant_for_key")
    monkeypatch.setattr(stack.platform, "store", dataclasses.replace(stack.platform.store, tenants=tenants))
    stack.platform.rate_limiter = SharedRateLimiter(counters, 1, 3, clock)
    assert [stack.get("/v1/payments").status_code for _ in range(10)] == [200] * 3 + [429] * 7
    assert (tenants.calls, counters.calls) == (3, 3)  # the 7 refusals read and wrote nothing
    # the shared window refuses (another process used it up): one store call says so, then none
    local = RateLimiter(100, 100, clock)
    stack.platform.rate_limiter = SharedRateLimiter(counters, 1, 3, lambda: clock.t + 3, local=local)
    codes = [stack.get("/v1/payments").status_code for _ in range(6)]
    assert codes == [200] * 3 + [429] * 3 and counters.calls == 3 + 4
    assert stack.get("/v1/payments", stack.other).status_code == 200  # another tenant carries on
