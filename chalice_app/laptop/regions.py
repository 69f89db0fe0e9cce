"""`make local REGIONS=2`: two regions on one machine, active/active, as DESIGN.md §8 describes.

Each region has its own data directory (store, bus, audit log), API port and stage worker; both
share the control store (the leases: CONTROL_STORE) and one PSP simulator, so charges are counted
across regions. The replicator (laptop/replicator.py) copies each region's store writes to the
other item by item, last writer wins, after REPLICATION_LAG_S, and mirrors its bus topics. The
tenant key ring is one file both regions open (AWS: a multi-region KMS key).

TwoRegions is also what `payctl drill failover` runs: it can SIGKILL one region and restart it.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chalicelib import bootstrap
from chalicelib import config as C
from chalicelib.config import Settings
from chalicelib.stages import topics

from .aws_local import free_port
from .replicator import enable
from .stack import APP_DIR, demo_tenant, stop_on_signals, wait_http

REGIONS = ("local-1", "local-2")
CHALICE_STAGE = {"local-1": "dev", "local-2": "dev-local-2"}  # .chalice/config.json: chalice local sets the region
LAG_ENV = "REPLICATION_LAG_S"


@dataclass
class RegionProcs:
    name: str
    peer: str
    data: Path
    port: int
    env: dict[str, str]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, py: str = sys.executable) -> None:
        logs = self.data / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for name, args in (("worker", [py, "-m", "laptop.worker"]),
                           ("api", [py, "-m", "laptop.api_server", "--host", "127.0.0.1", "--port", str(self.port),
                                    "--stage", CHALICE_STAGE[self.name], "--no-autoreload"])):
            log = open(logs / f"{name}.log", "ab")
            self.procs[name] = subprocess.Popen(args, cwd=APP_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=True)
        wait_http(f"{self.base}/health", self.procs["api"], f"API of {self.name}", timeout_s=90)

    def kill(self) -> None:
        """SIGKILL: the region's processes die mid-work; its disk (the data dir) survives."""
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        self.procs.clear()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


@dataclass
class TwoRegions:
    root: Path
    lease_ttl_s: float = 6.0
    lease_skew_s: float = 1.0
    lag_s: float = 0.2
    regions: dict[str, RegionProcs] = field(default_factory=dict)
    others: dict[str, subprocess.Popen] = field(default_factory=dict)
    creds: dict[str, Any] = field(default_factory=dict)
    sim_port: int = 0

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    def _env(self, region: str, peer: str, port: int) -> dict[str, str]:
        return {**os.environ, "PYTHONUNBUFFERED": "1", C.PLATFORM_MODE: "embedded",
                C.DATA_DIR: str(self.root / region), C.PLATFORM_REGION: region, C.PORT: str(port),
                C.TAKEOVER_REGIONS: peer, C.CONTROL_STORE: str(self.root / "control.db"),
                C.LEASE_TTL_S: str(self.lease_ttl_s), C.LEASE_SKEW_S: str(self.lease_skew_s),
                C.SIMULATOR_PORT: str(self.sim_port), C.SIMULATOR_URL: self.sim_url, C.FAILBACK: "handback"}

    def start(self, ports: tuple[int, int] | None = None, sim_port: int | None = None,
              say=print) -> None:  # noqa: ANN001 - print or a quiet function
        py = sys.executable
        self.root.mkdir(parents=True, exist_ok=True)
        self.sim_port = sim_port or free_port()
        logs = self.root / "logs"
        logs.mkdir(exist_ok=True)
        self.others["simulator"] = subprocess.Popen(
            [py, "-m", "laptop.psp_simulator", "--host", "127.0.0.1", "--port", str(self.sim_port),
             "--db", str(self.root / "simulator.db")], cwd=APP_DIR, stdout=open(logs / "simulator.log", "ab"),
            stderr=subprocess.STDOUT, start_new_session=True)
        wait_http(f"{self.sim_url}/health", self.others["simulator"], "PSP simulator")
        say(f"  PSP simulator  {self.sim_url}  (shared: charges counted across regions)")
        ports = ports or (free_port(), free_port())
        for (region, peer), port in zip(((REGIONS[0], REGIONS[1]), (REGIONS[1], REGIONS[0])), ports):
            data = self.root / region
            data.mkdir(parents=True, exist_ok=True)
            env = self._env(region, peer, port)
            keyring = data / "keyring.json"  # one key ring for both (AWS: a multi-region KMS key)
            if region != REGIONS[0] and not keyring.exists():
                keyring.symlink_to(self.root / REGIONS[0] / "keyring.json")
            platform = bootstrap.build(Settings.from_env(dict(env)))
            platform.bus.ensure_topics(topics())
            enable(platform.settings.store_path, region)  # before any write that must reach the other region
            if region == REGIONS[0]:
                self.creds, _ = demo_tenant(platform)  # replicates to the other region with its API key
            self.regions[region] = RegionProcs(region, peer, data, port, env)
        rep_args = [py, "-m", "laptop.replicator", "--lag-s", str(self.lag_s), "--status",
                    str(self.root / "replication.json")]
        for region in REGIONS:
            rep_args += ["--region", f"{region}={self.root / region}"]
        self.others["replicator"] = subprocess.Popen(rep_args, cwd=APP_DIR, stdout=open(logs / "replicator.log", "ab"),
                                                     stderr=subprocess.STDOUT, start_new_session=True)
        for region in REGIONS:
            self.regions[region].start(py)
            say(f"  {region:<8} API {self.regions[region].base}  data {self.regions[region].data}")
        say(f"  replicator     {REGIONS[0]} <-> {REGIONS[1]}, item by item, lag {self.lag_s:g} s;"
            f" leases in {self.root / 'control.db'} (ttl {self.lease_ttl_s:g} s, skew {self.lease_skew_s:g} s)")

    def kill(self) -> None:
        """Everything, now (a second Ctrl-C)."""
        for r in self.regions.values():
            r.kill()
        for proc in self.others.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)

    def stop(self) -> None:
        for r in self.regions.values():
            r.stop()
        for proc in self.others.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.others.clear()


def main() -> int:
    root = Path(os.environ.get(C.DATA_DIR) or ".data").resolve() / "regions"
    world = TwoRegions(root, lag_s=float(os.environ.get(LAG_ENV, "0.2")))
    stop_on_signals(world.kill)
    try:
        print(f"two regions: data {root}")
        base_port = int(os.environ.get(C.PORT, "8000"))
        world.start(ports=(base_port, base_port + 1), sim_port=int(os.environ.get(C.SIMULATOR_PORT, "8100")))
        print(f"\ndemo tenant {world.creds['tenant_id']}, API key {world.creds['api_key']} (valid in both regions)")
        print("  .venv/bin/payctl drill failover --payments 300     # kill a region, watch the other take over")
        print("\nCtrl-C stops everything.", flush=True)
        while all(p.poll() is None for r in world.regions.values() for p in r.procs.values()):
            time.sleep(0.5)
        print("a region's process stopped unexpectedly; see its logs", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except RuntimeError as e:
        print(f"make local REGIONS=2: {e}", file=sys.stderr)
        return 1
    finally:
        print("\nstopping…", flush=True)
        world.stop()
        print("stopped.")


if __name__ == "__main__":
    sys.exit(main())
