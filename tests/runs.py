"""One session-wide root for the data dirs of the real runs, so the PAN scan can scan them afterwards.

`pytest tests` runs directories alphabetically: e2e (its local stack runs the demo too) and
fault (the crash test) run before security, whose PAN scan then scans every run kept here
(tests/security/test_pan_scan.py). Each run's data dir names its kind in a RUN_MARK file.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

RUNS_ENV = "PAYMENTS_TEST_RUNS_DIR"  # exported, so tools started by tests can find the root too
RUN_MARK = "run-kinds.txt"


def new_run(root: Path, kind: str, label: str) -> Path:
    """A fresh data dir under `root` for one run of `kind` (e2e, crash, ...)."""
    base = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{kind}-{label}")[:80]
    path, n = root / base, 1
    while path.exists():
        n += 1
        path = root / f"{base}-{n}"
    path.mkdir(parents=True)
    mark_run(path, kind)
    return path


def mark_run(data: Path, kind: str) -> None:
    """Record that `data` holds a run of `kind` (a data dir can hold several: e2e and demo)."""
    with open(data / RUN_MARK, "a", encoding="utf-8") as f:
        f.write(kind + "\n")


def runs_in(root: Path) -> dict[str, list[Path]]:
    """{kind: [data dirs]} of the runs kept under `root`."""
    found: dict[str, list[Path]] = {}
    for mark in sorted(root.glob(f"*/{RUN_MARK}")) if root.exists() else []:
        for kind in dict.fromkeys(mark.read_text().split()):
            found.setdefault(kind, []).append(mark.parent)
    return found


def session_root(basetemp: Path) -> Path:
    root = basetemp / "runs"
    root.mkdir(parents=True, exist_ok=True)
    os.environ[RUNS_ENV] = str(root)
    return root
