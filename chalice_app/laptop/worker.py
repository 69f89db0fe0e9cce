"""The stage worker process: the local event source mapping for every stage Lambda.

Run from chalice_app/: `python -m laptop.worker`. It imports
app.py and invokes the very functions Lambda would, with MSK-shaped batches.
"""
from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from typing import Any

from chalicelib import bootstrap
from chalicelib.stages import STAGES

from .runner import Runner
from .streams import StreamRelay, StreamReporter


def app_handlers() -> dict[str, tuple[Any, Any]]:
    """Stage name -> (stage module, invoke(event)) calling app.py's Lambda function."""
    import app as app_module  # noqa: PLC0415 - app.py sits beside laptop/ and chalicelib/, as in the Lambda zip

    def invoker(fn: Any) -> Any:
        return lambda event: fn(event, None)
    return {name: (STAGES[name], invoker(app_module.STAGE_HANDLERS[name])) for name in STAGES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run every stage handler against the bus.")
    parser.add_argument("--member", type=int, default=0, help="this worker's index (partition split)")
    parser.add_argument("--members", type=int, default=1, help="number of worker processes")
    args = parser.parse_args(argv)
    platform = bootstrap.get_platform()
    platform.bus.ensure_topics(sorted({t for m in STAGES.values() for t in m.CONSUMES}))
    runner = Runner(platform, app_handlers(), args.member, args.members, relay=args.member == 0)
    logging.getLogger("payments.runner").info("stage worker %d/%d running", args.member, args.members)
    print(f"stage worker {args.member + 1}/{args.members} running: {', '.join(STAGES)}", flush=True)
    start_stream_relay(platform, runner, enabled=args.member == 0)
    runner.run_forever()
    return 0


def start_stream_relay(platform: Any, runner: Runner, enabled: bool = True) -> threading.Thread | None:
    """aws-local: read the table's stream like the outbox_relay Lambda's mapping would.

    The runner's polling relay still runs, but the DynamoDB outbox only hands it outbox
    records older than its grace period: it sweeps what the stream path missed."""
    if platform.settings.mode != "aws-local" or not enabled:
        return None
    from chalicelib.adapters.aws.setup import AwsSettings, clients  # noqa: PLC0415 - aws-local only

    from .provision import stream_arn  # noqa: PLC0415
    aws = AwsSettings.from_env(platform.settings.mode)
    c = clients(aws)
    arn = stream_arn(aws, c["dynamodb"])
    relay = StreamRelay(c["dynamodbstreams"], arn, platform)
    # The reporting consumer reads the same stream, as its own Lambda (app.reports) does in AWS.
    reporter = StreamReporter(c["dynamodbstreams"], arn, platform)
    log = logging.getLogger("payments.relay")

    def loop(reader: StreamRelay) -> None:
        while not runner.stopping:
            try:
                moved = reader.step()
            except Exception:  # noqa: BLE001 - retried from the durable checkpoint
                log.exception("%s error; retrying", reader.CHECKPOINT)
                time.sleep(1.0)
                continue
            if not moved:
                time.sleep(0.05)  # Lambda polls a stream about 4 times a second; a little faster here
    thread = threading.Thread(target=loop, args=(relay,), name="stream-relay", daemon=True)
    thread.start()
    threading.Thread(target=loop, args=(reporter,), name="stream-reports", daemon=True).start()
    return thread


if __name__ == "__main__":
    sys.exit(main())
