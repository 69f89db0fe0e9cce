"""The user's path, measured first: the local stack exactly as `make local` runs it, driven by `payctl demo`.

`python -m laptop.stack` (the API through `chalice local`, the PSP simulator over HTTP, the stage
worker, webhooks delivered to the simulator's sink, the dashboard) starts on free ports in a data
dir of its own; `payctl demo --json` then runs twice against it, as a user would type it:
- `--count N`: throughput, end-to-end payments/s;
- `--rate R --duration S`: accept→final percentiles at a fixed arrival rate.
The CPU each of the stack's processes used during each run is read from /proc, per payment.
Everything started here is stopped here, on success, failure or Ctrl-C.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from laptop import aws_local

ROOT = Path(__file__).resolve().parents[1]
APP_DIR = ROOT / "chalice_app"
READY = "Ctrl-C stops everything"
# The stack's processes by what they run (their command line), as /proc shows them.
ROLES = {"api": "laptop.api_server", "worker": "laptop.worker", "simulator": "laptop.psp_simulator"}


class UserPathError(RuntimeError):
    pass


def _ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of one process so far (None once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state is fields[0]
    return (int(fields[11]) + int(fields[12])) / _ticks()


def children(pid: int) -> list[int]:
    """Direct children of `pid` (Linux: /proc/<pid>/task/<tid>/children)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def roles(stack_pid: int) -> dict[str, int]:
    """The stack's api, worker and simulator pids."""
    found: dict[str, int] = {}
    for pid in children(stack_pid):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        for role, module in ROLES.items():
            if module in cmd:
                found[role] = pid
    return found


@dataclass
class LocalStack:
    """`python -m laptop.stack` in a session of its own (our Ctrl-C handling stops it, not the terminal's)."""
    data_dir: Path
    env: dict[str, str]
    proc: subprocess.Popen
    output: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, data_dir: Path, extra_env: dict[str, str] | None = None, timeout_s: float = 120) -> LocalStack:
        data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "DATA_DIR": str(data_dir), "PORT": str(aws_local.free_port()),
               "SIMULATOR_PORT": str(aws_local.free_port()), "DASHBOARD_PORT": str(aws_local.free_port()),
               "PLATFORM_MODE": "embedded", "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": os.pathsep.join(p for p in (str(APP_DIR), os.environ.get("PYTHONPATH", "")) if p),
               **(extra_env or {})}
        env.pop("SIMULATOR_URL", None)  # the stack's own simulator, on the port just picked
        proc = subprocess.Popen([sys.executable, "-m", "laptop.stack"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True)
        stack = cls(data_dir, env, proc)
        threading.Thread(target=lambda: stack.output.extend(iter(proc.stdout.readline, "")), daemon=True).start()
        deadline = time.monotonic() + timeout_s
        while not any(READY in line for line in stack.output):
            if proc.poll() is not None or time.monotonic() > deadline:
                stack.stop()
                raise UserPathError("the local stack did not start:\n" + "".join(stack.output)[-3000:])
            time.sleep(0.1)
        return stack

    def pids(self) -> dict[str, int]:
        return roles(self.proc.pid)

    def stop(self) -> None:
        """SIGTERM, which laptop.stack handles like Ctrl-C (children stopped in order); SIGKILL its whole
        tree if it has not finished within 30 s."""
        if self.proc.poll() is None:
            kids = children(self.proc.pid)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                for pid in [self.proc.pid, *kids]:
                    try:
                        os.killpg(pid, signal.SIGKILL)  # each child runs in a session (group) of its own
                    except (ProcessLookupError, PermissionError):
                        pass
                self.proc.wait()


def run_demo(stack: LocalStack, args: list[str], timeout_s: float) -> dict[str, Any]:
    """`payctl demo <args> --json` against the stack (progress on our stderr), and its report."""
    cmd = [sys.executable, "-m", "payctl.cli", "demo", *args, "--timeout", str(timeout_s), "--json"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=stack.env, stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate()
    except BaseException:  # Ctrl-C: the demo goes with us
        proc.kill()
        proc.wait()
        raise
    try:
        report = json.loads(out)
    except ValueError:
        raise UserPathError(f"payctl demo {' '.join(args)} exited {proc.returncode} without a report: {out[-500:]}")
    if "error" in report:
        raise UserPathError(f"payctl demo {' '.join(args)}: {report['error']}")
    return report


def measured(stack: LocalStack, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """fn()'s demo report, with the CPU each stack process used meanwhile, in ms per final payment."""
    pids = stack.pids()
    before = {role: cpu_seconds(pid) for role, pid in pids.items()}
    report = fn()
    final = report.get("final") or 0
    cpu: dict[str, float | None] = {}
    for role, pid in pids.items():
        after = cpu_seconds(pid)
        cpu[role] = (round((after - before[role]) * 1000 / final, 2)
                     if final and after is not None and before[role] is not None else None)
    report["cpu_ms_per_payment"] = cpu
    return report


def user_path(work: Path, count: int, rate: float, duration: float, timeout_s: float = 600.0,
              log: Callable[[str], None] = print, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """Start the stack, run the count and the rate demo, stop the stack: the figures for both runs."""
    log(f"user path: starting the local stack as `make local` runs it (data: {work})")
    stack = LocalStack.start(work, extra_env)
    try:
        out: dict[str, Any] = {"stack": "python -m laptop.stack (make local)", "processes": sorted(stack.pids())}
        log(f"user path: payctl demo --count {count}")
        out["count"] = measured(stack, lambda: run_demo(stack, ["--count", str(count)], timeout_s))
        log(f"user path: payctl demo --rate {rate:g} --duration {duration:g}")
        out["rate"] = measured(stack, lambda: run_demo(
            stack, ["--rate", f"{rate:g}", "--duration", f"{duration:g}"], timeout_s))
        return out
    finally:
        stack.stop()
        (work / "logs").mkdir(parents=True, exist_ok=True)
        (work / "logs" / "stack-output.log").write_text("".join(stack.output))
