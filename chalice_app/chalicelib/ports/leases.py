"""The control store's port: one lease per home region, in a strongly consistent store.

A payment's home region is the region that accepted it. Only the region holding the current
lease for that home -- owner, epoch, expiry -- may change the payment's state or call a PSP about
it. The payments table is a global table in its default mode: conditions are checked against the
local replica and conflicts settle last-writer-wins, so a version condition fences writers of one
region only. The lease, kept where a conditional write is checked against every region at once
(DynamoDB multi-region strong consistency in AWS, one shared file locally), is the fence between
regions, and its epoch, stamped on every payment write, tells whose turn a write was.

Times are wall-clock seconds (time.time()) of the writer's clock; readers allow for clock skew.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Lease:
    home: str  # the home region whose payments the lease covers
    owner: str  # the region holding it
    epoch: int  # one more at every change of hands (and at every re-acquisition after a lapse)
    expires_at: float  # wall-clock seconds; the owner acts only well before it, a taker only well after
    handback_to: str = ""  # a region asking for the lease back (orderly failback)


@dataclass(frozen=True)
class Intent:
    """A PSP call about to be made, written down in the control store before the call: a region
    taking over finds what may have reached a PSP even if the payment's own write of it never
    replicated, and asks that PSP with the same key before anything new is attempted."""
    payment_id: str
    tenant_id: str
    home: str
    psp: str
    idempotency_key: str
    kind: str  # authorize | capture | void | refund
    epoch: int
    at: float


class LeaseLost(Exception):
    """The lease is not (or no longer) the caller's to take, renew or give back."""


class Leases(Protocol):
    def read(self, home: str) -> Lease | None:
        """The current lease of `home` (a strongly consistent read), None if never taken."""

    def all(self) -> list[Lease]:
        """Every home region's lease."""

    def acquire(self, home: str, owner: str, now: float, ttl_s: float, skew_s: float) -> Lease:
        """Take `home`'s lease with the next epoch if nobody holds it: never taken, or expired more
        than `skew_s` ago (its holder stopped acting before its expiry by its own clock, which may
        differ from ours by up to skew_s), or released. Raises LeaseLost otherwise."""

    def renew(self, lease: Lease, now: float, ttl_s: float) -> Lease:
        """Extend our unexpired lease (same owner and epoch). A lapsed lease is never renewed: it is
        acquired again with a new epoch, so whatever was skipped meanwhile is scanned. Raises LeaseLost."""

    def release(self, lease: Lease, now: float) -> None:
        """Give the lease up now (failback): it expires at `now`, so the next taker waits only the
        skew allowance, not the rest of the ttl; `handback_to` stays, naming who it is kept for.
        Raises LeaseLost if it is not ours at this epoch."""

    def ask_back(self, home: str, region: str) -> None:
        """Mark `home`'s lease as wanted back by `region` (its owner hands it back when it sees it)."""

    def put_intent(self, intent: Intent) -> None:
        """Record a PSP call before it is made (replaces the payment's earlier intent of the same kind)."""

    def intents(self, home: str) -> list[Intent]:
        """The recorded PSP calls of payments of `home`."""

    def clear_intent(self, home: str, payment_id: str) -> None:
        """Forget a payment's intents (it reached a final state)."""
