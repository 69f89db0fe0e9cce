"""`chalice local` with a listen backlog fit for bursts: what `make local` runs as the API.

Run from chalice_app/: `python -m laptop.api_server --host H --port P --stage S`.
chalice's ThreadedHTTPServer keeps socketserver's default backlog of 5, so a
burst of concurrent clients (the duplicate-storm test: 64) overflows it and
the kernel resets connections that never reached the app. The simulator
server sets 128 for the same reason.
"""
from __future__ import annotations

import sys

BACKLOG = 128


def main(argv: list[str] | None = None) -> int:
    from chalice import local  # noqa: PLC0415 - a dev-only dependency, never in the Lambda zip's path
    from chalice.cli import main as chalice_main  # noqa: PLC0415

    local.ThreadedHTTPServer.request_queue_size = BACKLOG
    sys.argv = ["chalice", "local", *(sys.argv[1:] if argv is None else argv)]
    return chalice_main()


if __name__ == "__main__":
    sys.exit(main())
