"""The local event source mapping for every stage, and the loops that drive it.

For each stage a StageWorker (event_source.py) polls the stage's topics as one consumer
group and hands the stage's Lambda handler MSK-shaped batches. The outbox relay runs in
the same process. Stages that call PSPs or merchants (CALLS_OUT) poll in threads of their
own, so a slow answer holds up only the stage that waits for it; the others take turns
with the relay in one thread.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import timedelta
from typing import Any, Callable

from chalicelib.clock import iso
from chalicelib.handlers.relay import relay_once
from chalicelib.ports import Platform
from chalicelib.services import audit, health, reporting, takeover
from chalicelib.services.ownership import LeaseKeeper
from chalicelib.stages import reconciliation

from .event_source import Invoke, StageWorker

log = logging.getLogger("payments.runner")


class Runner:
    """All stage workers, the outbox relay, reconciliation and reporting in one process.

    `relay` (the outbox relay, due reconciliations, the reporting consumer and
    housekeeping) runs in one worker process only: member 0."""

    HOUSEKEEPING_S = 60.0
    REPORT_EVERY_S = 0.5  # reporting is off the payment path: fewer, larger transactions (Lambda: batch window)
    AUDIT_IDLE_S = 0.2  # after finding nothing to chain, look again this much later (spares the store)

    def __init__(self, platform: Platform, handlers: dict[str, tuple[Any, Invoke]], member: int = 0, members: int = 1,
                 relay: bool = True):
        self.platform = platform
        self.workers = [StageWorker(stage, invoke, platform, member, members) for stage, invoke in handlers.values()]
        self.relay = relay
        self.stopping = False
        self._housekept = 0.0
        if relay:  # keep the change feed for the reporting consumer from now on
            platform.store.feed.register(reporting.CONSUMER)
        self._chain_at = 0.0
        self._relay_lock = threading.Lock()
        self._wakes: dict[str, list[threading.Event]] = {}  # topic -> the loops of this process polling it
        s = platform.settings
        # The lease keeper runs where the relay does (one per region): it keeps this region's lease,
        # hands a peer's back, takes a lapsed peer's over, and scans what it took.
        self.keeper = LeaseKeeper(platform.ownership, s.lease_ttl_s, s.takeover_regions, s.failback) if relay else None
        self._lease_at = 0.0
        self._lease_lock = threading.Lock()
        self.taken: list[tuple[str, dict[str, int]]] = []  # (home, what its scan did), for tests and the drill
        self.lease_step()  # hold our own lease before the first batch: the stages act only under it

    def _published(self, topics: set[str]) -> None:
        """Wake the loops whose stages consume what the relay just published (start() fills the map)."""
        for topic in topics:
            for wake in self._wakes.get(topic, ()):
                wake.set()

    def publish_step(self) -> int:
        """The outbox relay alone. Loops that committed events call it at once, so the next stage
        gets them now; one relay at a time (two would publish the same rows twice)."""
        with self._relay_lock:
            return relay_once(self.platform.store.outbox, self.platform.bus, published=self._published)

    def relay_step(self) -> int:
        """The lease keeper when due, the outbox relay, the audit chainer, and now and then a purge of
        expired idempotency keys."""
        done = self.lease_step() + self.publish_step()
        if time.monotonic() >= self._chain_at:
            chained = audit.chain_pending(self.platform)
            self._chain_at = 0.0 if chained else time.monotonic() + self.AUDIT_IDLE_S
            done += chained
        if time.monotonic() - self._housekept > self.HOUSEKEEPING_S:
            self._housekept = time.monotonic()
            self.platform.store.idempotency.purge_expired_idempotency(int(self.platform.clock.now().timestamp()))
        return done

    def lease_step(self) -> int:
        """Every third of the lease's ttl: LeaseKeeper.step, then a scan of each home it took."""
        if self.keeper is None or time.monotonic() < self._lease_at:
            return 0
        with self._lease_lock:
            if time.monotonic() < self._lease_at:
                return 0
            self._lease_at = time.monotonic() + self.platform.settings.lease_ttl_s / 3
            taken = self.keeper.step()
            for home in taken:
                self.taken.append((home, takeover.take_over(self.platform, home)))
            return len(taken)

    def reconcile_step(self) -> int:
        """Due status checks of unknown PSP outcomes (slow PSPs must not hold up the relay), then
        health metrics now and then, as the scheduled Lambda does."""
        done = reconciliation.run_due(self.platform)
        health.report_health(self.platform)
        return done

    def report_step(self) -> int:
        """The reporting consumer on the embedded change feed (AWS modes: the table's stream)."""
        return reporting.report_feed_once(self.platform.store)

    def step(self) -> int:
        done = self.relay_step() + self.reconcile_step() + self.report_step() if self.relay else 0
        for w in self.workers:
            done += w.step()
        return done

    def drain(self, timeout_s: float = 30.0) -> None:
        """Run until nothing moves (tests); gives up after timeout_s."""
        deadline = time.monotonic() + timeout_s
        idle = 0
        while time.monotonic() < deadline:
            if self.step():
                idle = 0
                continue
            idle += 1
            if idle >= 3 and not any(w.not_before for w in self.workers) and not self._reminders_pending():
                if self.relay:
                    audit.chain_all(self.platform)  # what the throttled chainer has not reached yet
                return
            time.sleep(0.01)

    def _reminders_pending(self) -> bool:
        far = iso(self.platform.clock.now() + timedelta(days=1))
        return bool(self.relay and self.platform.store.reminders.due_reminders(far, 1))

    def run_forever(self) -> None:
        """The polling threads (see start) until SIGTERM/SIGINT."""
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        threads = self.start()
        while not self.stopping and all(t.is_alive() for t in threads):
            time.sleep(0.1)
        self.stopping = True
        for t in threads:  # each finishes its current batch: offsets stay consistent
            t.join(timeout=30)
        log.info("runner stopped")

    def start(self) -> list[threading.Thread]:
        """Start the polling threads (stop: set `stopping`, join them).

        Stages that wait on nothing outside the store (validation, risk, routing,
        settlement) take turns with the outbox relay in one thread: they never block,
        and one loop makes larger batches and spares the GIL and the store's write lock
        the hand-offs of a thread per stage (measured: ~40 % more CPU per payment).
        Each stage that calls out (CALLS_OUT: PSPs, webhooks) polls in a thread of its
        own, so a slow PSP or merchant holds up only that stage; so does every stage on a
        bus whose poll waits (Kafka, in aws-local).

        Each loop relays the events it committed at once, and the relay wakes only the
        loops whose stages consume the topics it published to, instead of letting
        them wait out their idle back-off. Polling stays the fallback for what other
        processes (the API, other workers) write."""
        # A bus whose poll waits (Kafka) gets a thread per stage: a turn each in one loop would
        # add up the waits and starve the consumers' group protocol.
        blocking = getattr(self.platform.bus, "POLL_BLOCKS", False)
        inline = [w for w in self.workers if not (blocking or getattr(w.stage, "CALLS_OUT", False))]
        apart = [w for w in self.workers if w not in inline]
        shared_wake = threading.Event()
        apart_wakes = [threading.Event() for _ in apart]

        relay = self._guarded(self.relay_step, "relay") if self.relay else (lambda: 0)
        publish = self._guarded(self.publish_step, "relay") if self.relay else (lambda: 0)
        steps = [self._guarded(w.step, w.stage.NAME) for w in inline]

        def shared() -> int:
            # The relay runs again after each stage that moved: its events reach the next stage
            # in this same turn (validation -> risk -> routing), not one batching window later.
            moved = relay()
            for step in steps:
                done = step()
                if done:
                    moved += done + publish()
            return moved

        def apart_step(w: StageWorker) -> Callable[[], int]:
            def step() -> int:  # its events published by this thread too, before it sleeps
                moved = w.step()
                if moved:
                    publish()
                return moved
            return step
        self._wakes = {}
        for ws, wake in [(inline, shared_wake), *(([w], x) for w, x in zip(apart, apart_wakes))]:
            for topic in {t for w in ws for t in w.stage.CONSUMES}:
                self._wakes.setdefault(topic, []).append(wake)
        threads = [threading.Thread(target=self._stage_loop, args=(inline, shared, shared_wake),
                                    name="runner-shared", daemon=True)]
        threads += [threading.Thread(target=self._stage_loop, args=([w], apart_step(w), wake),
                                     name=f"runner-{w.stage.NAME}", daemon=True) for w, wake in zip(apart, apart_wakes)]
        if self.relay:
            threads += [threading.Thread(target=self._loop, args=(fn, None, False), name=name, daemon=True)
                        for name, fn in (("runner-reconcile", self.reconcile_step),
                                         ("runner-report", self._paced(self.report_step, self.REPORT_EVERY_S)))]
        for t in threads:
            t.start()
        return threads

    def _stage_loop(self, workers: list[StageWorker], step: Callable[[], int], wake: threading.Event | None) -> None:
        """A polling loop over stages; when it stops, their consumers leave the group, so that the
        partitions go to the group's other members now, not after the session times out."""
        try:
            self._loop(step, wake)
        finally:
            for worker in workers:
                close = getattr(worker.consumer, "close", None)
                if close is None:
                    continue
                try:
                    close()
                except Exception as e:  # noqa: BLE001 - a broker already gone: nothing to leave
                    log.warning("closing the consumer failed", extra={"stage": worker.stage.NAME, "error": str(e)})

    def _guarded(self, step: Callable[[], int], name: str, pause_s: float = 1.0) -> Callable[[], int]:
        """`step` for a loop shared with others: an error is logged and that step alone rests
        `pause_s` (what a loop of its own does), the others go on."""
        resume = [0.0]

        def guarded() -> int:
            if time.monotonic() < resume[0]:
                return 0
            try:
                return step()
            except Exception:  # noqa: BLE001 - a broken poll must not stop the stages beside it
                log.exception("poll loop error; retrying", extra={"stage": name})
                resume[0] = time.monotonic() + pause_s
                return 0
        return guarded

    def _paced(self, step: Callable[[], int], every_s: float) -> Callable[[], int]:
        """`step`, then a pause: each run finds a larger batch and costs the store fewer commits."""
        def paced() -> int:
            moved = step()
            if not self.stopping:
                time.sleep(every_s)
            return moved
        return paced

    def _loop(self, step: Callable[[], int], wake: threading.Event | None = None, batching: bool = True) -> None:
        # Lambda's batching window (stage loops): after a partial batch, let records gather a moment before the
        # next poll. Each batch costs a few fsyncs whatever its size, so a pipeline fed a trickle
        # would otherwise spend them on batches of one and starve everything else that writes.
        window = self.platform.settings.batch_window_ms / 1000 if batching else 0
        full = self.platform.settings.batch_size
        idle_sleep = 0.002
        while not self.stopping:
            try:
                moved = step()
            except Exception:  # noqa: BLE001 - a broken poll must not kill the worker silently
                log.exception("poll loop error; retrying")
                moved = 0
                time.sleep(1.0)
            if moved:
                idle_sleep = 0.002
                if moved < full and window:
                    # Gather for the window, unless another loop of this process published meanwhile.
                    if wake is not None:
                        if wake.wait(window):
                            wake.clear()
                    else:
                        time.sleep(window)
            elif wake is not None:
                if wake.wait(idle_sleep):
                    wake.clear()
                    idle_sleep = 0.002
                else:
                    idle_sleep = min(idle_sleep * 2, 0.05)
            else:
                time.sleep(idle_sleep)
                idle_sleep = min(idle_sleep * 2, 0.05)

    def _stop(self, *_: Any) -> None:
        self.stopping = True
