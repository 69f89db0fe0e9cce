"""Ports to what lies outside the platform: PSP connectors, key services, time."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from ..domain.psp import PspResult


@dataclass(frozen=True)
class AuthorizeRequest:
    idempotency_key: str
    amount: int
    currency: str
    card: dict[str, Any] | None  # {"number", "exp_month", "exp_year"}: decrypted only for this call
    reference: str | None
    correlation_id: str
    bank_account: dict[str, Any] | None = None  # {"iban"}: decrypted only for this call
    # Ask the PSP to capture in the same call. The stages capture in their own step (partial
    # captures, cancels before capture), so they leave it False; connectors honour it for callers
    # that want one-step sales.
    capture: bool = False
    # Where the PSP sends the shopper back after 3-D Secure (the merchant's page); None: the
    # connector's configured default. Part of the request, so a replay with the same key is identical.
    return_url: str | None = None

    def __repr__(self) -> str:  # never print a PAN
        return f"AuthorizeRequest({self.idempotency_key}, {self.amount} {self.currency})"


class Connector(Protocol):
    name: str

    def authorize(self, request: AuthorizeRequest) -> PspResult:
        """Ask the PSP to authorize; the same idempotency key never charges twice."""

    def capture(self, psp_reference: str, amount: int, currency: str, idempotency_key: str) -> PspResult:
        """Capture (part of) an authorization. PENDING: the PSP decides later and says so by webhook."""

    def void(self, psp_reference: str, idempotency_key: str) -> PspResult:
        """Release an uncaptured authorization (PENDING as for capture)."""

    def refund(self, psp_reference: str, amount: int, currency: str, idempotency_key: str) -> PspResult:
        """Refund (part of) a captured payment (PENDING as for capture)."""

    def status(self, idempotency_key: str, psp_reference: str | None = None) -> PspResult:
        """What the PSP knows of an authorization sent with this key (NOT_FOUND if nothing).

        With `psp_reference` (a payment the PSP named, waiting on the shopper), a PSP that can look
        a payment up by its own reference is asked; one that cannot answers NOT_FOUND (`no_lookup`):
        its webhook is the only source then. Answers: APPROVED, DECLINED, REQUIRES_ACTION, PENDING,
        UNKNOWN, NOT_FOUND."""


class KeyService(Protocol):
    def encrypt(self, tenant_id: str, plaintext: bytes) -> bytes:
        """Envelope-encrypt under the tenant's data key (context: tenant id)."""

    def decrypt(self, tenant_id: str, blob: bytes) -> bytes:
        """Decrypt; fails if the blob belongs to another tenant or the key was destroyed."""

    def destroy_tenant_key(self, tenant_id: str) -> None:
        """Crypto-shred: the tenant's data becomes unreadable."""


class Clock(Protocol):
    def now(self) -> datetime:
        """Current UTC time."""

    def sleep(self, seconds: float) -> None:
        """Wait (a simulated clock advances instead)."""
