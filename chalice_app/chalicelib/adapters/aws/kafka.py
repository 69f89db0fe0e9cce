"""EventBus on the Kafka protocol (Amazon MSK in AWS, Tansu locally) with kafka-python 3.0.

Producer: idempotent, acks=all, key = payment id (Kafka's murmur2 partitioner keeps
one payment's events in one partition, in order), headers passed through as bytes.
Consumers: group-managed assignment, no auto-commit (offsets are committed by the
runner only after the handler's effects are durable), explicit session and heartbeat
timeouts (a short session timeout also makes joins fast: brokers hold a JoinGroup
for up to half of it).

Security (KAFKA_SECURITY): plaintext (local), tls (MSK TLS listener, port 9094),
iam (MSK IAM auth: SASL OAUTHBEARER over TLS, port 9098, token from
aws-msk-iam-sasl-signer-python, refreshed before it expires).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Sequence

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.net.sasl.oauth import AbstractTokenProvider
from kafka.structs import OffsetAndMetadata

from ...ports import BusRecord, OutRecord
from ..errors import BusUnavailable

SECURITY_MODES = ("plaintext", "tls", "iam")
# kafka-python logs every connection step at INFO; the platform's INFO logs are about payments.
logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLogger("kafka").getEffectiveLevel()))


class MskIamTokenProvider(AbstractTokenProvider):
    """SASL OAUTHBEARER tokens for MSK IAM auth: a SigV4-presigned kafka-cluster:Connect URL.

    `credentials_provider` (a botocore credential provider) is injectable so the
    token can be built without the default credential chain (tests, assumed roles).
    Tokens are reused until a minute before they expire.
    """

    def __init__(self, region: str, credentials_provider: Any = None, clock: Callable[[], float] = time.time):
        super().__init__()
        self.region, self.credentials_provider, self.clock = region, credentials_provider, clock
        self._token: str | None = None
        self._expires_ms = 0
        self._lock = threading.Lock()

    def token(self) -> str:
        from aws_msk_iam_sasl_signer import MSKAuthTokenProvider as signer  # noqa: PLC0415 - only for iam
        with self._lock:
            if self._token is None or self.clock() * 1000 > self._expires_ms - 60_000:
                if self.credentials_provider is not None:
                    self._token, self._expires_ms = signer.generate_auth_token_from_credentials_provider(
                        self.region, self.credentials_provider)
                else:
                    self._token, self._expires_ms = signer.generate_auth_token(self.region)
            return self._token


def client_config(bootstrap: str, security: str = "plaintext", region: str | None = None,
                  token_provider: AbstractTokenProvider | None = None) -> dict[str, Any]:
    """kafka-python settings shared by the producer, consumers and admin client."""
    servers = [s.strip() for s in bootstrap.split(",") if s.strip()]
    if not servers:
        raise ValueError("KAFKA_BOOTSTRAP_SERVERS is empty")
    if security == "plaintext":
        return {"bootstrap_servers": servers, "security_protocol": "PLAINTEXT"}
    if security == "tls":
        return {"bootstrap_servers": servers, "security_protocol": "SSL", "ssl_check_hostname": True}
    if security == "iam":
        if not region and token_provider is None:
            raise ValueError("KAFKA_SECURITY=iam needs the cluster's AWS region")
        return {"bootstrap_servers": servers, "security_protocol": "SASL_SSL", "ssl_check_hostname": True,
                "sasl_mechanism": "OAUTHBEARER",
                "sasl_oauth_token_provider": token_provider or MskIamTokenProvider(region or "")}
    raise ValueError(f"KAFKA_SECURITY must be one of {', '.join(SECURITY_MODES)}, got {security!r}")


def _headers(raw: Any) -> tuple[tuple[str, bytes], ...]:
    return tuple((k, bytes(v) if v is not None else b"") for k, v in (raw or ()))


def _record(r: Any) -> BusRecord:
    key = r.key.decode() if r.key is not None else ""
    return BusRecord(r.topic, r.partition, r.offset, key, r.value or b"", _headers(r.headers), int(r.timestamp))


class KafkaBus:
    """EventBus over Kafka. One producer and one admin client per bus, created on first use."""

    # A poll waits up to poll_timeout_ms and keeps the consumer's group membership going: the local
    # runner gives each stage's consumer a thread of its own instead of a turn in a shared loop.
    POLL_BLOCKS = True

    def __init__(self, bootstrap: str, security: str = "plaintext", region: str | None = None,
                 partitions: int = 4, replication_factor: int = -1, client_id: str = "payments",
                 session_timeout_ms: int = 6_000, heartbeat_interval_ms: int = 1_000, poll_timeout_ms: int = 100,
                 token_provider: AbstractTokenProvider | None = None):
        self.config = {**client_config(bootstrap, security, region, token_provider), "client_id": client_id}
        self.partitions, self.replication_factor = partitions, replication_factor
        self.session_timeout_ms, self.heartbeat_interval_ms = session_timeout_ms, heartbeat_interval_ms
        self.poll_timeout_ms = poll_timeout_ms
        self._producer: KafkaProducer | None = None
        self._admin: KafkaAdminClient | None = None
        self._lock = threading.Lock()

    # -- clients ------------------------------------------------------------------
    def producer(self) -> KafkaProducer:
        with self._lock:
            if self._producer is None:
                self._producer = KafkaProducer(**self.config, acks="all", enable_idempotence=True,
                                               linger_ms=2, max_in_flight_requests_per_connection=5,
                                               retries=2_147_483_647, request_timeout_ms=30_000,
                                               delivery_timeout_ms=60_000)
            return self._producer

    def admin(self) -> KafkaAdminClient:
        with self._lock:
            if self._admin is None:
                self._admin = KafkaAdminClient(**self.config)
            return self._admin

    def _probe(self) -> KafkaConsumer:
        """A group-less consumer for reads that must not move any group's offsets."""
        return KafkaConsumer(**self.config, enable_auto_commit=False, group_id=None,
                             auto_offset_reset="earliest")

    # -- EventBus -----------------------------------------------------------------
    def ensure_topics(self, topics: Sequence[str], partitions: int | None = None) -> None:
        """Create missing topics with `partitions` partitions; existing ones are left as they are."""
        wanted = sorted(set(topics))
        if not wanted:
            return
        try:
            existing = set(self.admin().list_topics())
            for name in (t for t in wanted if t not in existing):
                try:
                    self.admin().create_topics([NewTopic(name, partitions or self.partitions, self.replication_factor)],
                                               wait_for_metadata=True)
                except TopicAlreadyExistsError:
                    pass  # another process won the race: same outcome
        except KafkaError as e:
            raise BusUnavailable(f"ensure_topics {wanted}: {e}") from e

    def publish(self, records: Sequence[OutRecord]) -> None:
        """Send every record and wait until the cluster acknowledged all of them (acks=all)."""
        if not records:
            return
        try:
            producer = self.producer()
            futures = [producer.send(r.topic, key=r.key.encode(), value=r.value, headers=list(r.headers))
                       for r in records]
            producer.flush()
            for f in futures:
                f.get(timeout=90)
        except KafkaError as e:
            raise BusUnavailable(f"publish of {len(records)} records: {e}") from e

    def consumer(self, group: str, topics: Sequence[str], member: int = 0, members: int = 1) -> KafkaBusConsumer:
        """A group member; partitions are assigned by the group (member/members are ignored)."""
        return KafkaBusConsumer(self, group, list(topics))

    def end_offsets(self, tps: Sequence[TopicPartition], probe: KafkaConsumer | None = None) -> dict[TopicPartition, int]:
        """The next offset of each partition, from a fetch's high watermark.

        ListOffsets(latest) alone is not trusted: Tansu answers it with the last
        batch's base offset + 1. A fetch response's high watermark is exact on
        every broker, so we fetch from there and read it."""
        if not tps:
            return {}
        own = probe is None
        probe = probe or self._probe()
        try:
            listed = probe.end_offsets(list(tps))
            probe.assign(list(tps))
            for tp in tps:
                probe.seek(tp, max(0, listed.get(tp, 0) - 1))
            deadline = time.monotonic() + 10
            while any(probe.highwater(tp) is None for tp in tps) and time.monotonic() < deadline:
                probe.poll(timeout_ms=100, max_records=500)
            missing = [tp for tp in tps if probe.highwater(tp) is None]
            if missing:
                raise BusUnavailable(f"no fetch answer for {missing}")
            return {tp: max(listed.get(tp, 0), probe.highwater(tp)) for tp in tps}
        except KafkaError as e:
            raise BusUnavailable(f"end offsets: {e}") from e
        finally:
            if own:
                probe.close()

    def partitions_of(self, topic: str, consumer: KafkaConsumer | None = None) -> list[TopicPartition]:
        c = consumer or self._probe()
        try:
            parts = c.partitions_for_topic(topic) or set()
            return [TopicPartition(topic, p) for p in sorted(parts)]
        finally:
            if consumer is None:
                c.close()

    def read_all(self, topic: str) -> list[BusRecord]:
        """Every record of the topic from offset 0 to the current end, partition by partition."""
        probe = self._probe()
        try:
            tps = self.partitions_of(topic, probe)
            ends = self.end_offsets(tps)
            if not tps:
                return []
            probe.assign(tps)
            for tp in tps:
                probe.seek(tp, 0)
            out: list[BusRecord] = []
            deadline = time.monotonic() + 30
            while any(probe.position(tp) < ends[tp] for tp in tps):
                if time.monotonic() > deadline:
                    raise BusUnavailable(f"read_all({topic}) did not reach the end offsets {ends}")
                for tp, recs in probe.poll(timeout_ms=200, max_records=1000).items():
                    out.extend(_record(r) for r in recs if r.offset < ends[tp])
            return sorted(out, key=lambda r: (r.partition, r.offset))
        except KafkaError as e:
            raise BusUnavailable(f"read_all({topic}): {e}") from e
        finally:
            probe.close()

    def topics(self) -> list[str]:
        try:
            return sorted(t for t in self.admin().list_topics() if not t.startswith("__"))
        except KafkaError as e:
            raise BusUnavailable(f"list topics: {e}") from e

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close(timeout=5)
                self._producer = None
            if self._admin is not None:
                self._admin.close()
                self._admin = None


class KafkaBusConsumer:
    """BusConsumer over a kafka-python group consumer. Use from one thread."""

    def __init__(self, bus: KafkaBus, group: str, topics: list[str]):
        self.bus, self.group, self.topics = bus, group, topics
        self._c = KafkaConsumer(**bus.config, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest", session_timeout_ms=bus.session_timeout_ms,
                                heartbeat_interval_ms=bus.heartbeat_interval_ms,
                                max_poll_interval_ms=300_000)
        self._c.subscribe(topics)

    def poll(self, max_records: int) -> list[BusRecord]:
        """Next records of the assigned partitions (waits up to the bus's poll timeout)."""
        try:
            batch = self._c.poll(timeout_ms=self.bus.poll_timeout_ms, max_records=max_records)
        except KafkaError as e:
            raise BusUnavailable(f"poll {self.group}: {e}") from e
        return [_record(r) for tp in sorted(batch, key=lambda t: (t.topic, t.partition)) for r in batch[tp]]

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        """Synchronous commit of the next offsets to read."""
        if not offsets:
            return
        try:
            self._c.commit({TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()})
        except KafkaError as e:
            raise BusUnavailable(f"commit {self.group}: {e}") from e

    def seek(self, topic: str, partition: int, offset: int) -> None:
        tp = TopicPartition(topic, partition)
        if tp in self._c.assignment():  # a partition lost in a rebalance is the new owner's to read
            self._c.seek(tp, offset)

    def lag(self) -> int:
        """Records published but not committed by the group, over every partition of its topics."""
        tps = [tp for t in self.topics for tp in self.bus.partitions_of(t, self._c)]
        ends = self.bus.end_offsets(tps)
        try:
            committed = {tp: self._c.committed(tp) or 0 for tp in tps}
        except KafkaError as e:
            raise BusUnavailable(f"committed offsets of {self.group}: {e}") from e
        return sum(max(0, ends[tp] - committed[tp]) for tp in tps)

    def close(self) -> None:
        """Leave the group (without committing anything)."""
        self._c.close(autocommit=False)
