"""Two regions in one process, each with its own bus (its own MSK cluster) and runner, sharing the
control store (the leases) and one PSP simulator, whose records count the charges.

Their stores are one SQLite file seen as two regions: a global table with no replication lag. What
lag, partitions and lost windows do is the two-region simulation's subject; here: who drives what.
Leases are short (1 s, skew 0.2 s) so that lapses and takeovers happen within a test.
"""
from __future__ import annotations

import sqlite3
from contextlib import contextmanager
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import orjson
import pytest

from chalicelib import bootstrap
from chalicelib.adapters.keyring import LocalKeyring
from chalicelib.adapters.sqlite.bus import SqliteBus
from chalicelib.adapters.sqlite.store import open_store
from chalicelib.clock import SystemClock
from chalicelib.config import Settings
from chalicelib.domain.states import FINAL
from chalicelib.handlers.batch import handle_batch
from chalicelib.ports import Lease
from chalicelib.services import takeover
from chalicelib.services import tenants as tenancy
from chalicelib.services.api_io import ApiError
from chalicelib.services.payments import PaymentService
from chalicelib.stages import STAGES
from laptop.psp_simulator.server import SimulatorServer
from laptop.replicator import Link, Replicator, enable
from laptop.runner import Runner

from ..fakes import RecordingPoster
from ..stack import free_port
from .conftest import card_body

TTL, SKEW = 1.0, 0.2
EU, US = "eu-west-1", "us-east-1"


@dataclass
class Region:
    name: str
    platform: Any
    runner: Runner
    service: PaymentService

    def pay(self, tenant_id: str, number: str = "4242424242424242") -> str:
        reply = self.service.create_payment(tenant_id, uuid.uuid4().hex, orjson.dumps(card_body(number)),
                                            f"corr_{uuid.uuid4().hex}")
        assert reply.status == 202, reply.body
        return orjson.loads(reply.body)["id"]


def make_region(tmp: Path, name: str, peer: str, sim_url: str, store: Path | None = None) -> Region:
    settings = Settings.from_env({
        "DATA_DIR": str(tmp / name), "PLATFORM_REGION": name, "CONTROL_STORE": str(tmp / "control.db"),
        "TAKEOVER_REGIONS": peer, "LEASE_TTL_S": str(TTL), "LEASE_SKEW_S": str(SKEW), "SIMULATOR_URL": sim_url,
        "PSP_TIMEOUT_S": "0.5", "UNKNOWN_CHECK_SCHEDULE_S": "0.05,0.1,0.2", "RETRY_BASE_MS": "1",
        "RETRY_MAX_MS": "5", "MAX_ATTEMPTS": "50", "LOG_LEVEL": "WARNING"})
    platform = bootstrap.assemble(settings, open_store(store or tmp / "store.db", name), SqliteBus(tmp / name / "bus.db"),
                                  LocalKeyring(tmp / "keyring.json"), SystemClock(), post_webhook=RecordingPoster())
    platform.ownership.cache_s = 0.0
    handlers = {n: (STAGES[n], (lambda stage: lambda ev: handle_batch(ev, stage, platform))(STAGES[n]))
                for n in STAGES}
    return Region(name, platform, Runner(platform, handlers), PaymentService(platform))


@contextmanager
def simulator(tmp: Path) -> Iterator[str]:
    """The PSP simulator both regions call (its records count the charges); yields its URL."""
    port = free_port()
    server = SimulatorServer(("127.0.0.1", port), str(tmp / "sim.db"), 0.3)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def world(tmp_path):
    with simulator(tmp_path) as url:
        eu, us = make_region(tmp_path, EU, US, url), make_region(tmp_path, US, EU, url)
        tenant = tenancy.create_tenant(eu.platform, "acme", webhook_url="https://merchant.example/hooks")
        yield eu, us, tenant["tenant_id"], tmp_path / "sim.db"


def charges(sim_db: Path) -> dict[str, int]:
    """Successful authorizations per payment, from the simulator's own records, across its PSPs."""
    with sqlite3.connect(sim_db) as db:
        rows = db.execute("SELECT reference, COUNT(*) FROM charges WHERE status NOT IN ('declined', 'failed')"
                          " GROUP BY reference").fetchall()
    return dict(rows)


def run(*regions: Region, until, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for r in regions:
            r.runner.step()
        if until():
            return
        time.sleep(0.005)
    raise AssertionError("the regions did not get there in time")


def states(region: Region, tenant_id: str, pids: list[str]) -> list[Any]:
    return [region.platform.store.payments.get_payment(tenant_id, p) for p in pids]


def settled(region: Region, tenant_id: str, pids: list[str]) -> bool:
    return all(p.status == "settled" for p in states(region, tenant_id, pids))


def published_payment_ids(region: Region) -> set[str]:
    bus = region.platform.bus
    return {r.key for t in bus.topics() if not t.endswith(".dlq") for r in bus.read_all(t)}


def test_each_region_drives_only_the_payments_it_accepted(world):
    eu, us, tenant, sim = world
    mine = {EU: [eu.pay(tenant) for _ in range(3)], US: [us.pay(tenant) for _ in range(3)]}
    run(eu, us, until=lambda: settled(eu, tenant, mine[EU] + mine[US]))
    assert published_payment_ids(eu) == set(mine[EU]) and published_payment_ids(us) == set(mine[US])
    assert charges(sim) == {p: 1 for p in mine[EU] + mine[US]}
    assert {p.region for p in states(eu, tenant, mine[EU])} == {EU}
    assert eu.platform.ownership.stale_epoch_rejections == us.platform.ownership.stale_epoch_rejections == 0
    assert [lease.owner for lease in eu.platform.ownership.leases.all()] == [EU, US]


def test_a_dead_regions_payments_are_taken_over_after_its_lease_lapses(world):
    eu, us, tenant, sim = world
    pids = [eu.pay(tenant) for _ in range(6)]
    for _ in range(4):  # eu gets some of them some way along, then dies (no more steps, no renewals)
        eu.runner.step()
    died = time.monotonic()
    before = {p.payment_id: p.state for p in states(eu, tenant, pids)}
    assert any(s not in FINAL and s.value != "settled" for s in before.values())
    run(us, until=lambda: settled(us, tenant, pids))
    recovered = time.monotonic() - died
    [scan] = [scan for home, scan in us.runner.taken if home == EU]  # (and its own again, if it lapsed meanwhile)
    assert scan["redriven"] + scan["status_checks"] > 0
    assert charges(sim) == {p: 1 for p in pids}  # nothing charged twice, nothing lost
    assert recovered < TTL + SKEW + 5  # lease + skew + the scan and the pipeline
    lease = us.platform.ownership.leases.read(EU)
    assert (lease.owner, lease.epoch) == (US, 2)
    assert {p.epoch for p in states(us, tenant, pids)} <= {1, 2}


def test_failback_hands_the_lease_back_and_nothing_is_driven_twice(world):
    eu, us, tenant, sim = world
    first = [eu.pay(tenant) for _ in range(3)]
    run(us, until=lambda: EU in {home for home, _ in us.runner.taken})  # eu down: us takes eu's home over
    run(us, until=lambda: settled(us, tenant, first))
    # eu comes back: its keeper asks for its home back, us hands it over at its next step.
    run(eu, us, until=lambda: eu.platform.ownership.epoch(EU) is not None)
    lease = eu.platform.ownership.leases.read(EU)
    assert (lease.owner, lease.epoch) == (EU, 3)
    second = [eu.pay(tenant) for _ in range(3)]
    run(eu, us, until=lambda: settled(eu, tenant, first + second))
    assert charges(sim) == {p: 1 for p in first + second}
    assert set(second) <= published_payment_ids(eu) and not set(second) & published_payment_ids(us)


def test_a_region_that_was_failed_over_refuses_new_payments_until_it_has_its_lease_back(world):
    eu, us, tenant, _ = world
    run(us, until=lambda: EU in {home for home, _ in us.runner.taken})
    with pytest.raises(ApiError) as refused:
        eu.service.create_payment(tenant, uuid.uuid4().hex, orjson.dumps(card_body("4242424242424242")), "c1")
    assert refused.value.status == 503 and refused.value.extra["code"] == "region_not_owner"
    assert us.pay(tenant)  # the region holding it takes payments


def test_split_brain_the_epoch_lets_only_one_region_act(world, monkeypatch):
    """eu still believes it holds its home (its keeper stopped, its clock far off), while us took the
    lease at the next epoch. Before any PSP call eu reads the control store and stands down."""
    eu, us, tenant, sim = world
    eu.runner.keeper = None  # nothing tells eu it lost the lease
    believed = eu.platform.ownership.lease(EU)
    eu.platform.ownership.cache_s = 3600.0  # ... and it keeps believing its last read
    pid = eu.pay(tenant)
    held = us.platform.ownership.leases.read(EU)
    forged = Lease(EU, US, held.epoch + 1, time.time() + 3600)  # us holds eu's home, epoch 2
    _force_lease(eu, forged)
    us.platform.ownership.remember(forged)
    calls: list[str] = []
    for name, connector in eu.platform.connectors.items():
        monkeypatch.setattr(connector, "authorize", lambda req, n=name: calls.append(n) or pytest.fail("eu called a PSP"))
    for _ in range(40):
        eu.runner.step()
    # eu acted on its belief until the PSP call, where the control store said otherwise: refused,
    # counted, and from then on eu knows (its next reads say us).
    assert calls == [] and eu.platform.ownership.stale_epoch_rejections >= 1
    assert believed.owner == EU and eu.platform.ownership.epoch(EU) is None
    takeover.take_over(us.platform, EU)  # what us's keeper runs on taking the lease
    run(us, until=lambda: settled(us, tenant, [pid]))
    assert charges(sim) == {pid: 1}
    assert us.platform.store.payments.get_payment(tenant, pid).epoch == forged.epoch


def _force_lease(region: Region, lease: Lease) -> None:
    """Write a lease into the shared control file as a partitioned peer's keeper would have."""
    with sqlite3.connect(region.platform.settings.control_path) as db:
        db.execute("UPDATE leases SET owner=?, epoch=?, expires_at=? WHERE home=?",
                   (lease.owner, lease.epoch, lease.expires_at, lease.home))


def test_the_scheduled_keeper_takes_a_lapsed_peer_over_and_scans_it(world):
    """What the lease_keeper Lambda runs each minute (takeover.keep_leases), with time moved by hand."""
    eu, us, tenant, sim = world
    pid = eu.pay(tenant)
    time.sleep(TTL + SKEW + 0.05)  # eu is gone: no renewals
    clock, naps = [0.0], []
    out = takeover.keep_leases(us.platform, seconds=1.0, sleep=lambda s: naps.append(s) or clock.__setitem__(0, clock[0] + s),
                               monotonic=lambda: clock[0])
    assert EU in [t["home"] for t in out["taken"]] and out["steps"] == len(naps) + 1 >= 2
    assert all(n == pytest.approx(TTL / 3) for n in naps)
    run(us, until=lambda: settled(us, tenant, [pid]))
    assert charges(sim) == {pid: 1}


@pytest.fixture
def replicated(tmp_path):
    """Each region its own store, copied item by item by the laptop's replicator after a lag."""
    with simulator(tmp_path) as url:
        yield from _replicated(tmp_path, url)


def _replicated(tmp_path: Path, url: str):
    regions = {}
    for name, peer in ((EU, US), (US, EU)):
        (tmp_path / name).mkdir(parents=True, exist_ok=True)
        regions[name] = make_region(tmp_path, name, peer, url, store=tmp_path / name / "store.db")
        enable(tmp_path / name / "store.db", name)
    links = [Link(a, b, tmp_path / a / "store.db", tmp_path / b / "store.db") for a, b in ((EU, US), (US, EU))]
    rep = Replicator(links, lag_s=0.1)
    stop = threading.Event()

    def replicate() -> None:
        while not stop.is_set():
            if not rep.step():
                stop.wait(0.01)
    thread = threading.Thread(target=replicate, daemon=True)
    thread.start()
    tenant = tenancy.create_tenant(regions[EU].platform, "acme", webhook_url="https://merchant.example/hooks")
    try:
        yield regions[EU], regions[US], tenant["tenant_id"], tmp_path / "sim.db", rep
    finally:
        stop.set()
        thread.join()


def test_with_replication_lag_and_a_lost_window_no_payment_is_charged_twice(replicated):
    """eu takes payments and drives them part way; then it dies, and its writes of the last moment never
    leave it. us takes its home over from what did replicate: what reached a PSP is asked about first
    (intents are written to the control store, which does not lag), the rest is driven on."""
    eu, us, tenant, sim, rep = replicated
    time.sleep(0.3)  # the tenant replicated
    pids = [eu.pay(tenant) for _ in range(8)]
    for _ in range(6):
        eu.runner.step()
    eu_to_us = rep.links[0]
    eu_to_us.drop_until = time.time() + 0.5  # eu dies: what it wrote in its last half second is lost
    for _ in range(3):
        eu.runner.step()
    time.sleep(0.6)
    arrived = [p for p in pids if us.platform.store.payments.get_payment(tenant, p) is not None]
    run(us, until=lambda: all(us.platform.store.payments.get_payment(tenant, p).status in ("settled", "declined")
                              for p in arrived), timeout_s=30)
    counts = charges(sim)
    assert all(n == 1 for n in counts.values()), counts  # I1 across the failover
    assert set(arrived) <= set(counts) and arrived  # everything that replicated was completed
    assert any(home == EU for home, _ in us.runner.taken)


def test_a_takeover_publishes_the_events_the_dead_region_committed_but_never_published(world):
    eu, us, tenant, sim = world
    pids = [eu.pay(tenant) for _ in range(2)]  # committed with their events; eu dies before its relay runs
    run(us, until=lambda: settled(us, tenant, pids))
    [scan] = [scan for home, scan in us.runner.taken if home == EU]
    assert scan["republished"] == 2 and eu.platform.store.outbox.pending_outbox(10, origin=EU) == []
    assert charges(sim) == {p: 1 for p in pids}
