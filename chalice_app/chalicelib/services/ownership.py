"""Which home regions this region may act for now (Ownership), and the lease keeper that takes,
renews, hands back and takes over leases (LeaseKeeper). The rules live in ports/leases.py.

A region acts for a home region -- commits a state change of one of its payments, calls a PSP about
one -- only while it holds that home's lease with time to spare: until `skew_s` before the expiry
by its own clock. A region taking over waits until `skew_s` after the expiry by its clock. So as long
as two clocks differ by less than skew_s, no moment has two actors. Beyond that bound two more
checks hold the line: before every PSP call the lease is read afresh from the control store
(`verify`), and a payment written under a newer epoch is never written under an older one
(`check_payment`). Every refusal is counted (`stale_epoch_rejections`).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..errors import TransientError
from ..ports import Lease, LeaseLost, Leases

log = logging.getLogger("payments.regions")


class NotOwner(Exception):
    """This region does not hold the lease of the payment's home region now: the holder drives it."""


class StaleEpoch(NotOwner):
    """This region's view of a lease is older than the control store's, or than a payment's epoch."""


class LeaseNotHeld(TransientError):
    """Nobody holds the home's lease now (it lapsed, or was never taken): retried, since the keeper
    takes it next (with a new epoch, and a scan of the home's payments)."""


@dataclass
class Ownership:
    leases: Leases
    region: str
    skew_s: float
    wall: Callable[[], float] = time.time
    cache_s: float = 1.0  # a lease read is reused this long (reads are checked against expiry anyway)
    stale_epoch_rejections: int = 0
    _seen: dict[str, tuple[float, Lease | None]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _acts_on(self, lease: Lease | None) -> int | None:
        if lease is None or lease.owner != self.region or self.wall() >= lease.expires_at - self.skew_s:
            return None
        return lease.epoch

    def lease(self, home: str, fresh: bool = False) -> Lease | None:
        """The control store's lease of `home`, read at most every cache_s unless `fresh`."""
        now = time.monotonic()
        with self._lock:
            hit = self._seen.get(home)
        if hit is not None and not fresh and now - hit[0] < self.cache_s:
            return hit[1]
        lease = self.leases.read(home)
        with self._lock:
            self._seen[home] = (now, lease)
        return lease

    def remember(self, lease: Lease) -> None:
        """The keeper's own write: this region's view of it is current without a read."""
        with self._lock:
            self._seen[lease.home] = (time.monotonic(), lease)

    def forget(self, home: str) -> None:
        with self._lock:
            self._seen.pop(home, None)

    def epoch(self, home: str) -> int | None:
        """Our epoch for `home` if we may act for it now, else None."""
        return self._acts_on(self.lease(home))

    def require(self, home: str) -> int:
        """Our epoch for `home`. NotOwner if another region holds it (that region drives the payment);
        LeaseNotHeld (retried) if nobody does now, or ours is within its last skew_s."""
        lease = self.lease(home)
        epoch = self._acts_on(lease)
        if epoch is not None:
            return epoch
        if lease is not None and lease.owner != self.region and self.wall() < lease.expires_at + self.skew_s:
            raise NotOwner(f"home region {home}'s payments are driven by {lease.owner} (epoch {lease.epoch})")
        raise LeaseNotHeld(f"{self.region} holds no lease of home region {home} now; retried once it does")

    def verify(self, home: str, epoch: int) -> None:
        """Before a PSP call: the control store itself still says `home` is ours at `epoch`."""
        lease = self.lease(home, fresh=True)
        if self._acts_on(lease) != epoch:
            self._reject(f"{home}'s lease is {lease.owner if lease else 'nobody'}'s at epoch "
                         f"{lease.epoch if lease else 0}; {self.region} acted at epoch {epoch}")

    def check_payment(self, payment_epoch: int, epoch: int, payment_id: str) -> None:
        """A payment last written under a newer epoch than ours: another region has it now."""
        if payment_epoch > epoch:
            self._reject(f"payment {payment_id} was written at epoch {payment_epoch}; {self.region} holds {epoch}")

    def _reject(self, why: str) -> None:
        with self._lock:
            self.stale_epoch_rejections += 1
        log.warning("stale epoch refused", extra={"region": self.region, "why": why})
        raise StaleEpoch(why)


@dataclass
class LeaseKeeper:
    """One step at a time (every ttl/3 or so): keep our own home's lease, hand a peer's back when it
    asks (failback=handback), and take over the peers' leases that lapsed. `step` returns the homes
    newly taken: the caller scans their payments (services/takeover.py) before anything else."""
    ownership: Ownership
    ttl_s: float
    peers: Sequence[str] = ()
    failback: str = "handback"  # or "stay": a taken-over home stays with its taker until it dies too
    on_release: Callable[[str], None] | None = None  # told before a lease is given back

    @property
    def leases(self) -> Leases:
        return self.ownership.leases

    def step(self) -> list[str]:
        o, taken = self.ownership, []
        for home in (o.region, *self.peers):
            lease = o.lease(home, fresh=True)
            now = o.wall()
            if lease is not None and lease.owner == o.region and now < lease.expires_at:
                if home != o.region and lease.handback_to == home and self.failback == "handback":
                    self._hand_back(lease)
                    continue
                try:
                    if now < lease.expires_at - o.skew_s:
                        o.remember(self.leases.renew(lease, now, self.ttl_s))
                        continue
                except LeaseLost:
                    pass
                # Past our own margin: we may have skipped work; stop and take it again (next epoch, scan).
                o.forget(home)
                lease = o.lease(home, fresh=True)
            if home != o.region and lease is None:
                continue  # a peer that never started has no payments to take over
            if home != o.region and lease is not None and lease.handback_to == home \
                    and now < lease.expires_at + o.skew_s + self.ttl_s:
                continue  # handed back to its home region: kept for it (unless it fails to take it)
            if home == o.region and lease is not None and lease.owner != o.region and self.failback == "handback":
                self.leases.ask_back(home, o.region)  # our home, held by a peer since we were down
            try:
                mine = self.leases.acquire(home, o.region, o.wall(), self.ttl_s, o.skew_s)
            except LeaseLost:
                continue
            o.remember(mine)
            log.warning("lease taken", extra={"region": o.region, "home": home, "epoch": mine.epoch})
            taken.append(home)
        return taken

    def _hand_back(self, lease: Lease) -> None:
        """Stop acting for the home first, then give the lease back: its owner takes it with the next
        epoch and scans, so nothing is driven by both, nor dropped between them."""
        o = self.ownership
        o.forget(lease.home)
        if self.on_release is not None:
            self.on_release(lease.home)
        try:
            self.leases.release(lease, o.wall())
        except LeaseLost:
            return
        log.warning("lease handed back", extra={"region": o.region, "home": lease.home, "to": lease.handback_to})
