"""The stage worker process: the local event source mapping for every stage Lambda.

Run from chalice_app/: `python -m chalicelib.runtime.worker`. It imports
app.py and invokes the very functions Lambda would, with MSK-shaped batches.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from ..stages import STAGES
from . import bootstrap
from .runner import Runner


def app_handlers() -> dict[str, tuple[Any, Any]]:
    """Stage name -> (stage module, invoke(event)) calling app.py's Lambda function."""
    app_dir = str(Path(__file__).resolve().parents[2])
    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    import app as app_module  # noqa: PLC0415 - app.py sits beside chalicelib/, as in the Lambda zip

    def invoker(fn: Any) -> Any:
        return lambda event: fn(event, None)
    return {name: (STAGES[name], invoker(app_module.STAGE_HANDLERS[name])) for name in STAGES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run every stage handler against the embedded bus.")
    parser.add_argument("--member", type=int, default=0, help="this worker's index (partition split)")
    parser.add_argument("--members", type=int, default=1, help="number of worker processes")
    args = parser.parse_args(argv)
    platform = bootstrap.get_platform()
    platform.bus.ensure_topics(sorted({t for m in STAGES.values() for t in m.CONSUMES}))
    runner = Runner(platform, app_handlers(), args.member, args.members, relay=args.member == 0)
    logging.getLogger("payments.runner").info("stage worker %d/%d running", args.member, args.members)
    print(f"stage worker {args.member + 1}/{args.members} running: {', '.join(STAGES)}", flush=True)
    runner.run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
