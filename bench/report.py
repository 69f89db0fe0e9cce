"""Machine facts, the results table, and the JSON file."""
from __future__ import annotations

import os
import platform as pyplatform
import sqlite3
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"ratio": 0.40, "p99_ms_at_half_load": 250.0, "peak_rss_mb": 300.0, "scaling": 1.0}


def git_commit() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    commit = git("rev-parse", "HEAD")
    if not commit:  # not a git checkout (an exported tree)
        return {"commit": "unknown", "branch": "unknown", "dirty": False}
    return {"commit": commit, "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def fsync_rate(data_dir: Path, n: int = 200) -> float:
    """Commits/s of one small WAL transaction with synchronous=FULL: this disk's fsync budget now."""
    data_dir.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(data_dir / "fsync.db"), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS t (x)")
    start = time.perf_counter()
    for i in range(n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (?)", (i,))
        conn.execute("COMMIT")
    conn.close()
    return round(n / (time.perf_counter() - start), 1)


def machine(data_dir: Path) -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "platform": pyplatform.platform(), "python": pyplatform.python_version(),
            "sqlite": sqlite3.sqlite_version, "processor": pyplatform.processor() or pyplatform.machine(),
            "loadavg_start": [round(x, 2) for x in os.getloadavg()],
            "fsync_commits_per_s": fsync_rate(data_dir)}


def _fmt(x: Any, unit: str = "") -> str:
    if x is None:
        return "-"
    return f"{x:,.1f}{unit}" if isinstance(x, float) else f"{x:,}{unit}"


def _lat(lat: dict[str, Any] | None) -> str:
    if not lat or lat.get("p50") is None:
        return "-"
    return f"p50 {lat['p50']:,.0f} · p95 {lat['p95']:,.0f} · p99 {lat['p99']:,.0f} · max {lat['max']:,.0f} ms"


def _check(ok: bool | None) -> str:
    return "-" if ok is None else ("[green]met[/]" if ok else "[red]missed[/]")


def table(r: dict[str, Any]) -> Table:
    t = Table(title=f"make bench  N={r['n']:,}  ({r['git']['commit'][:10]}{'+dirty' if r['git']['dirty'] else ''})")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_column("target")
    e, s, f = r.get("embedded") or {}, r.get("substrate") or {}, r.get("fixed_rate") or {}
    checks = r.get("checks", {})
    t.add_row("embedded: payments/s end to end", _fmt(e.get("payments_per_s")), "")
    t.add_row("embedded: ingest (service layer) payments/s", _fmt(e.get("ingest_per_s")), "")
    t.add_row("embedded: accept→settled at max rate", _lat(e.get("latency_ms")), "")
    t.add_row("bare substrate payments/s (batched)", _fmt(s.get("payments_per_s")), "")
    t.add_row("bare substrate payments/s (pipeline's txns)", _fmt(s.get("same_txns_payments_per_s")), "")
    t.add_row("ratio pipeline ÷ substrate", _fmt(r.get("ratio")), f"≥ {TARGETS['ratio']} {_check(checks.get('ratio'))}")
    t.add_row(f"fixed rate {_fmt(f.get('rate'))}/s (50%): accept→settled", _lat(f.get("latency_ms")),
              f"p99 ≤ {TARGETS['p99_ms_at_half_load']:.0f} ms {_check(checks.get('p99'))}")
    t.add_row("peak RSS (bench process)", _fmt(r.get("peak_rss_mb"), " MB"),
              f"≤ {TARGETS['peak_rss_mb']:.0f} MB {_check(checks.get('rss'))}")
    for w in r.get("scaling") or []:
        t.add_row(f"{w['workers']} worker process(es), draining {w['payments']:,}", _fmt(w.get("payments_per_s")),
                  f"RSS {', '.join(_fmt(x) for x in w.get('worker_peak_rss_mb') or [])} MB")
    if r.get("scaling_factor") is not None:
        t.add_row("scaling 1 → 2 workers", f"×{r['scaling_factor']:.2f}", f"> 1 {_check(checks.get('scaling'))}")
    h = r.get("http_ingest") or {}
    t.add_row("HTTP ingest (chalice local API) payments/s", _fmt(h.get("payments_per_s")) if h else
              (r.get("errors", {}).get("http_ingest") or "-"), f"{h.get('clients', '-')} clients" if h else "")
    a = r.get("aws_local")
    if a is not None or "aws_local" in r.get("errors", {}):
        a = a or {}
        t.add_row(f"aws-local (Tansu + moto) payments/s, N={a.get('payments', '-')}",
                  _fmt(a.get("payments_per_s")) if a else r["errors"]["aws_local"], "")
        t.add_row("aws-local accept→settled", _lat(a.get("latency_ms")), "")
    w = (e.get("writes") or {})
    if w:
        t.add_row("per payment: log appends / rows / write txns",
                  f"{w['log_appends']:.1f} / {w['store_rows'] + w['bus_rows']:.1f} / "
                  f"{w['store_txns'] + w['bus_txns']:.2f}", "")
    m = r["machine"]
    t.add_row("machine", f"{m['cpus']} CPUs, fsync'd commits/s {m['fsync_commits_per_s']:,.0f}",
              f"load {m['loadavg_start']} → {m.get('loadavg_end')}")
    return t


def stage_table(stages: dict[str, Any]) -> Table:
    t = Table(title="per stage (embedded, max rate)")
    for c in ("stage", "records", "mean batch", "processing ms/record", "queue wait p50 / p95 / p99 ms"):
        t.add_column(c, justify="right" if c != "stage" else "left")
    for name, s in stages.items():
        q = s["queue_wait_ms"]
        t.add_row(name, f"{s['records']:,}", f"{s['mean_batch']}", f"{s['processing_ms_per_record']:.3f}",
                  f"{q['p50']} / {q['p95']} / {q['p99']}")
    return t


def write_json(r: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = out_dir / f"bench-{stamp}-{r['mode']}-n{r['n']}.json"
    path.write_bytes(orjson.dumps(r, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    return path


def print_all(r: dict[str, Any], console: Console) -> None:
    console.print(table(r))
    if (r.get("embedded") or {}).get("stages"):
        console.print(stage_table(r["embedded"]["stages"]))
