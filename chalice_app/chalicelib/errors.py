"""How a stage tells the runtime what to do with a record that failed."""
from __future__ import annotations


class TransientError(Exception):
    """Worth retrying later (PSP busy, write conflict, webhook down): backoff, then DLQ."""


class PermanentError(Exception):
    """Retrying cannot help (bad JSON, schema-invalid, unknown version, missing payment): DLQ now."""
