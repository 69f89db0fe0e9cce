"""What the current thread is working on: stage, tenant, payment, correlation id.

Set by the API wrapper per request and by the stage handler per record; read by
the JSON log formatter, so every log line names the payment it is about without
each call site passing it. A ContextVar is per thread (and per asyncio task), so
partitions handled in parallel never see each other's scope.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterator

_scope: ContextVar[dict[str, Any]] = ContextVar("payments_scope", default={})

FIELDS = ("stage", "tenant_id", "payment_id", "correlation_id", "event_id")


def current() -> dict[str, Any]:
    return _scope.get()


@contextmanager
def bound(**fields: Any) -> Iterator[dict[str, Any]]:
    """Add `fields` (None values ignored) to the scope for the duration of the block."""
    merged = {**_scope.get(), **{k: v for k, v in fields.items() if v is not None}}
    token = _scope.set(merged)
    try:
        yield merged
    finally:
        _scope.reset(token)


def bind(**fields: Any) -> None:
    """Add fields to the current scope in place (inside a `bound` block: it ends with the block)."""
    _scope.set({**_scope.get(), **{k: v for k, v in fields.items() if v is not None}})
