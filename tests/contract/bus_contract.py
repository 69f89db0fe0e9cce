"""Contract suite for the EventBus port (and the BusConsumer it hands out).

Subclass and implement `make_bus`:

    class TestKafkaBus(EventBusContract):
        poll_timeout = 20.0
        def make_bus(self, tmp_path):
            return KafkaBus(bootstrap=TANSU)

Factory rules: a second call with the same `tmp_path` is another process's view
of the same log. Topic and group names are unique per test, so a shared broker
is fine. Only Protocol methods are called, except `bus.consumer(group, topics,
member, members)` in the membership test, which runs only when the subclass sets
`explicit_membership = True`. A "crash" is modelled as close() without commit.
"""
from __future__ import annotations

import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import pytest

from chalicelib.ports import BusConsumer, BusRecord, EventBus, OutRecord

from .factories import KnownBugs, close_quietly, new_payment, record_for


def next_offsets(records: Iterable[BusRecord]) -> dict[tuple[str, int], int]:
    """The commit that says "everything up to and including these records is done"."""
    out: dict[tuple[str, int], int] = {}
    for r in records:
        out[(r.topic, r.partition)] = max(out.get((r.topic, r.partition), 0), r.offset + 1)
    return out


def positions(records: Iterable[BusRecord]) -> list[tuple[str, int, int]]:
    return [(r.topic, r.partition, r.offset) for r in records]


def assert_per_key_order(got: Sequence[BusRecord], sent: Sequence[OutRecord]) -> None:
    """Each key's values arrive in publish order, from one partition, at rising offsets."""
    want, have = defaultdict(list), defaultdict(list)
    for r in sent:
        want[(r.topic, r.key)].append(r.value)
    for r in got:
        have[(r.topic, r.key)].append(r)
    assert {k: [r.value for r in v] for k, v in have.items()} == dict(want)
    for key, recs in have.items():
        assert len({r.partition for r in recs}) == 1, f"key {key} spread over partitions"
        offsets = [r.offset for r in recs]
        assert offsets == sorted(set(offsets)), f"key {key} offsets not increasing: {offsets}"


class EventBusContract(KnownBugs):
    """What every EventBus must do (ports.EventBus, ports.BusConsumer)."""

    poll_timeout = 10.0  # seconds to wait for records a broker has not handed over yet
    idle_polls = 2  # polls that must come back empty once everything was read
    explicit_membership = False  # True if consumer(group, topics, member, members) splits partitions

    def make_bus(self, tmp_path: Path) -> EventBus:
        raise NotImplementedError

    @pytest.fixture
    def bus(self, tmp_path: Path):
        b = self.make_bus(tmp_path)
        yield b
        close_quietly(b)

    @pytest.fixture
    def topic(self, bus) -> str:
        name = f"contract.{uuid.uuid4().hex[:10]}"
        bus.ensure_topics([name])
        return name

    # -- helpers ------------------------------------------------------------------
    @staticmethod
    def group() -> str:
        return f"grp.{uuid.uuid4().hex[:10]}"

    @staticmethod
    def records(topic: str, keys: int, per_key: int) -> list[OutRecord]:
        """keys x per_key validated payment events, interleaved across keys."""
        payments = [new_payment() for _ in range(keys)]
        return [record_for(p, topic, seconds=i) for i in range(per_key) for p in payments]

    def drain(self, consumer: BusConsumer, expected: int, max_records: int = 50) -> list[BusRecord]:
        """Poll until `expected` records arrived (or the timeout says they never will)."""
        out: list[BusRecord] = []
        deadline = time.monotonic() + self.poll_timeout
        while len(out) < expected and time.monotonic() < deadline:
            out.extend(consumer.poll(max_records))
        assert len(out) == expected, f"expected {expected} records, got {len(out)}"
        return out

    def assert_idle(self, consumer: BusConsumer) -> None:
        for _ in range(self.idle_polls):
            assert consumer.poll(100) == []

    # -- tests -------------------------------------------------------------------
    def test_ensure_topics_is_idempotent(self, bus, topic):
        sent = self.records(topic, 2, 2)
        bus.publish(sent)
        bus.ensure_topics([topic])
        bus.ensure_topics([topic, topic])
        bus.publish([])
        assert len(bus.read_all(topic)) == 4

    def test_topics_lists_created_topics_sorted(self, bus, topic):
        more = [f"{topic}.b", f"{topic}.a"]
        bus.ensure_topics(more)
        bus.ensure_topics(more)
        listed = bus.topics()  # a shared broker may hold other tests' topics too
        assert {topic, *more} <= set(listed)
        assert listed == sorted(set(listed))

    def test_group_reads_everything_exactly_once_in_per_key_order(self, bus, topic):
        sent = self.records(topic, 5, 4)
        bus.publish(sent)
        consumer = bus.consumer(self.group(), [topic])  # a group born after the publish starts at the beginning
        got = self.drain(consumer, len(sent), max_records=3)
        assert len(set(positions(got))) == len(sent)
        assert_per_key_order(got, sent)
        self.assert_idle(consumer)
        consumer.close()

    def test_records_published_while_consuming_arrive_in_order(self, bus, topic):
        consumer = bus.consumer(self.group(), [topic])
        first, second = self.records(topic, 3, 2), self.records(topic, 3, 2)
        bus.publish(first)
        got = self.drain(consumer, len(first))
        bus.publish(second)
        got += self.drain(consumer, len(second))
        assert_per_key_order(got, first + second)
        consumer.close()

    def test_many_records_with_mixed_keys_keep_per_key_order(self, bus, topic):
        sent = self.records(topic, 12, 10)
        for i in range(0, len(sent), 25):  # several publish calls, small polls
            bus.publish(sent[i:i + 25])
        consumer = bus.consumer(self.group(), [topic])
        got = self.drain(consumer, len(sent), max_records=7)
        assert len(set(positions(got))) == len(sent)
        assert_per_key_order(got, sent)
        consumer.close()

    def test_two_groups_read_independently(self, bus, topic):
        sent = self.records(topic, 3, 3)
        bus.publish(sent)
        g1, g2 = bus.consumer(self.group(), [topic]), bus.consumer(self.group(), [topic])
        one = self.drain(g1, len(sent))
        g1.commit(next_offsets(one))
        two = self.drain(g2, len(sent))
        assert sorted(positions(one)) == sorted(positions(two))
        g1.close()
        g2.close()

    def test_new_consumer_resumes_after_the_committed_offsets(self, bus, topic, tmp_path):
        sent = self.records(topic, 4, 3)
        bus.publish(sent)
        group = self.group()
        first = bus.consumer(group, [topic])
        got = self.drain(first, len(sent))
        done = got[:5]  # processed durably; the rest was in flight when the process died
        first.commit(next_offsets(done))
        first.close()  # crash: no commit for got[5:]
        restarted = self.make_bus(tmp_path)  # another process
        try:
            second = restarted.consumer(group, [topic])
            again = self.drain(second, len(sent) - len(done))
            assert sorted(positions(again)) == sorted(positions(got[5:]))
            self.assert_idle(second)
            second.close()
        finally:
            close_quietly(restarted)

    def test_seek_back_redelivers(self, bus, topic):
        sent = self.records(topic, 1, 4) + self.records(topic, 2, 1)
        bus.publish(sent)
        consumer = bus.consumer(self.group(), [topic])
        got = self.drain(consumer, len(sent))
        key = sent[0].key
        mine = [r for r in got if r.key == key]
        part = mine[0].partition
        consumer.seek(topic, part, mine[1].offset)
        replay = self.drain(consumer, len([r for r in got if r.partition == part and r.offset >= mine[1].offset]))
        assert [r.value for r in replay if r.key == key] == [r.value for r in mine[1:]]
        assert {r.partition for r in replay} == {part}
        consumer.close()

    def test_lag_counts_uncommitted_records(self, bus, topic):
        sent = self.records(topic, 4, 3)
        bus.publish(sent)
        consumer = bus.consumer(self.group(), [topic])
        got = self.drain(consumer, len(sent))
        assert consumer.lag() == len(sent)  # read is not done: only commits count
        consumer.commit(next_offsets(got[:5]))
        assert consumer.lag() == len(sent) - 5
        consumer.commit(next_offsets(got))
        assert consumer.lag() == 0
        bus.publish(self.records(topic, 3, 1))
        assert consumer.lag() == 3
        consumer.close()

    def test_read_all_returns_every_record_of_that_topic(self, bus, topic):
        other = f"{topic}.other"
        bus.ensure_topics([other])
        sent = self.records(topic, 4, 3)
        bus.publish(sent[:6] + self.records(other, 2, 1) + sent[6:])
        got = bus.read_all(topic)
        assert {r.topic for r in got} == {topic} and len(got) == len(sent)
        assert len(set(positions(got))) == len(sent)
        assert_per_key_order(got, sent)
        assert {r.headers for r in got} == {s.headers for s in sent}
        assert all(isinstance(r.timestamp_ms, int) and r.timestamp_ms > 1_600_000_000_000 for r in got)

    def test_headers_round_trip_as_bytes(self, bus, topic):
        headers = (("tenant_id", b"ten_a"), ("binary", bytes(range(256))), ("dup", b"1"),
                   ("dup", b"2"), ("utf8", "é€".encode()), ("empty", b""))
        bus.publish([OutRecord(topic, "k1", b"\x00value\xff", headers)])
        consumer = bus.consumer(self.group(), [topic])
        (polled,) = self.drain(consumer, 1)
        (listed,) = bus.read_all(topic)
        for r in (polled, listed):
            assert (r.key, r.value, r.headers) == ("k1", b"\x00value\xff", headers)
            assert all(type(v) is bytes for _, v in r.headers)
        consumer.close()

    def test_members_split_partitions_exactly_once(self, bus, topic):
        if not self.explicit_membership:
            pytest.skip("adapter assigns partitions by group rebalancing, not explicit membership")
        sent = self.records(topic, 40, 1)
        bus.publish(sent)
        group, members = self.group(), 3
        consumers = [bus.consumer(group, [topic], m, members) for m in range(members)]
        got: dict[int, list[BusRecord]] = {m: [] for m in range(members)}
        deadline = time.monotonic() + self.poll_timeout
        while sum(map(len, got.values())) < len(sent) and time.monotonic() < deadline:
            for m, c in enumerate(consumers):
                got[m].extend(c.poll(50))
        everything = [r for recs in got.values() for r in recs]
        assert sorted(positions(everything)) == sorted(positions(bus.read_all(topic)))
        owners = defaultdict(set)
        for m, recs in got.items():
            for r in recs:
                owners[r.partition].add(m)
        assert len(owners) > 1 and all(len(o) == 1 for o in owners.values()), dict(owners)
        for c in consumers:
            self.assert_idle(c)
            c.close()
