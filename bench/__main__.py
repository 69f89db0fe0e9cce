"""`make bench` (python -m bench): the whole pipeline measured beside the bare SQLite substrate.

Run from the repository root with PYTHONPATH=chalice_app. Every step works in
a fresh directory under --work-dir (removed afterwards unless --keep).
"""
from __future__ import annotations

import argparse
import gc
import os
import resource
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from chalicelib.config import Settings

from . import aws_cost, report
from .embedded import run_pipeline
from .substrate import substrate_figures
from .userpath import user_path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="make bench", description="The user's path (make local + payctl demo), then "
                                "the pipeline's throughput, latency and per-payment cost.")
    p.add_argument("--demo-n", type=int, default=2000,
                   help="user path: payments for `payctl demo --count` against `make local`'s stack (default 2,000)")
    p.add_argument("--demo-rate", type=float, default=50.0,
                   help="user path: `payctl demo --rate` payments/s for the latency run (default 50)")
    p.add_argument("--demo-duration", type=float, default=30.0,
                   help="user path: seconds of `payctl demo --rate` (default 30)")
    p.add_argument("--n", type=int, default=20_000, help="payments in the pipeline's main run (default 20,000)")
    p.add_argument("--mode", choices=("user", "embedded", "aws-local"), default="embedded",
                   help="user: the user's path only; embedded: then the pipeline; aws-local: also the pipeline over "
                        "Tansu + moto, with DynamoDB and Kafka requests and the AWS bill per payment")
    p.add_argument("--aws-n", type=int, default=30, help="payments for aws-local (moto is slow: default 30)")
    p.add_argument("--scale-n", type=int, default=None, help="payments per scaling run (default min(N, 5000))")
    p.add_argument("--http-n", type=int, default=None, help="payments for the HTTP ingest line (default min(N, 1000))")
    p.add_argument("--clients", type=int, default=8, help="concurrent API clients feeding the service layer")
    p.add_argument("--ingest", choices=("process", "threads"), default="process",
                   help="API clients in an API process of their own, as `make local` runs it (default), or as "
                        "threads of the stage-worker process")
    p.add_argument("--skip", action="append", default=[], choices=("user", "fixed", "scaling", "http"),
                   help="leave out a step (repeatable)")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "bench-results")
    p.add_argument("--work-dir", type=Path, default=None, help="scratch space (default: a temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the scratch databases")
    args = p.parse_args(argv)
    if args.n < 1 or args.demo_n < 1 or args.aws_n < 1:
        p.error("--n, --demo-n and --aws-n must be at least 1")
    if not (args.demo_rate > 0 and args.demo_duration > 0):
        p.error("--demo-rate and --demo-duration must be above 0")
    if args.mode == "user" and "user" in args.skip:
        p.error("--mode user with --skip user leaves nothing to run")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    main_thread = threading.current_thread() is threading.main_thread()
    # A SIGTERM (a CI runner's timeout, `kill`) stops the run like Ctrl-C does: every step's
    # `finally` stops what it started, the local stack of the user's path included.
    previous = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None
    try:
        return _main(args)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _main(args: argparse.Namespace) -> int:
    console = Console()
    work = Path(tempfile.mkdtemp(prefix="bench-", dir=args.work_dir))
    batch = Settings.from_env({**os.environ, "PLATFORM_MODE": "embedded"}).batch_size
    r: dict[str, Any] = {"n": args.n, "mode": args.mode, "git": report.git_commit(), "errors": {},
                         "machine": report.machine(work / "calibrate"), "targets": report.TARGETS,
                         "settings": {"batch_size": batch, "clients": args.clients, "ingest": args.ingest,
                                      "psp": "simulator logic in-process (SimulatorConnector mapping)"}}
    try:
        if "user" not in args.skip:  # first: what a user of `make local` meets
            u = _step(r, "user_path", lambda: user_path(work / "user", args.demo_n, args.demo_rate,
                                                         args.demo_duration, log=lambda m: console.print(m)))
            if u:
                r["user_path"] = u
        if args.mode != "user":
            with Progress(TextColumn("{task.description:<44}"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), console=console, transient=False) as progress:
                _run_all(args, r, work, batch, progress)
        _per_payment(r)
        r["headline"] = [{"figure": f, "now": now, "target": target, "met": met}
                         for f, now, target, met in report.headline_rows(r)]
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        return 130
    finally:
        r["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report.print_all(r, console)
    for step, error in r["errors"].items():
        console.print(f"[red]{step} failed:[/] {error}")
    path = report.write_json(r, args.out)
    console.print(f"results: {path}")
    return 1 if {"embedded", "user_path"} & set(r["errors"]) else 0


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


def _bar(progress: Progress, label: str, total: int) -> Callable[[int], None]:
    task = progress.add_task(label, total=total)
    return lambda done: progress.update(task, completed=done)


def _two_bars(progress: Progress, label: str, total: int) -> Callable[[str, int], None]:
    bars = {"accepted": _bar(progress, f"{label}: accepted", total), "settled": _bar(progress, f"{label}: settled", total)}
    return lambda what, done: bars[what](done)


def _step(r: dict[str, Any], name: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - one broken step must not lose the others' figures
        r["errors"][name] = f"{type(e).__name__}: {e}"
        return None


def _run_all(args: argparse.Namespace, r: dict[str, Any], work: Path, batch: int, progress: Progress) -> None:
    n = args.n
    run = _step(r, "embedded", lambda: run_pipeline(work / "embedded", n, clients=args.clients, ingest=args.ingest,
                                                    progress=_two_bars(progress, "embedded, max rate", n)))
    r["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if run is None:
        return
    r["ingest_peak_rss_mb"] = run.ingest_peak_rss_mb
    r["embedded"] = {**run.summary(), "writes": {k: round(v, 3) for k, v in run.writes.items()}}
    os.sync()  # the substrate, too, starts with the pipeline run's writes on disk
    sub = _step(r, "substrate", lambda: substrate_figures(work / "substrate", n, run, batch))
    if sub:
        r["substrate"] = sub
        r["ratio"] = round(run.rate / sub["payments_per_s"], 3)
        r["ratio_same_txns"] = round(run.rate / sub["same_txns_payments_per_s"], 3)
    if "fixed" not in args.skip:
        # The latency run must not pay for the runs before it: their dirty pages (the disk
        # writes them back while it runs, slowing every fsync) and their live objects (each
        # full garbage collection would walk them all) are settled first.
        os.sync()
        gc.collect()
        gc.freeze()
        rate = round(run.rate * 0.5, 1)
        n_fixed = max(50, min(n, int(rate * 30)))  # about 30 s at that rate
        fixed = _step(r, "fixed_rate", lambda: run_pipeline(
            work / "fixed", n_fixed, rate=rate, clients=args.clients, ingest=args.ingest,
            progress=_two_bars(progress, f"fixed rate {rate}/s", n_fixed)))
        if fixed:
            r["fixed_rate"] = {"rate": rate, **fixed.summary()}
            r["fixed_rate"].pop("stages", None)
    if "scaling" not in args.skip:
        from .procs import drain_with_workers
        n_scale = args.scale_n or min(n, 5000)
        r["scaling"] = []
        for workers in (1, 2):
            res = _step(r, f"scaling_{workers}", lambda: drain_with_workers(
                work / f"scale{workers}", n_scale, workers, _bar(progress, f"{workers} worker process(es)", n_scale)))
            if res:
                r["scaling"].append(res)
        if len(r["scaling"]) == 2:
            r["scaling_factor"] = round(r["scaling"][1]["payments_per_s"] / r["scaling"][0]["payments_per_s"], 2)
    if "http" not in args.skip:
        from .procs import http_ingest
        n_http = args.http_n or min(n, 1000)
        h = _step(r, "http_ingest", lambda: http_ingest(work / "http", n_http, args.clients,
                                                        _bar(progress, "HTTP ingest (chalice local)", n_http)))
        if h:
            r["http_ingest"] = h
    if args.mode == "aws-local":
        from .awslocal import RequestProbe, cost_inputs, run_aws_local
        probe = RequestProbe()
        a = _step(r, "aws_local", lambda: run_aws_local(work / "aws-local", args.aws_n,
                                                         _two_bars(progress, "aws-local", args.aws_n), probe))
        if a:
            r["aws_local"] = a.summary()
            counts = probe.per_payment(a.n)
            r["aws_local"]["per_payment"] = counts
            r["aws_local"]["cost_inputs"] = cost_inputs(counts, r["aws_local"]["stages"], a.n, a.api_ms_per_payment)
    _checks(r)


def _per_payment(r: dict[str, Any]) -> None:
    """One place for what each payment costs, gathered from the runs that measured it."""
    pp: dict[str, Any] = {}
    w = (r.get("embedded") or {}).get("writes") or {}
    if w:
        pp["store_rows"] = round(w["store_rows"], 2)
        pp["log_appends"] = round(w["log_appends"], 2)
        pp["write_txns"] = round(w["store_txns"] + w["bus_txns"], 2)
    one = next((x for x in r.get("scaling") or [] if x["workers"] == 1), None)
    if one and one.get("worker_cpu_ms_per_payment") is not None:
        pp["worker_cpu_ms"] = one["worker_cpu_ms_per_payment"]
    cpu = ((r.get("user_path") or {}).get("count") or {}).get("cpu_ms_per_payment")
    if cpu:
        pp["user_path_cpu_ms"] = cpu
    a = r.get("aws_local") or {}
    if a.get("per_payment"):
        pp["dynamodb_requests"] = a["per_payment"]["dynamodb_requests"]
        pp["kafka_requests"] = a["per_payment"]["kafka_requests"]
        pp["aws_usd_per_million"] = _step(r, "aws_cost", lambda: aws_cost.bill(a["cost_inputs"]))
    r["per_payment"] = pp


def _checks(r: dict[str, Any]) -> None:
    t = report.TARGETS
    lat = (r.get("fixed_rate") or {}).get("latency_ms") or {}
    r["checks"] = {
        "p99": None if lat.get("p99") is None else lat["p99"] <= t["p99_ms_at_half_load"],
        "rss": None if r.get("peak_rss_mb") is None else
        max(r["peak_rss_mb"], r.get("ingest_peak_rss_mb") or 0) <= t["peak_rss_mb"],
        "scaling": None if r.get("scaling_factor") is None else r["scaling_factor"] > t["scaling"],
    }


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    sys.exit(code)
