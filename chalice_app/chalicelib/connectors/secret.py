"""A string that does not print itself: API keys and other credentials."""
from __future__ import annotations

import hmac
from typing import NoReturn


class Secret:
    """Wraps a credential so repr/str/logging show '***'; call reveal() at the point of use."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret wraps a str")
        self._value = value

    def reveal(self) -> str:
        """The real value; use it only where it leaves the process (an HTTP header)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        # constant-time, so comparisons do not leak the value through timing
        return isinstance(other, Secret) and hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> NoReturn:  # never pickled into caches or queues by accident
        raise TypeError("Secret cannot be pickled")
