"""Lambda's MSK event source mapping for one stage, on a laptop (StageWorker).

It polls the stage's topics as one consumer group, hands the stage's Lambda handler a
batch in the MSK event shape, and honours the partial-batch answer: offsets are
committed only up to the first failed record of each partition (after the handler's
effects are durable); the failed record is redelivered with exponential backoff and
jitter, and after MAX_ATTEMPTS deliveries it goes to <topic>.dlq with the last error.
"""
from __future__ import annotations

import logging
import random
import time
from typing import Any, Callable

from chalicelib.handlers import dlq
from chalicelib.handlers.msk import build_event, iter_records, parse_item_identifier
from chalicelib.ports import Platform
from chalicelib.stages.context import Stage

log = logging.getLogger("payments.runner")
Invoke = Callable[[dict[str, Any]], dict[str, Any]]


class StageWorker:
    """One stage's consumer group member: poll, invoke, commit what succeeded, retry or dead-letter the rest."""

    def __init__(self, stage: Stage, invoke: Invoke, platform: Platform, member: int = 0, members: int = 1,
                 rng: random.Random | None = None):
        self.stage, self.invoke, self.platform = stage, invoke, platform
        s = platform.settings
        self.batch_size, self.max_attempts = s.batch_size, s.max_attempts
        self.base_s, self.max_s = s.retry_base_ms / 1000, s.retry_max_ms / 1000
        self.consumer = platform.bus.consumer(f"stage.{stage.NAME}", stage.CONSUMES, member, members)
        self.attempts: dict[tuple[str, int, int], int] = {}
        self.not_before: dict[tuple[str, int], float] = {}
        self.rng = rng or random.Random()

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^attempt)]."""
        return self.rng.uniform(0, min(self.max_s, self.base_s * 2 ** attempt))

    def step(self, now: float | None = None) -> int:
        """Poll one batch, invoke the handler, commit what succeeded. Returns records handled."""
        now = time.monotonic() if now is None else now
        polled = self.consumer.poll(self.batch_size)
        records, first_of = [], {}
        for r in polled:
            tp = (r.topic, r.partition)
            if self.not_before.get(tp, 0) > now:  # still backing off: hand it back for later
                first_of.setdefault(tp, r.offset)
                continue
            records.append(r)
        for (topic, part), offset in first_of.items():
            self.consumer.seek(topic, part, offset)
        if not records:
            return 0
        event = build_event(records)
        response = self.invoke(event) or {}
        failed: dict[tuple[str, int], tuple[int, str]] = {}
        for item in response.get("batchItemFailures") or []:
            topic, part, offset = parse_item_identifier(item["itemIdentifier"])
            if (topic, part) not in failed or offset < failed[(topic, part)][0]:
                failed[(topic, part)] = (offset, item.get("reason", "handler reported failure"))
        commits: dict[tuple[str, int], int] = {}
        dead: list[dict[str, Any]] = []
        by_id = {(r.topic, r.partition, r.offset): r for r in iter_records(event)}
        for r in records:
            commits[(r.topic, r.partition)] = r.offset + 1
        for tp, (offset, reason) in failed.items():
            key = (*tp, offset)
            self.attempts[key] = self.attempts.get(key, 0) + 1
            if self.attempts[key] >= self.max_attempts:
                dead.append(dlq.entry(by_id[key], self.stage.NAME, reason, self.attempts.pop(key),
                                      self.platform.clock.now()))
                commits[tp] = offset + 1
                self.consumer.seek(*tp, offset + 1)
                self.not_before.pop(tp, None)
            else:
                commits[tp] = offset
                self.consumer.seek(*tp, offset)
                self.not_before[tp] = now + self.backoff(self.attempts[key])
        if dead:  # the DLQ must hold the record before its offset moves past it
            self.platform.bus.publish([dlq.to_record(d) for d in dead])
            for d in dead:
                log.error("record dead-lettered after retries", extra={"stage": d["stage"], "error": d["error"]})
        self.consumer.commit(commits)
        for tp in commits:
            if tp not in failed:
                self.not_before.pop(tp, None)
                for k in [k for k in self.attempts if k[:2] == tp and k[2] < commits[tp]]:
                    self.attempts.pop(k)
        return len(records)
