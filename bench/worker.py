"""A stage-worker process for the scaling run: laptop/worker.py's runner, with the in-process PSP.

`python -m bench.worker --data-dir D --member i --members m` (PYTHONPATH=chalice_app).
Like `make local`'s worker, member 0 also runs the outbox relay. Each payment's
events share one key, so every stage of a payment runs in the same member and
that member's in-memory PSP sees the authorization before the capture.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from chalicelib import bootstrap
from laptop.runner import Runner
from laptop.worker import app_handlers

from .embedded import build_platform


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--member", type=int, default=0)
    parser.add_argument("--members", type=int, default=1)
    args = parser.parse_args(argv)
    platform = build_platform(args.data_dir, "embedded")
    bootstrap.set_platform(platform)
    runner = Runner(platform, app_handlers(), args.member, args.members, relay=args.member == 0)
    print(f"ready {time.process_time()!r}", flush=True)  # CPU so far: start-up, not draining
    runner.run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
