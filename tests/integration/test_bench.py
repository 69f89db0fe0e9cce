"""`make bench` smoke test: the benchmark runs end to end on a tiny N and writes valid JSON.

It leads with the user's path (`make local`'s stack on free ports, driven by `payctl demo`), then
the pipeline runs; per-payment figures are gathered in `per_payment`.

No timing is asserted (figures depend on the machine); only that every figure is
there, counted from a real run, and that the run settled every payment.
"""
from __future__ import annotations

import json

import pytest

from bench.__main__ import main


def test_bench_runs_and_writes_json(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["--n", "25", "--skip", "fixed", "--skip", "http", "--scale-n", "25",
                 "--demo-n", "8", "--demo-rate", "8", "--demo-duration", "1",
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

    # The user's path: the stack as `make local` runs it, `payctl demo --count` then `--rate`
    u = r["user_path"]
    assert set(u["processes"]) == {"api", "worker", "simulator"}
    assert u["count"]["mode"] == "count" and u["count"]["final"] == u["count"]["accepted"] == 8
    assert u["rate"]["mode"] == "rate" and u["rate"]["rate"] == 8 and u["rate"]["final"] == 8
    for run in (u["count"], u["rate"]):
        lat = run["latency_ms"]
        assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"] and run["payments_per_s"] > 0
        assert run["cpu_ms_per_payment"]["worker"] > 0 and run["cpu_ms_per_payment"]["api"] > 0
    # Per payment, counted in this run: store rows (embedded) and the worker's CPU while it drains
    pp = r["per_payment"]
    assert pp["store_rows"] == pytest.approx(e["writes"]["store_rows"], abs=0.01) and pp["store_rows"] > 0
    assert pp["log_appends"] >= 7
    assert pp["worker_cpu_ms"] > 0
    assert pp["user_path_cpu_ms"] == u["count"]["cpu_ms_per_payment"]
    assert "dynamodb_requests" not in pp  # only the aws-local run counts those


def test_bench_aws_local_counts_requests_and_prices_a_payment(tmp_path, monkeypatch):
    """The aws-local run counts DynamoDB calls at the boto3 clients and Kafka requests at the bus's
    clients, and turns them into the AWS bill of a million payments (prices: bench/aws_prices.json)."""
    monkeypatch.chdir(tmp_path)
    code = main(["--n", "10", "--aws-n", "3", "--mode", "aws-local", "--skip", "user", "--skip", "fixed",
                 "--skip", "scaling", "--skip", "http", "--out", str(tmp_path / "results"),
                 "--work-dir", str(tmp_path)])
    assert code == 0
    (path,) = (tmp_path / "results").glob("bench-*.json")
    r = json.loads(path.read_text())
    assert r["errors"] == {} and r["aws_local"]["payments"] == 3
    pp = r["per_payment"]
    d = pp["dynamodb_requests"]
    assert d["total"] == pytest.approx(sum(d["by_operation"].values()), abs=0.05) and d["total"] > 0
    assert d["by_operation"].get("TransactWriteItems", 0) > 0  # the stages commit by transaction
    assert d["write_units"] > 0 and d["read_units"] > 0
    k = pp["kafka_requests"]
    assert k["produce"] > 0 and k["fetch"] > 0 and k["bytes_in"] > 0 and k["bytes_out"] > 0
    bill = pp["aws_usd_per_million"]
    assert bill["total"] == pytest.approx(sum(bill[s] for s in ("dynamodb", "lambda", "msk", "kms", "api_gateway")),
                                          abs=0.05)
    assert bill["dynamodb"] > 0 and bill["lambda"] > 0 and bill["msk"] > 0
    assert bill["prices"] == "bench/aws_prices.json" and bill["lambda_memory_mb"] > 0
