"""`payctl drill failover`: two regions on this machine (laptop/regions.py), a steady stream of
payments to both, region A killed with SIGKILL at a seeded moment, B taking over, A restarted and
its lease handed back; then what happened, counted from each region's store and the simulator's own
records. Exit 0 only when nothing was lost and nothing was charged twice."""
from __future__ import annotations

import random
import sqlite3
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson

from chalicelib import bootstrap
from chalicelib.adapters.sqlite.leases import SqliteLeases
from chalicelib.clock import parse_iso
from chalicelib.config import Settings
from chalicelib.services import audit
from laptop.regions import REGIONS, TwoRegions

# Mostly approvals; declines; a soft decline at the first PSP (the cascade to the next); and a charge
# answered only after the PSP timeout, so unknown outcomes are in flight when a region dies and the
# taker must ask the PSP (same key) before anything else.
CARDS = ["4242424242424242"] * 7 + ["4000000000000002", "4000000000000119", "4000000000000077"]
RESTING = {"settled", "declined", "failed", "cancelled", "requires_review", "requires_capture", "refunded"}


class DrillError(RuntimeError):
    pass


def _post(base: str, key: str, body: dict, idem: str) -> tuple[int, dict]:
    req = urllib.request.Request(f"{base}/v1/payments", data=orjson.dumps(body), method="POST", headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/json", "Idempotency-Key": idem})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, {}
    except OSError:
        return 0, {}  # refused or reset: the region is gone


def run_drill(payments: int, seed: int, rate: float = 25.0, root: Path | None = None,
              timeout_s: float = 180.0, say=lambda msg: print(msg, file=sys.stderr, flush=True)) -> dict[str, Any]:
    if payments < 10:
        raise DrillError("--payments must be at least 10")
    rng = random.Random(seed)
    root = root or Path(tempfile.mkdtemp(prefix="payctl-drill-"))
    world = TwoRegions(root)
    sent: list[dict[str, Any]] = []
    killed_at: list[float] = []
    try:  # whatever happens, nothing the drill started is left running
        say(f"drill: starting two regions in {root}")
        world.start(say=say)
        a, b = (world.regions[r] for r in REGIONS)
        key = world.creds["api_key"]
        kill_at = int(payments * rng.uniform(0.25, 0.6))
        say(f"drill: sending {payments} payments at {rate:g}/s to both regions; {a.name} dies after #{kill_at}")
        for i in range(payments):
            if i == kill_at:
                a.kill()
                killed_at.append(time.time())
                say(f"drill: SIGKILL {a.name} (API and worker) at payment #{i}")
            target = a if (i % 2 == 0 and not killed_at) else b  # after the kill, clients reach B (Route 53)
            body = {"amount": rng.randint(100, 50_000), "currency": "EUR", "capture": "automatic",
                    "reference": f"drill-{seed}-{i}", "customer": {"id": f"c{i % 17}", "country": "DE"},
                    "payment_method": {"type": "card", "card": {"number": rng.choice(CARDS), "exp_month": 12,
                                                                 "exp_year": 2035, "cvc": "123"}}}
            status, answer = _post(target.base, key, body, uuid.uuid4().hex)
            sent.append({"region": target.name, "status": status, "id": answer.get("id")})
            time.sleep(1 / rate)
        recovery = _wait_takeover(world, killed_at[0], timeout_s, say)
        say(f"drill: {b.name} took {a.name}'s payments over {recovery:.1f} s after the kill; restarting {a.name}")
        a.start()
        _wait(lambda: _lease_owner(world, a.name) == a.name, timeout_s, "the lease to be handed back")
        say(f"drill: {a.name} has its lease back")
        accepted = [s for s in sent if s["status"] == 202]
        tenant = world.creds["tenant_id"]
        stores = {r: _platform(world, r) for r in REGIONS}
        holder = lambda s: stores[a.name] if _home(stores, tenant, s["id"]) == a.name else stores[b.name]  # noqa: E731
        ok = _wait(lambda: all(_status(holder(s), tenant, s["id"]) in RESTING for s in accepted), timeout_s,
                   "every accepted payment to come to rest", fail=False)
        terminal = sum(1 for s in accepted if _status(holder(s), tenant, s["id"]) in RESTING)
        report = {
            "sent": len(sent), "accepted": len(accepted), "terminal": terminal,
            "lost": len(accepted) - terminal, "refused": sum(1 for s in sent if s["status"] != 202),
            "double_authorizations": _double_authorizations(root / "simulator.db"),
            "recovery_s": round(recovery, 2) if recovery == recovery else None,  # None: nothing left to take over
            "recovery_bound_s": world.lease_ttl_s + world.lease_skew_s + 5.0,
            "ledger_balanced": all(_ledger_ok(p) for p in stores.values()),
            "audit_ok": all(audit.verify(p)["ok"] for p in stores.values()),
            "stale_epoch_rejections": len(_log_records(root, "stale epoch refused")),
            "takeovers": [{k: r.get(k) for k in ("region", "home", "redriven", "status_checks", "republished",
                                                   "not_here_yet")}
                          for r in _log_records(root, "home region taken over") if r.get("home") != r.get("region")],
            "replication": orjson.loads((root / "replication.json").read_bytes())
            if (root / "replication.json").exists() else [],
            "seed": seed, "killed_after": kill_at, "settled_in_time": ok, "data": str(root)}
        return report
    finally:
        world.stop()


def _platform(world: TwoRegions, region: str) -> Any:
    peer = [r for r in REGIONS if r != region][0]
    env = {k: v for k, v in world._env(region, peer, world.regions[region].port).items()}
    return bootstrap.build(Settings.from_env(env))


def _home(stores: dict[str, Any], tenant: str, pid: str) -> str:
    for p in stores.values():
        found = p.store.payments.get_payment(tenant, pid)
        if found is not None:
            return found.region
    return ""


def _status(platform: Any, tenant: str, pid: str) -> str:
    found = platform.store.payments.get_payment(tenant, pid)
    return found.status if found else "missing"


def _lease_owner(world: TwoRegions, home: str) -> str:
    lease = SqliteLeases(world.root / "control.db").read(home)
    return lease.owner if lease else ""


def _wait(done, timeout_s: float, what: str, fail: bool = True) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done():
            return True
        time.sleep(0.2)
    if fail:
        raise DrillError(f"gave up waiting for {what} after {timeout_s:.0f} s")
    return False


def _wait_takeover(world: TwoRegions, killed: float, timeout_s: float, say) -> float:  # noqa: ANN001
    """Kill -> the first commit the taker made on a payment of the dead region (its timeline)."""
    a, b = REGIONS
    _wait(lambda: _lease_owner(world, a) == b, timeout_s, f"{b} to take {a}'s lease")
    platform = _platform(world, b)
    tenant = world.creds["tenant_id"]

    def first_commit() -> float | None:
        times, cursor = [], None
        while True:  # every payment of the dead region, page by page
            page, cursor = platform.store.payments.list_payments(tenant, None, 500, cursor)
            for p in page:
                if p.region != a:
                    continue
                for entry in platform.store.payments.timeline(tenant, p.payment_id):
                    at = parse_iso(entry["at"]).timestamp()
                    if at > killed:
                        times.append(at)
            if cursor is None:
                return min(times) if times else None
    _wait(lambda: first_commit() is not None, timeout_s, f"{b}'s first commit on {a}'s payments", fail=False)
    first = first_commit()
    return (first - killed) if first is not None else float("nan")


def _double_authorizations(sim_db: Path) -> int:
    with sqlite3.connect(sim_db) as db:
        rows = db.execute("SELECT reference, COUNT(*) FROM charges WHERE status NOT IN ('declined', 'failed')"
                          " GROUP BY reference HAVING COUNT(*) > 1").fetchall()
    return len(rows)


def _ledger_ok(platform: Any) -> bool:
    return (platform.store.ledger.ledger_drift() == []
            and all(t["sum"] == 0 for t in platform.store.ledger.ledger_totals()))


def _log_records(root: Path, message: str) -> list[dict[str, Any]]:
    """The workers' JSON log records with this message, from both regions."""
    out = []
    for path in root.glob("*/logs/worker.log"):
        for line in path.read_text(errors="replace").splitlines():
            if message in line and line.startswith("{"):
                try:
                    out.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    continue
    return out
