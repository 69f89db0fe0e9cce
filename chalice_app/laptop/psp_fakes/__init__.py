"""Local fakes of real PSPs (Stripe, Adyen) for the connectors' contract tests and `make local`:
stateful, loopback-only, written from the PSPs' public API references. Outside chalicelib/, so the
Lambda package never holds them."""
from .adyen_fake import AdyenFake
from .base import FAULTS, GARBAGE, HANG, RESET, SERVER_ERROR, UNAVAILABLE, FakePsp, Received, serve
from .stripe_fake import StripeFake

__all__ = ["FAULTS", "GARBAGE", "HANG", "RESET", "SERVER_ERROR", "UNAVAILABLE", "AdyenFake", "FakePsp", "Received",
           "StripeFake", "serve"]
