"""The event bus port: Kafka (MSK, Tansu) in the aws modes, a durable SQLite log embedded."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence


@dataclass(frozen=True)
class OutRecord:
    topic: str
    key: str
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class BusRecord:
    topic: str
    partition: int
    offset: int
    key: str
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int


class BusConsumer(Protocol):
    def poll(self, max_records: int) -> list[BusRecord]:
        """Next records after the group's position, in offset order per partition."""

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        """Durably store the next offset to read for each (topic, partition)."""

    def seek(self, topic: str, partition: int, offset: int) -> None:
        """Move the in-memory position back (to redeliver after a failure)."""

    def lag(self) -> int:
        """Records published but not yet committed by this group."""

    def close(self) -> None:
        """Release the consumer."""


class EventBus(Protocol):
    def ensure_topics(self, topics: Sequence[str]) -> None:
        """Create topics that do not exist yet (idempotent)."""

    def publish(self, records: Sequence[OutRecord]) -> None:
        """Append records durably; keyed records keep their order per key."""

    def consumer(self, group: str, topics: Sequence[str]) -> BusConsumer:
        """A consumer-group member reading `topics` from the group's committed offsets."""

    def read_all(self, topic: str) -> list[BusRecord]:
        """Every record of a topic from the start (DLQ listing, audits)."""

    def topics(self) -> list[str]:
        """Names of every topic, sorted."""
