"""`payctl drill failover` at small scale, as a user runs it: two regions started as `make local
REGIONS=2` starts them, a steady stream to both, region A killed with SIGKILL at a seeded moment,
B taking over, A restarted and its lease handed back."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ..stack import APP_DIR

pytestmark = pytest.mark.e2e


def test_the_failover_drill_loses_nothing_and_charges_nothing_twice(tmp_path):
    out = subprocess.run([sys.executable, "-m", "payctl.cli", "drill", "failover", "--payments", "300", "--seed", "7",
                          "--rate", "30", "--json", "--data-dir", str(tmp_path / "drill")],
                         cwd=APP_DIR, capture_output=True, text=True, timeout=600)
    report = json.loads(out.stdout)
    print(json.dumps({k: v for k, v in report.items() if k != "replication"}, indent=1))
    assert out.returncode == 0, out.stderr[-3000:]
    assert report["sent"] == 300 and report["accepted"] == report["terminal"] and report["lost"] == 0
    assert report["double_authorizations"] == 0
    assert report["ledger_balanced"] and report["audit_ok"]
    assert report["recovery_s"] is None or report["recovery_s"] <= report["recovery_bound_s"]
    assert [t["home"] for t in report["takeovers"]] == ["local-1"]  # B took A's home over, once
