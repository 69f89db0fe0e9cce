"""The laptop's stand-in for global tables and MSK Replicator (laptop/replicator.py): two region
stores, item-by-item copies after a lag, last writer wins, partitions, a lost window, bus mirrors."""
from __future__ import annotations

import time

import pytest

from chalicelib.adapters.sqlite.bus import SqliteBus
from chalicelib.adapters.sqlite.store import open_store
from chalicelib.ports import Changes, OutRecord
from chalicelib.adapters.sqlite.unit_of_work import id_base
from laptop.replicator import Link, Replicator, enable

from ..contract.factories import capture_postings, drive_to_authorized, event_for, new_payment

EU, US = "eu-west-1", "us-east-1"


@pytest.fixture
def two(tmp_path):
    stores = {}
    for region in (EU, US):
        (tmp_path / region).mkdir()
        stores[region] = open_store(tmp_path / region / "store.db", region)
        enable(tmp_path / region / "store.db", region)
    buses = {r: SqliteBus(tmp_path / r / "bus.db") for r in (EU, US)}
    links = [Link(EU, US, tmp_path / EU / "store.db", tmp_path / US / "store.db", tmp_path / EU / "bus.db",
                  tmp_path / US / "bus.db"),
             Link(US, EU, tmp_path / US / "store.db", tmp_path / EU / "store.db", tmp_path / US / "bus.db",
                  tmp_path / EU / "bus.db")]
    return stores, buses, Replicator(links)


def created(store, **kw):
    p = new_payment(**kw)
    store.commit(Changes(payment=p, events=[event_for(p, "payments.initiated")], actor="api:key_1"))
    return p


def drain(rep: Replicator) -> None:
    while rep.step():
        pass


def test_writes_reach_the_other_region_and_are_never_sent_back(two):
    stores, _, rep = two
    p = created(stores[EU])
    assert stores[US].payments.get_payment("ten_a", p.payment_id) is None
    drain(rep)
    assert stores[US].payments.get_payment("ten_a", p.payment_id) == stores[EU].payments.get_payment("ten_a", p.payment_id)
    eu_to_us, us_to_eu = rep.links
    assert eu_to_us.copied > 0 and us_to_eu.copied == 0  # the copies were not noted as US's own writes
    # The outbox item arrived, but it is EU's to publish: US's relay never sees it, a takeover would.
    assert stores[US].outbox.pending_outbox(10) == []
    assert [r.event.payment_id for r in stores[US].outbox.pending_outbox(10, origin=EU)] == [p.payment_id]
    assert stores[EU].outbox.pending_outbox(10)[0].id >= id_base(EU)  # ids in the region's own range


def test_counters_both_regions_add_to_are_summed_not_overwritten(two):
    stores, _, rep = two
    p = drive_to_authorized(new_payment())
    # Interleaved with replication: a region that received the other's rows must keep numbering its
    # own in its own range (counting on from a copied row's id would hand out ids the other uses).
    for region in (EU, US, EU, US):
        stores[region].commit(Changes(postings=capture_postings(p, fee=59, batch=region)))
        drain(rep)
    for store in stores.values():
        got = {(b["account"], b["currency"]): b["balance"] for b in store.ledger.balances("ten_a")}
        assert got[("merchant_payable", "EUR")] == -4 * (p.amount - 59)
        assert store.ledger.ledger_drift() == []
        assert sum(t["legs"] for t in store.ledger.ledger_totals()) == 12


def test_conflicting_writes_settle_last_writer_wins_in_both_regions(two):
    stores, _, rep = two
    p = created(stores[EU])
    drain(rep)
    a = stores[EU].payments.get_payment("ten_a", p.payment_id)
    b = stores[US].payments.get_payment("ten_a", p.payment_id)
    a.validate("2030-01-01T00:00:01Z")
    stores[EU].commit(Changes(payment=a, expected_version=1))
    time.sleep(0.01)
    b.fail("2030-01-01T00:00:02Z", "validation", "x", "later write")
    stores[US].commit(Changes(payment=b, expected_version=1))  # the same item, in the other region
    drain(rep)
    states = {r: s.payments.get_payment("ten_a", p.payment_id).status for r, s in stores.items()}
    assert states == {EU: "failed", US: "failed"}  # the later write, everywhere
    assert rep.links[1].copied >= 1 and rep.links[0].skipped >= 1


def test_a_partition_holds_changes_back_and_a_lost_window_drops_them(two):
    stores, _, rep = two
    eu_to_us = rep.links[0]
    eu_to_us.held = True
    p = created(stores[EU])
    drain(rep)
    assert stores[US].payments.get_payment("ten_a", p.payment_id) is None
    eu_to_us.held = False
    eu_to_us.drop_until = time.time()  # EU died before replicating what it wrote until now
    time.sleep(0.01)  # (SQLite's clock has millisecond steps)
    q = created(stores[EU])
    drain(rep)
    assert stores[US].payments.get_payment("ten_a", p.payment_id) is None and eu_to_us.dropped > 0
    assert stores[US].payments.get_payment("ten_a", q.payment_id) is not None


def test_changes_wait_out_the_lag(two):
    stores, _, rep = two
    rep.lag_s = 0.3
    p = created(stores[EU])
    drain(rep)
    assert stores[US].payments.get_payment("ten_a", p.payment_id) is None
    time.sleep(0.35)
    drain(rep)
    assert stores[US].payments.get_payment("ten_a", p.payment_id) is not None


def test_bus_records_are_mirrored_under_the_source_regions_prefix(two):
    _, buses, rep = two
    buses[EU].publish([OutRecord("payments.initiated", "pay_1", b"v1", (("tenant_id", b"ten_a"),))])
    drain(rep)
    [mirror] = buses[US].read_all(f"{EU}.payments.initiated")
    assert (mirror.key, mirror.value, dict(mirror.headers)["tenant_id"]) == ("pay_1", b"v1", b"ten_a")
    assert buses[US].read_all("payments.initiated") == [] and rep.links[0].mirrored == 1
    drain(rep)
    assert len(buses[US].read_all(f"{EU}.payments.initiated")) == 1  # once
    assert f"{US}.{EU}.payments.initiated" not in buses[EU].topics()  # a mirror is not mirrored back
