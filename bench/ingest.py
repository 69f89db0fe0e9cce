"""The API side of a bench run, in a process of its own, as `make local` runs the API apart from
the stage worker (and AWS runs the API Lambda apart from the stage Lambdas).

`python -m bench.ingest --data-dir D --mode M --tenant T --n N [--rate R] [--clients C]`
(PYTHONPATH=chalice_app plus the repository root). Prints `ready`, waits for `go <t0>` on stdin
(t0: the parent's time.perf_counter(), which is CLOCK_MONOTONIC and so shared by both
processes), then `clients` threads call PaymentService.create_payment -- the code behind
POST /v1/payments -- for payments 0..N-1, paced at `rate`/s from t0 when given. Each accepted
payment is printed as `a <payment id> <perf_counter at acceptance>`; at the end one line
`done <json>` carries when ingestion ended, the process's peak RSS and the SQLite writes it
made (for the substrate's counts). A refusal prints `error <why>` and exits 1.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
import time
from pathlib import Path

from .embedded import ThreadFeed, WriteCounter, build_platform


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--mode", default="embedded")
    p.add_argument("--tenant", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--rate", type=float, default=None)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--extra-env", default="{}", help="JSON: settings the parent's platform was built with")
    args = p.parse_args(argv)
    platform = build_platform(args.data_dir, args.mode, json.loads(args.extra_env))
    counter = WriteCounter()
    if args.mode == "embedded":
        counter.install("store", platform.store.unit_of_work.db)
    out_lock = threading.Lock()

    def accepted(pid: str, at: float) -> None:
        with out_lock:
            sys.stdout.write(f"a {pid} {at:.6f}\n")
            sys.stdout.flush()
    feed = ThreadFeed(platform, args.tenant, args.n, args.rate, args.clients, on_accept=accepted)
    print("ready", flush=True)
    go = sys.stdin.readline().split()
    if not go or go[0] != "go":
        return 2
    feed.start(float(go[1]))
    feed.wait()
    if feed.error is not None:
        print(f"error {type(feed.error).__name__}: {feed.error}", flush=True)
        return 1
    done = {"ingest_end": time.perf_counter(),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "writes": {k: v.get("store", 0) for k, v in (("txns", counter.txns), ("rows", counter.rows),
                                                         ("payload", counter.payload),
                                                         ("sampled_rows", counter.sampled_rows))}}
    print(f"done {json.dumps(done)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
