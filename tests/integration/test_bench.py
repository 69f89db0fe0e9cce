"""`make bench` smoke test: the benchmark runs end to end on a tiny N and writes valid JSON.

No timing is asserted (figures depend on the machine); only that every figure is
there, counted from a real run, and that the run settled every payment.
"""
from __future__ import annotations

import json

from bench.__main__ import main


def test_bench_runs_and_writes_json(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["--n", "25", "--skip", "fixed", "--skip", "scaling", "--skip", "http",
                 "--out", str(tmp_path / "results"), "--work-dir", str(tmp_path)])
    assert code == 0
    (path,) = (tmp_path / "results").glob("bench-*.json")
    r = json.loads(path.read_text())
    assert r["errors"] == {}
    assert r["n"] == 25 and r["git"]["commit"]  # a hash, or "unknown" outside a git checkout
    assert r["machine"]["cpus"] >= 1 and r["machine"]["fsync_commits_per_s"] > 0
    e = r["embedded"]
    assert e["payments"] == 25 and e["payments_per_s"] > 0
    assert e["latency_ms"]["p50"] <= e["latency_ms"]["p99"] <= e["latency_ms"]["max"]
    assert set(e["stages"]) == {"validation", "risk", "routing", "authorization", "capture", "settlement",
                                "notification"}
    # Counted from the run: seven stages append at least seven records per payment.
    assert e["writes"]["log_appends"] >= 7 and e["writes"]["store_txns"] > 0
    assert r["substrate"]["payments_per_s"] > 0 and r["ratio"] > 0
    assert r["peak_rss_mb"] > 0
