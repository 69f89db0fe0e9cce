"""GET /health as Route 53's checks read it: 200 only while this region can move payments.

The store and the bus must answer and the outbox relay must be draining (the oldest unpublished
event younger than HEALTH_MAX_OUTBOX_AGE_S); anything else is a 503 that names the failing check,
so the region leaves DNS answers instead of accepting payments it cannot move.
"""
from __future__ import annotations

import json
import time

import pytest

from chalicelib.adapters.errors import BusUnavailable, StoreUnavailable
from chalicelib.services import health


@pytest.fixture
def stack_env():
    return {"HEALTH_MAX_OUTBOX_AGE_S": "0.3", "LEASE_TTL_S": "5", "LEASE_SKEW_S": "0.2"}


@pytest.fixture(autouse=True)
def no_cache(monkeypatch):
    monkeypatch.setattr(health, "HEALTH_CACHE_S", 0.0)


def get_health(stack):
    r = stack.client.http.get("/health")
    return r.status_code, json.loads(r.body)


def test_a_healthy_region_reports_each_check(stack):
    code, body = get_health(stack)
    assert code == 200 and body["status"] == "ok" and body["region"] == stack.platform.settings.region
    assert set(body["checks"]) == {"store", "bus", "outbox", "lease"} and all(c["ok"] for c in body["checks"].values())
    lease = body["checks"]["lease"]
    assert lease["owner"] == body["region"] and lease["epoch"] >= 1 and lease["expires_in_s"] > 0
    assert body["checks"]["outbox"]["backlog"] == 0


def test_an_outbox_the_relay_does_not_drain_is_a_503_until_it_does(stack):
    stack.pay()  # committed; no relay runs in this stack until drain()
    assert get_health(stack)[1]["checks"]["outbox"]["backlog"] == 1
    time.sleep(0.4)
    code, body = get_health(stack)
    assert code == 503 and body["status"] == "unavailable"
    assert not body["checks"]["outbox"]["ok"] and "not draining" in body["checks"]["outbox"]["error"]
    assert body["checks"]["store"]["ok"] and body["checks"]["bus"]["ok"]
    stack.runner.drain()
    assert get_health(stack)[0] == 200  # the same region, relay caught up: traffic again


def test_a_store_or_bus_that_does_not_answer_is_a_503_naming_it(stack, monkeypatch):
    def down(*_a, **_k):
        raise StoreUnavailable("DynamoDB get_item: timed out")
    monkeypatch.setattr(stack.platform.store.controls, "get_control", down)
    code, body = get_health(stack)
    assert code == 503 and not body["checks"]["store"]["ok"] and "timed out" in body["checks"]["store"]["error"]
    monkeypatch.undo()
    monkeypatch.setattr(health, "HEALTH_CACHE_S", 0.0)

    def no_brokers():
        raise BusUnavailable("list topics: NoBrokersAvailable")
    monkeypatch.setattr(stack.platform.bus, "topics", no_brokers)
    code, body = get_health(stack)
    assert code == 503 and not body["checks"]["bus"]["ok"] and body["checks"]["store"]["ok"]


def test_readings_are_cached_briefly(stack, monkeypatch):
    monkeypatch.setattr(health, "HEALTH_CACHE_S", 60.0)
    calls = []
    real = stack.platform.bus.topics
    monkeypatch.setattr(stack.platform.bus, "topics", lambda: calls.append(1) or real())
    for _ in range(5):
        assert get_health(stack)[0] == 200
    assert len(calls) <= 1  # Route 53's checkers together cost one reading per HEALTH_CACHE_S


def test_a_region_without_its_own_lease_is_a_503(stack):
    """Its worker stopped renewing (or a peer took its home over): it would accept payments nobody here drives."""
    platform = stack.platform
    lease = platform.ownership.leases.read(platform.settings.region)
    platform.ownership.leases.release(lease, platform.ownership.wall())  # as a keeper handing it over does
    platform.ownership.forget(platform.settings.region)  # (what the next read, at most a second later, sees)
    code, body = get_health(stack)
    assert code == 503 and not body["checks"]["lease"]["ok"] and "lapsed" in body["checks"]["lease"]["error"]
    time.sleep(0.25)  # the skew allowance after a release
    stack.runner._lease_at = 0.0
    stack.runner.lease_step()  # the keeper takes it again, next epoch
    code, body = get_health(stack)
    assert code == 200 and body["checks"]["lease"]["epoch"] == lease.epoch + 1
