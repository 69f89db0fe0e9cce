"""Identifiers: type prefix + ULID (unique, sortable by creation time)."""
from __future__ import annotations

from ulid import ULID


def new_id(prefix: str) -> str:
    return f"{prefix}_{ULID()}"


def payment_id() -> str:
    return new_id("pay")


def event_id() -> str:
    return new_id("evt")
