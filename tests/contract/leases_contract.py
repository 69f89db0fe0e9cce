"""Contract suite for the Leases port (the control store): one holder per home region at a time,
a new epoch at every change of hands, and PSP-call intents. Subclass with `make_leases(tmp_path)`;
the same tmp_path opens the same store (another region's view)."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from chalicelib.ports import Intent, LeaseLost, Leases

from .factories import close_quietly

TTL, SKEW = 10.0, 2.0


class LeasesContract:
    def make_leases(self, tmp_path: Path) -> Leases:
        raise NotImplementedError

    @pytest.fixture
    def leases(self, tmp_path: Path):
        s = self.make_leases(tmp_path)
        yield s
        close_quietly(s)

    def test_the_first_taker_holds_epoch_one_and_nobody_else_until_expiry_plus_skew(self, leases):
        assert leases.read("eu") is None
        mine = leases.acquire("eu", "eu", 100.0, TTL, SKEW)
        assert (mine.owner, mine.epoch, mine.expires_at) == ("eu", 1, 110.0)
        assert leases.read("eu") == mine
        for now in (105.0, 110.5, 111.9):  # valid, then expired but within the skew allowance
            with pytest.raises(LeaseLost):
                leases.acquire("eu", "us", now, TTL, SKEW)
        theirs = leases.acquire("eu", "us", 112.1, TTL, SKEW)
        assert (theirs.owner, theirs.epoch) == ("us", 2) and leases.all() == [theirs]

    def test_renewal_extends_only_an_unexpired_lease_of_the_same_epoch(self, leases):
        mine = leases.acquire("eu", "eu", 100.0, TTL, SKEW)
        mine = leases.renew(mine, 108.0, TTL)
        assert mine.expires_at == 118.0 and leases.read("eu").expires_at == 118.0
        with pytest.raises(LeaseLost):  # lapsed: acquired again with a new epoch, never renewed
            leases.renew(mine, 118.5, TTL)
        again = leases.acquire("eu", "eu", 120.5, TTL, SKEW)
        assert again.epoch == 2
        with pytest.raises(LeaseLost):  # the stale epoch cannot renew either
            leases.renew(mine, 121.0, TTL)
        theirs = leases.acquire("eu", "us", 133.0, TTL, SKEW)
        with pytest.raises(LeaseLost):
            leases.renew(again, 134.0, TTL)
        assert leases.read("eu") == theirs

    def test_release_hands_the_lease_over_at_once_and_ask_back_is_seen_by_the_holder(self, leases):
        theirs = leases.acquire("eu", "us", 100.0, TTL, SKEW)
        leases.ask_back("eu", "eu")
        assert leases.renew(theirs, 101.0, TTL).handback_to == "eu"
        leases.release(theirs, 102.0)
        leases.release(theirs, 102.0)  # again (a retried call): harmless
        assert leases.read("eu").handback_to == "eu"  # still says whom it is kept for
        with pytest.raises(LeaseLost):  # the skew allowance still applies: the giver's other processes stop
            leases.acquire("eu", "eu", 103.0, TTL, SKEW)
        mine = leases.acquire("eu", "eu", 104.5, TTL, SKEW)  # long before the ttl would have run out
        assert (mine.owner, mine.epoch, mine.handback_to) == ("eu", 2, "")
        with pytest.raises(LeaseLost):  # once taken by another, the old holder can give back nothing
            leases.release(theirs, 103.0)
        assert leases.read("eu") == mine

    def test_of_two_regions_racing_for_a_lapsed_lease_exactly_one_wins(self, tmp_path, leases):
        leases.acquire("eu", "eu", 0.0, TTL, SKEW)
        wins, barrier = [], threading.Barrier(8)

        def race(region: str) -> None:
            view = self.make_leases(tmp_path)
            barrier.wait()
            try:
                wins.append(view.acquire("eu", region, 100.0, TTL, SKEW))
            except LeaseLost:
                pass
        threads = [threading.Thread(target=race, args=(f"r{i}",)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(wins) == 1 and wins[0].epoch == 2 and leases.read("eu") == wins[0]

    def test_intents_are_kept_per_home_until_cleared(self, leases):
        a = Intent("pay_1", "ten_a", "eu", "sim-a", "pay_1-a1", "authorize", 1, 10.0)
        b = Intent("pay_2", "ten_a", "eu", "sim-b", "pay_2-a1", "authorize", 1, 11.0)
        leases.put_intent(a)
        leases.put_intent(b)
        leases.put_intent(Intent("pay_3", "ten_b", "us", "sim-a", "pay_3-a1", "authorize", 4, 12.0))
        assert leases.intents("eu") == [a, b]
        moved = Intent("pay_1", "ten_a", "eu", "sim-b", "pay_1-a2", "authorize", 1, 13.0)  # failed over
        leases.put_intent(moved)
        assert leases.intents("eu") == [b, moved]
        leases.clear_intent("eu", "pay_1")
        assert leases.intents("eu") == [b] and [i.payment_id for i in leases.intents("us")] == ["pay_3"]
