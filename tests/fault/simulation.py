"""A deterministic whole-pipeline simulator, after TigerBeetle's VOPR.

One process, one seed, one random.Random: the API service (idempotency keys,
duplicate and conflicting calls, merchant captures/cancels/refunds), the real
stage Lambdas (app.STAGE_HANDLERS via laptop/event_source.py's StageWorker, one worker
per stage and partition, so batches arrive in any order across stages and
partitions but in offset order within one), the outbox relay and
reconciliation, on real SQLite adapters and a fake clock. The scheduler also
re-delivers batches, restarts workers, advances time, crashes anything
between two effects (sim_faults) and makes the PSPs misbehave (sim_psp).
Afterwards it drains to quiescence and checks I1-I4 (sim_checks).

    .venv/bin/python -m tests.fault.simulation --seeds 500 [--start 0]
    .venv/bin/python -m tests.fault.simulation --seed 1234        # replay one, verbosely
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from chalicelib import bootstrap
from chalicelib.adapters.keyring import LocalKeyring
from chalicelib.adapters.sqlite.bus import SqliteBus
from chalicelib.adapters.sqlite.store import open_store
from chalicelib.config import Settings
from chalicelib.handlers.relay import relay_once
from chalicelib.services import reporting, takeover
from chalicelib.services.ownership import LeaseKeeper
from chalicelib.services import tenants as tenancy
from chalicelib.services.payments import PaymentService
from chalicelib.stages import STAGES, reconciliation
from laptop.event_source import StageWorker

from ..fakes import FakeClock
from .sim_checks import check_all
from .sim_client import ApiClient
from .sim_faults import Crasher, CrashingBus, CrashingStore, SimCrash, deterministic
from .sim_psp import PspRates, SimPsp

PSP_STAGES = ("authorization", "capture", "refund")
REPLAY = ".venv/bin/python -m tests.fault.simulation --seed {seed}"
# action -> weight; the scheduler picks one per step
ACTIONS = {"create": 5, "api_retry": 2, "api_duplicate": 2, "api_conflict": 1, "merchant": 2, "deliver": 30,
           "redeliver": 3, "restart": 1, "relay": 8, "reconcile": 3, "tick": 5, "lease": 3}


@dataclass
class Result:
    seed: int
    payments: int = 0
    steps: int = 0
    faults: Counter = field(default_factory=Counter)
    crashes: Counter = field(default_factory=Counter)
    stats: Counter = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    digest: str = ""


class Simulation(ApiClient):
    def __init__(self, seed: int, workdir: str):
        self.seed, rng = seed, random.Random(seed)
        self.rng = rng
        self.n_payments, self.n_steps = rng.randint(3, 12), rng.randint(250, 800)
        self.crash_p = rng.uniform(0.02, 0.15)
        self.partitions = rng.randint(1, 3)
        self.settings = Settings.from_env({
            "DATA_DIR": workdir, "BUS_PARTITIONS": str(self.partitions), "BATCH_SIZE": str(rng.randint(1, 5)),
            "MAX_ATTEMPTS": str(rng.randint(3, 6)), "RETRY_BASE_MS": "200", "RETRY_MAX_MS": "5000",
            "UNKNOWN_CHECK_SCHEDULE_S": ",".join(str(rng.choice((1, 2, 5, 15))) for _ in range(rng.randint(2, 4))),
            "BREAKER_THRESHOLD": "3", "BREAKER_COOLDOWN_S": "30", "IDEMPOTENCY_LOCK_S": "5", "LOG_LEVEL": "CRITICAL"})
        self.clock = FakeClock()
        self.crasher = Crasher(random.Random(rng.random()))
        self.faults: Counter = Counter()
        self.stats: Counter = Counter()
        self.raw_store = open_store(self.settings.store_path)
        self.raw_bus = SqliteBus(self.settings.bus_path, self.partitions)
        for db in (self.raw_store.unit_of_work.db, self.raw_bus.db):  # process crashes only, no power cuts: no fsync
            db.conn().execute("PRAGMA synchronous=OFF")
        self.raw_store.feed.register(reporting.CONSUMER)  # as the worker's runner does
        self.store = CrashingStore(self.raw_store, self.crasher)
        self.bus = CrashingBus(self.raw_bus, self.crasher)
        scale = rng.uniform(0.3, 1.6)
        rates = PspRates(**{k: v * scale for k, v in vars(PspRates()).items()})
        psp_rng = random.Random(rng.random())
        self.psps = {n: SimPsp(n, psp_rng, PspRates(**vars(rates)), self.faults, self.crasher)
                     for n in ("sim-a", "sim-b")}
        self.webhook_fail = rng.uniform(0, 0.3)
        self.platform = bootstrap.assemble(self.settings, self.store, self.bus,
                                           LocalKeyring(self.settings.keyring_path), self.clock, self.psps,
                                           post_webhook=self._webhook)
        self.platform.ownership.cache_s = 0.0  # simulated time: every check reads the control store
        self.keeper = LeaseKeeper(self.platform.ownership, self.settings.lease_ttl_s)
        self.keeper.step()  # the runner holds the lease before the first batch
        self.service = PaymentService(self.platform)
        self.tenant_id = tenancy.create_tenant(self.platform, "sim", webhook_url="https://merchant.example/hooks",
                                               tenant_id="ten_SIM")["tenant_id"]
        import app  # noqa: PLC0415 - the Chalice app reads the platform installed below
        self.handlers = app.STAGE_HANDLERS
        self.workers: dict[tuple[str, int], StageWorker] = {}
        self.last_batch: dict[tuple[str, int], dict] = {}
        for name in STAGES:
            for member in range(self.partitions):
                self._start_worker((name, member))
        self.keys: dict[str, bytes] = {}          # idempotency key -> body sent
        self.first_reply: dict[str, bytes] = {}   # key -> body of the first 202
        self.answers: dict[str, set[str]] = {}    # key -> payment ids answered 202
        self.unanswered: list[str] = []           # keys whose request crashed or met 409 in flight
        self.api_violations: list[str] = []

    # -- plumbing ------------------------------------------------------------------------
    def _start_worker(self, key: tuple[str, int]) -> None:
        name, member = key
        handler = self.handlers[name]

        def invoke(event: dict) -> dict:
            self.last_batch[key] = event
            self.stats["batches"] += 1
            return handler(event, None)
        self.workers[key] = StageWorker(STAGES[name], invoke, self.platform, member, self.partitions,
                                        rng=random.Random(self.rng.random()))

    def _webhook(self, url: str, body: bytes, headers: dict, timeout: float) -> int:
        self.crasher("webhook.post:before")
        if self.rng.random() < self.webhook_fail:
            self.faults["webhook_down"] += 1
            raise OSError("connection refused")
        return 200

    def now(self) -> float:
        return self.clock.now().timestamp()

    def all_payments(self) -> list[Any]:
        out, cursor = [], None
        while True:
            page, cursor = self.raw_store.payments.list_payments(self.tenant_id, None, 100, cursor)
            out += page
            if not cursor:
                return out

    def digest(self) -> str:
        """A fingerprint of the end state: the same seed must always give the same one."""
        h = hashlib.sha256()
        for p in self.all_payments():
            h.update(orjson.dumps(p.to_dict(), option=orjson.OPT_SORT_KEYS))
            h.update(orjson.dumps(self.raw_store.payments.timeline(self.tenant_id, p.payment_id)))
        for name, psp in sorted(self.psps.items()):
            h.update(orjson.dumps(sorted((k, r["result"].outcome.value) for k, r in psp.auths.items())))
        h.update(orjson.dumps(sorted(self.stats.items())))
        return h.hexdigest()[:16]

    def dlq_entries(self) -> list[dict]:
        return [orjson.loads(r.value) for t in self.raw_bus.topics() if t.endswith(".dlq")
                for r in self.raw_bus.read_all(t)]

    # -- the event source mapping, relay, reconciliation, time ---------------------------
    def do_deliver(self) -> None:
        """A batch for a worker that has records waiting (mostly), or for any worker."""
        heads = {(t, p): o for t, p, o in self.raw_bus.db.conn().execute("SELECT topic, partition, next_offset"
                                                                         " FROM heads")}
        busy = [k for k, w in self.workers.items()
                if any(heads[tp] > at for tp, at in w.consumer._inner.position.items())]
        self._victim = self.rng.choice(busy if busy and self.rng.random() < 0.9 else list(self.workers))
        if self._victim[0] in PSP_STAGES and not self.crasher.countdown and self.rng.random() < self.crash_p * 2:
            self.crasher.arm(6)  # crashes around PSP calls are the interesting ones: aim some there
        self.workers[self._victim].step(self.now())

    def do_redeliver(self) -> None:
        """Lambda's at-least-once: the same batch again (offsets untouched)."""
        if self.last_batch:
            self._victim = self.rng.choice(sorted(self.last_batch))
            self.stats["redeliveries"] += 1
            self.handlers[self._victim[0]](self.last_batch[self._victim], None)

    def do_restart(self) -> None:
        self.stats["restarts"] += 1
        self._start_worker(self.rng.choice(list(self.workers)))

    def do_relay(self) -> None:
        relay_once(self.store.outbox, self.bus, limit=self.rng.randint(1, 8))
        reporting.report_feed_once(self.store, limit=self.rng.randint(1, 8))  # the reporting consumer

    def do_reconcile(self) -> None:
        reconciliation.run_due(self.platform, limit=self.rng.randint(1, 5))

    def do_lease(self) -> int:
        """The lease keeper's turn (the runner's, every ttl/3): ticks of up to a minute let the lease
        lapse often, so taking it again with the next epoch and scanning the home is exercised."""
        taken = self.keeper.step()
        for home in taken:
            self.stats["lease_taken"] += 1
            takeover.take_over(self.platform, home)
        return len(taken)

    def do_tick(self) -> None:
        r = self.rng
        self.clock.advance(r.uniform(0.05, 2.0) if r.random() < 0.8 else r.uniform(5, 60))

    def step(self, action: str) -> None:
        self._victim = None
        try:
            getattr(self, "do_" + action)()
        except SimCrash:
            if self._victim is not None:  # the worker process died: it restarts from committed offsets
                self.stats["restarts"] += 1
                self._start_worker(self._victim)
        finally:
            self.crasher.disarm()

    def run(self) -> None:
        names, weights = list(ACTIONS), list(ACTIONS.values())
        for _ in range(self.n_steps):
            if self.rng.random() < self.crash_p:
                self.crasher.arm(8)
            self.step(self.rng.choices(names, weights)[0])
        self.drain()

    def drain(self, rounds: int = 400) -> None:
        """No more crashes; run everything until nothing moves, advancing time past every schedule."""
        for _ in range(rounds):
            moved = self.do_lease() + relay_once(self.store.outbox, self.bus)
            moved += reconciliation.run_due(self.platform, limit=100)
            moved += reporting.report_feed_once(self.store)
            for key in list(self.workers):
                moved += self.workers[key].step(self.now())
            for key in list(self.unanswered):
                self._post(key, self.keys[key], "retry")
            if moved:
                continue
            workers = self.workers.values()
            busy = (self.unanswered or self.raw_store.outbox.pending_outbox(1) or any(w.not_before for w in workers)
                    or self.raw_store.feed.read(reporting.CONSUMER, 1)
                    or self.raw_store.reminders.due_reminders("9999", 1) or any(w.consumer.lag() for w in workers))
            if not busy:
                return
            self.clock.advance(max(self.settings.retry_max_ms / 1000, self.settings.idempotency_lock_s) + 1)
        self.api_violations.append(f"no quiescence after {rounds} drain rounds")


def run_seed(seed: int, verbose: bool = False) -> Result:
    quiet, logging.root.manager.disable = logging.root.manager.disable, logging.CRITICAL  # dead letters are expected
    workdir = tempfile.mkdtemp(prefix=f"sim{seed}-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None)
    try:
        with deterministic(seed):
            sim = Simulation(seed, workdir)
            bootstrap.set_platform(sim.platform)
            try:
                sim.run()
                violations = check_all(sim)
            finally:
                bootstrap.set_platform(None)
                sim.raw_store.unit_of_work.db.close()
                sim.raw_bus.db.close()
        res = Result(seed, len(sim.keys), sim.n_steps, sim.faults, sim.crasher.crashes, sim.stats, violations,
                     sim.digest())
        if verbose:
            print(f"seed {seed}: {res.payments} payments, {res.steps} steps, digest {res.digest}")
            for p in sim.all_payments():
                print(f"  {p.payment_id} {p.state.value:18} {[(a.psp, a.status) for a in p.attempts]}")
        return res
    finally:
        logging.disable(quiet)
        shutil.rmtree(workdir, ignore_errors=True)


def summary(results: list[Result], wall_s: float) -> str:
    faults, crashes, stats = Counter(), Counter(), Counter()
    for r in results:
        faults.update(r.faults)
        crashes.update(r.crashes)
        stats.update(r.stats)
    bad = [r for r in results if r.violations]
    lines = [f"seeds run: {len(results)} ({results[0].seed}..{results[-1].seed})" if results else "seeds run: 0",
             f"payments: {sum(r.payments for r in results)}  steps: {sum(r.steps for r in results)}"
             f"  batches delivered: {stats['batches']}",
             f"PSP/webhook faults injected: {sum(faults.values())} {dict(sorted(faults.items()))}",
             f"crashes: {sum(crashes.values())} {dict(sorted(crashes.items()))}",
             f"duplicates: redelivered batches {stats['redeliveries']}, duplicate API calls {stats['api_duplicates']}"
             f", conflicting bodies {stats['api_conflicts']}; worker restarts {stats['restarts']}",
             f"invariant violations: {sum(len(r.violations) for r in results)} in {len(bad)} seeds",
             f"wall time: {wall_s:.1f}s"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, help="replay one seed (verbose)")
    ap.add_argument("--seeds", type=int, default=100, help="how many seeds to run")
    ap.add_argument("--start", type=int, default=0, help="first seed")
    args = ap.parse_args(argv)
    seeds = [args.seed] if args.seed is not None else range(args.start, args.start + args.seeds)
    started, results = time.monotonic(), []
    for seed in seeds:
        res = run_seed(seed, verbose=args.seed is not None)
        results.append(res)
        for v in res.violations:
            print(f"seed {seed}: {v}")
        if res.violations:
            print(f"replay: {REPLAY.format(seed=seed)}")
    print(summary(results, time.monotonic() - started))
    return 1 if any(r.violations for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
