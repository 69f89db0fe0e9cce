"""Requests counted where they leave the process, for the per-payment figures of the aws-local run.

- AWS (DynamoDB, DynamoDB Streams, KMS): a botocore event hook on each client (`before-call`:
  one per API call, by operation; `before-send`: one per HTTP attempt, so retries show), plus the
  capacity units each DynamoDB call costs, from its own items (bench/aws_cost.py). The platform's
  clients come from `chalicelib.adapters.aws.setup.clients`; `counting_clients` hands out counted
  ones while it is open (the hook is the only change: the clients behave exactly the same).
- Kafka: kafka-python's own sensors, which its metrics keep only as windowed rates, get cumulative
  stats added: the sender's per-produce-request sensor, the fetcher's per-fetch-response sensor and
  the connections' bytes on the wire. Added to the bus's producer and to every consumer it makes;
  nothing in the adapter changes.
"""
from __future__ import annotations

import threading
from collections import Counter
from contextlib import contextmanager
from typing import Any, Iterator

from kafka.metrics.measurable_stat import AbstractMeasurableStat
from kafka.metrics.stats import Total

from . import aws_cost


class BotoCounter:
    """API calls by service and operation, HTTP attempts, and DynamoDB capacity units, over every
    client it is attached to. Thread-safe (the platform's clients are shared by threads)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()       # "dynamodb.PutItem" -> calls
        self.attempts: Counter[str] = Counter()    # "dynamodb" -> HTTP requests sent (retries included)
        self.units: Counter[str] = Counter()       # "write", "read", "gsi_write", "stream_read" request units
        self.item_bytes: Counter[str] = Counter()  # "written", "read": DynamoDB item bytes
        self.by_item: Counter[str] = Counter()     # "PutItem _control" -> calls, by the kind of item they touch
        self._lock = threading.Lock()

    def attach(self, client: Any) -> Any:
        service = client.meta.service_model.service_name

        def before_call(model: Any, params: dict[str, Any], **_: Any) -> None:
            with self._lock:
                self.calls[f"{service}.{model.name}"] += 1

        def before_send(**_: Any) -> None:
            with self._lock:
                self.attempts[service] += 1

        def after_call(model: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
            params = context.get("bench_params")
            if params is None or "Error" in parsed:
                return
            cost = aws_cost.dynamodb_call_units(model.name, params, parsed)
            kinds = aws_cost.item_kinds(model.name, params)
            with self._lock:
                for kind in kinds:
                    self.by_item[kind] += 1
                for k, v in cost.items():
                    (self.item_bytes if k.endswith("_bytes") else self.units)[k.removesuffix("_bytes")] += v

        def keep_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
            context["bench_params"] = params  # the request as the caller gave it, for after-call

        events = client.meta.events
        events.register("before-call", before_call)
        events.register("before-send", before_send)
        if service in ("dynamodb", "dynamodbstreams"):
            events.register("before-parameter-build", keep_params)
            events.register("after-call", after_call)
        return client

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"calls": dict(self.calls), "attempts": dict(self.attempts), "units": dict(self.units),
                    "item_bytes": dict(self.item_bytes), "by_item": dict(self.by_item)}


@contextmanager
def counting_clients(counter: BotoCounter) -> Iterator[BotoCounter]:
    """While open, every client `chalicelib.adapters.aws.setup.clients` makes is counted by `counter`
    (the bootstrap's store, keys and audit log, and the worker's stream relay all get theirs there)."""
    from chalicelib.adapters.aws import setup  # noqa: PLC0415 - aws-local only

    original = setup.clients

    def counted(aws: Any) -> dict[str, Any]:
        return {name: counter.attach(c) for name, c in original(aws).items()}
    setup.clients = counted
    try:
        yield counter
    finally:
        setup.clients = original


class Tally(AbstractMeasurableStat):
    """How many times a sensor recorded, over all time (kafka-python's Count is windowed)."""

    def __init__(self) -> None:
        self.n = 0

    def record(self, config: Any, value: float, now: Any) -> None:
        self.n += 1

    def measure(self, config: Any, now: Any) -> float:
        return float(self.n)


# (client kind, sensor, stat, our figure): which kafka-python sensor records once per what.
_SENSORS = (
    ("producer", "records-per-request", Tally, "produce_requests"),  # once per produce request
    ("producer", "bytes", Total, "produced_batch_bytes"),            # record batches' bytes in them
    ("producer", "bytes-sent", Total, "producer_wire_bytes_sent"),   # every request on the wire
    ("producer", "bytes-received", Total, "producer_wire_bytes_received"),
    ("consumer", "fetch-latency", Tally, "fetch_requests"),          # once per fetch response
    ("consumer", "bytes-fetched", Total, "fetched_bytes"),           # records' bytes fetched
    ("consumer", "bytes-sent", Total, "consumer_wire_bytes_sent"),
    ("consumer", "bytes-received", Total, "consumer_wire_bytes_received"),
)


class KafkaCounter:
    """Produce and fetch requests and bytes of a KafkaBus's producer and consumers, from their sensors."""

    def __init__(self) -> None:
        self._stats: list[tuple[str, Any]] = []
        self.commits = 0
        self._lock = threading.Lock()

    def _add(self, kind: str, metrics: Any) -> None:
        for k, sensor_name, stat_cls, figure in _SENSORS:
            if k != kind:
                continue
            sensor = metrics.get_sensor(sensor_name) or metrics.sensor(sensor_name)  # net sensors come lazily
            stat = stat_cls()
            sensor.add(metrics.metric_name(f"bench-{figure}", "bench", "cumulative, for make bench"), stat)
            with self._lock:
                self._stats.append((figure, stat))

    def instrument(self, bus: Any) -> Any:
        """Count what `bus` (a KafkaBus) sends from now on: its producer and the consumers it makes."""
        producer = bus.producer()
        self._add("producer", producer._metrics)  # noqa: SLF001 - kafka-python keeps its registry here
        make_consumer = bus.consumer

        def consumer(*args: Any, **kwargs: Any) -> Any:
            c = make_consumer(*args, **kwargs)
            self._add("consumer", c._c._metrics)  # noqa: SLF001
            commit = c.commit

            def counted_commit(offsets: dict[tuple[str, int], int]) -> None:
                commit(offsets)
                if offsets:
                    with self._lock:
                        self.commits += 1
            c.commit = counted_commit
            return c
        bus.consumer = consumer
        return bus

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            out: dict[str, float] = {"offset_commits": self.commits}
            for figure, stat in self._stats:
                out[figure] = out.get(figure, 0) + (stat.n if isinstance(stat, Tally) else stat.measure(None, 0))
        return out
