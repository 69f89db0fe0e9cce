"""The dashboard's own small HTTP server (stdlib), run by `make local` on 127.0.0.1:$DASHBOARD_PORT.

Run from chalice_app/: `python -m laptop.dashboard.server`. Operators' view across
tenants: it reads the store and the bus directly and never writes. It listens on
loopback only and has no login, like the rest of the local stack's admin side (payctl).

    GET /                          the page (static/index.html, dashboard.js, dashboard.css; no CDN)
    GET /api/metrics               metrics.snapshot(): throughput, per-stage latency and lag, DLQ, PSPs, reports
    GET /api/payments/<t>/<pid>    one payment's timeline (observability.trace) for the drill-down
    GET /health                    liveness
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import orjson

from chalicelib import bootstrap
from chalicelib.config import Settings

from . import metrics

STATIC = Path(__file__).resolve().parent / "static"
FILES = {"/": ("index.html", "text/html; charset=utf-8"),
         "/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
         "/dashboard.css": ("dashboard.css", "text/css; charset=utf-8")}
CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'"
log = logging.getLogger("payments.dashboard")


class Dashboard:
    """The platform and a short-lived snapshot cache (several open tabs poll at once)."""

    CACHE_S = 0.5

    def __init__(self, platform: Any):
        self.platform = platform
        self._lock = threading.Lock()
        self._cached: tuple[float, bytes] | None = None

    def metrics_json(self) -> bytes:
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > self.CACHE_S:
                self._cached = (time.monotonic(), orjson.dumps(metrics.snapshot(self.platform)))
            return self._cached[1]


def handler_for(dash: Dashboard) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "payments-dashboard"

        def log_message(self, fmt: str, *args: Any) -> None:  # polling every 2 s would flood the log
            log.debug(fmt, *args)

        def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Security-Policy", CSP)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str) -> None:
            self._send(status, orjson.dumps({"error": message, "status": status}))

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = urlparse(self.path).path
            try:
                if path in FILES:
                    name, ctype = FILES[path]
                    self._send(200, (STATIC / name).read_bytes(), ctype)
                elif path == "/health":
                    self._send(200, b'{"status":"ok"}')
                elif path == "/api/metrics":
                    self._send(200, dash.metrics_json())
                elif path.startswith("/api/payments/") and path.count("/") == 4:
                    tenant_id, payment_id = (unquote(x) for x in path.split("/")[3:5])
                    found = metrics.payment_trace(dash.platform, tenant_id, payment_id)
                    if found is None:
                        self._error(404, f"no payment {payment_id} for tenant {tenant_id}")
                    else:
                        self._send(200, orjson.dumps(found))
                else:
                    self._error(404, f"nothing at {path}")
            except Exception:  # noqa: BLE001 - an operator gets a message, the log gets the trace
                log.exception("dashboard request failed: %s", path)
                self._error(500, "the dashboard could not read the platform; see the dashboard log")

    return Handler


def serve(platform: Any, host: str, port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), handler_for(Dashboard(platform)))
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(description="The operators' dashboard of the local stack.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=settings.dashboard_port)
    args = parser.parse_args(argv)
    logging.basicConfig(level=settings.log_level)
    server = serve(bootstrap.build(settings), args.host, args.port)

    def stop(*_: Any) -> None:  # shutdown() waits for serve_forever, so not from its own thread
        threading.Thread(target=server.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"dashboard on http://{args.host}:{args.port}/", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
