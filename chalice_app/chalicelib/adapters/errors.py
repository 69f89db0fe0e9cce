"""Port-level errors for infrastructure failures the adapters cannot map to a domain outcome.

ports.py names the outcomes a caller acts on (ConcurrencyConflict, AlreadyExists,
AlreadyProcessed). These say "the backing service failed": callers treat them as
transient (retry, or a 503), and never see botocore or kafka exceptions.
"""
from __future__ import annotations


class AdapterError(Exception):
    """The backing service refused or failed the request; the message names the operation."""


class StoreUnavailable(AdapterError):
    """DynamoDB (or another store) failed: throttled, unreachable, misconfigured."""


class BusUnavailable(AdapterError):
    """The Kafka cluster failed a produce, commit or admin request."""


class KeyServiceUnavailable(AdapterError):
    """KMS failed a request other than "this ciphertext cannot be opened"."""
