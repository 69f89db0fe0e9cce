"""A drill that fails half-way through starting its regions leaves nothing of them running."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from laptop import regions
from payctl.drill import run_drill

pytestmark = pytest.mark.e2e


def running_in(root: Path) -> list[int]:
    """Processes whose DATA_DIR lies under `root`, or whose command line names it."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if str(root).encode() in cmd or any(e.startswith(b"DATA_DIR=" + str(root).encode()) for e in env):
            found.append(int(pid))
    return found


def test_a_failed_start_stops_what_it_started(tmp_path, monkeypatch):
    real = regions.wait_http

    def second_api_never_answers(url, proc, name, timeout_s=60.0):
        if name == f"API of {regions.REGIONS[1]}":
            raise RuntimeError(f"{name} did not answer (injected)")
        return real(url, proc, name, timeout_s)
    monkeypatch.setattr(regions, "wait_http", second_api_never_answers)
    with pytest.raises(RuntimeError, match="injected"):
        run_drill(20, 1, root=tmp_path / "drill", say=lambda _: None)
    assert running_in(tmp_path / "drill") == []
