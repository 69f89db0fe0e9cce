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
# Issue 19's targets (the ratio to the bare substrate is retired: shown, not judged).
TARGETS = {"p99_ms_at_half_load": 100.0, "peak_rss_mb": 300.0, "scaling": 1.0,
           "user_count_payments_per_s": 150.0, "user_rate_p99_ms": 300.0, "store_rows": 35.0,
           "dynamodb_requests": 16.0, "worker_cpu_ms": 2.5, "aws_local_payments_per_s": 8.0,
           "aws_local_p50_ms": 3000.0, "two_workers_payments_per_s": 300.0}


def headline_rows(r: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """The per-payment table the README leads with: (figure, now, target, met?), from one results file."""
    t, pp = TARGETS, r.get("per_payment") or {}
    u = r.get("user_path") or {}
    c, q = u.get("count") or {}, u.get("rate") or {}
    rows: list[tuple[str, str, str, bool | None]] = []

    def ok(x: Any, bound: float, at_least: bool) -> bool | None:
        return None if x is None else (x >= bound if at_least else x <= bound)
    x = c.get("payments_per_s")
    rows.append((f"`make local` + `payctl demo --count {c.get('count', '-')}`, end to end",
                 "-" if x is None else f"{x:,.1f}/s", f"≥ {t['user_count_payments_per_s']:.0f}/s",
                 ok(x, t["user_count_payments_per_s"], True)))
    lat = q.get("latency_ms") or {}
    rows.append((f"`make local` + `payctl demo --rate {q.get('rate', '-')}` for "
                 f"{round(q['count'] / q['rate']) if q.get('rate') else '-'} s, p99 accept→final",
                 "-" if lat.get("p99") is None else f"{lat['p99']:,.0f} ms (p50 {lat['p50']:,.0f})",
                 f"≤ {t['user_rate_p99_ms']:.0f} ms", ok(lat.get("p99"), t["user_rate_p99_ms"], False)))
    x = pp.get("store_rows")
    rows.append(("store rows per payment (embedded)", "-" if x is None else f"{x:.1f}", f"≤ {t['store_rows']:.0f}",
                 ok(x, t["store_rows"], False)))
    d = pp.get("dynamodb_requests") or {}
    x = d.get("total")
    top = ", ".join(f"{k} {v:g}" for k, v in sorted((d.get("by_operation") or {}).items(), key=lambda kv: -kv[1]))
    rows.append(("DynamoDB requests per payment (aws-local, by operation)", "-" if x is None else f"{x:.1f} ({top})",
                 f"≤ {t['dynamodb_requests']:.0f}", ok(x, t["dynamodb_requests"], False)))
    k = pp.get("kafka_requests") or {}
    rows.append(("Kafka requests per payment (aws-local: produce + fetch + offset commits)",
                 "-" if not k else f"{k['total']:.1f} ({k['produce']:g} + {k['fetch']:g} + {k['offset_commits']:g})",
                 "", None))
    x = pp.get("worker_cpu_ms")
    rows.append(("stage-worker CPU per payment (one worker draining)", "-" if x is None else f"{x:.2f} ms",
                 f"≤ {t['worker_cpu_ms']} ms", ok(x, t["worker_cpu_ms"], False)))
    a = r.get("aws_local") or {}
    alat = a.get("latency_ms") or {}
    x = a.get("payments_per_s")
    rows.append((f"aws-local throughput, N={a.get('payments', '-')}",
                 "-" if x is None else f"{x:.1f}/s, p50 {alat.get('p50') or 0:,.0f} ms",
                 f"≥ {t['aws_local_payments_per_s']:.0f}/s, p50 ≤ {t['aws_local_p50_ms'] / 1000:.0f} s",
                 None if x is None else x >= t["aws_local_payments_per_s"] and (alat.get("p50") or 0)
                 <= t["aws_local_p50_ms"]))
    f = r.get("fixed_rate") or {}
    x = (f.get("latency_ms") or {}).get("p99")
    rows.append((f"embedded p99 accept→settled at half of max rate ({f.get('rate', '-')}/s)",
                 "-" if x is None else f"{x:,.0f} ms", f"≤ {t['p99_ms_at_half_load']:.0f} ms",
                 ok(x, t["p99_ms_at_half_load"], False)))
    two = next((w for w in r.get("scaling") or [] if w["workers"] == 2), None)
    x = two and two["payments_per_s"]
    rows.append(("embedded end to end, 2 worker processes (drain)", "-" if not x else f"{x:,.1f}/s",
                 f"≥ {t['two_workers_payments_per_s']:.0f}/s", ok(x or None, t["two_workers_payments_per_s"], True)))
    b = pp.get("aws_usd_per_million") or {}
    rows.append(("AWS bill of a million payments (us-east-1 list prices)",
                 "-" if not b else f"${b['total']:,.2f} (DynamoDB {b['dynamodb']:,.2f}, Lambda {b['lambda']:,.2f}, "
                 f"MSK {b['msk']:,.2f}, KMS {b['kms']:,.2f}, API Gateway {b['api_gateway']:,.2f})", "", None))
    return rows


def headline_table(r: dict[str, Any]) -> Table:
    t = Table(title="per payment, and the user's path (issue 19)")
    for col in ("figure", "now", "target", ""):
        t.add_column(col)
    for figure, now, target, met in headline_rows(r):
        t.add_row(figure, now, target, _check(met))
    return t


def headline_markdown(r: dict[str, Any]) -> str:
    rows = ["| figure | now | target |", "|---|---|---|"]
    for figure, now, target, met in headline_rows(r):
        mark = "" if met is None else (" (met)" if met else " (missed)")
        rows.append(f"| {figure} | {now} | {target}{mark} |")
    return "\n".join(rows)


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
    t.add_row("embedded: ingest (service layer) payments/s", _fmt(e.get("ingest_per_s")),
              "API process" if e.get("ingest") == "process" else "threads of the bench process")
    t.add_row("embedded: accept→settled at max rate", _lat(e.get("latency_ms")), "")
    t.add_row("bare substrate payments/s (batched)", _fmt(s.get("payments_per_s")), "")
    t.add_row("bare substrate payments/s (pipeline's txns)", _fmt(s.get("same_txns_payments_per_s")), "")
    ratio = r.get("ratio")
    t.add_row("ratio pipeline ÷ substrate", "-" if ratio is None else f"{ratio:.3f}", "(retired by issue 19)")
    t.add_row(f"fixed rate {_fmt(f.get('rate'))}/s (50%): accept→settled", _lat(f.get("latency_ms")),
              f"p99 ≤ {TARGETS['p99_ms_at_half_load']:.0f} ms {_check(checks.get('p99'))}")
    t.add_row("peak RSS (bench process: stage worker)", _fmt(r.get("peak_rss_mb"), " MB"),
              f"≤ {TARGETS['peak_rss_mb']:.0f} MB {_check(checks.get('rss'))}")
    if r.get("ingest_peak_rss_mb") is not None:
        t.add_row("peak RSS (API process)", _fmt(r["ingest_peak_rss_mb"], " MB"), "")
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
    n = r["n"] if r["mode"] != "user" else ((r.get("user_path") or {}).get("count") or {}).get("count", 0)
    path = out_dir / f"bench-{stamp}-{r['mode']}-n{n}.json"  # user: the demo's count, else the pipeline's N
    path.write_bytes(orjson.dumps(r, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    return path


def print_all(r: dict[str, Any], console: Console) -> None:
    console.print(headline_table(r))
    if r.get("embedded"):
        console.print(table(r))
    if (r.get("embedded") or {}).get("stages"):
        console.print(stage_table(r["embedded"]["stages"]))


def markdown(r: dict[str, Any]) -> str:
    """The README's table, from a results file: `python -m bench.report bench-results/<file>.json`."""
    e, s, f = r.get("embedded") or {}, r.get("substrate") or {}, r.get("fixed_rate") or {}
    lat = lambda d: (f"{d['p50']:,.0f} / {d['p95']:,.0f} / {d['p99']:,.0f} / {d['max']:,.0f}"  # noqa: E731
                     if d and d.get("p50") is not None else "-")
    w = e.get("writes") or {}
    rows = [("payments/s end to end (embedded)", f"{e.get('payments_per_s', '-')}"),
            ("ingest through the service layer, payments/s" + (" (API process of its own)" if e.get("ingest") == "process"
                                                                else " (threads of the bench process)"),
             f"{e.get('ingest_per_s', '-')}"),
            ("accept→settled p50 / p95 / p99 / max ms, max rate", lat(e.get("latency_ms"))),
            (f"accept→settled p50 / p95 / p99 / max ms, fixed {f.get('rate', '-')}/s (50%)", lat(f.get("latency_ms"))),
            ("bare substrate payments/s (same writes, 100 payments per transaction)", f"{s.get('payments_per_s', '-')}"),
            ("bare substrate payments/s (same writes, the pipeline's transactions)",
             f"{s.get('same_txns_payments_per_s', '-')}"),
            ("ratio pipeline ÷ substrate (batched / same transactions)",
             f"{r.get('ratio', '-')} / {r.get('ratio_same_txns', '-')}"),
            ("peak RSS, bench process (stage worker) / API process",
             f"{r.get('peak_rss_mb', '-')} MB / {r.get('ingest_peak_rss_mb') or '-'} MB")]
    for x in r.get("scaling") or []:
        rows.append((f"{x['workers']} stage-worker process(es) draining {x['payments']:,}, payments/s",
                     f"{x['payments_per_s']} (RSS {', '.join(str(m) for m in x['worker_peak_rss_mb'])} MB)"))
    if r.get("scaling_factor") is not None:
        rows.append(("scaling 1 → 2 worker processes", f"×{r['scaling_factor']}"))
    if r.get("http_ingest"):
        rows.append(("HTTP ingest, `chalice local` API, payments/s", f"{r['http_ingest']['payments_per_s']}"
                     f" ({r['http_ingest']['clients']} clients)"))
    if r.get("aws_local"):
        a = r["aws_local"]
        rows.append((f"aws-local (Tansu + moto), N={a['payments']}, payments/s", f"{a['payments_per_s']}"))
        rows.append(("aws-local accept→settled p50 / p95 / p99 / max ms", lat(a.get("latency_ms"))))
    if w:
        rows.append(("per payment: log appends / rows written / write transactions",
                     f"{w['log_appends']} / {round(w['store_rows'] + w['bus_rows'], 1)} / "
                     f"{round(w['store_txns'] + w['bus_txns'], 2)}"))
    m = r["machine"]
    rows.append(("machine", f"{m['cpus']} CPUs, load {m['loadavg_start']} → {m.get('loadavg_end')}, "
                            f"{m['fsync_commits_per_s']:,.0f} fsync'd commits/s"))
    out = ["| figure | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(out)


if __name__ == "__main__":
    import sys
    doc = orjson.loads(Path(sys.argv[1]).read_bytes())
    print(headline_markdown(doc) + "\n\n" + markdown(doc))
