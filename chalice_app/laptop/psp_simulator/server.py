"""The PSP simulator's HTTP face: several fake PSPs behind one server, keyed by path.

Run:  python -m laptop.psp_simulator --port 8100 --db sim.db
Every route under /psp/{name}/ is a separate PSP (psp.py: charges, keys, TEST_CARDS).

Network faults for the fault tests (--fault-lose-request P, --fault-lose-response P,
--fault-seed S): a lost request closes the connection before anything is
processed; a lost response processes and records the call, then closes the
connection without answering. GET /psp/{name}/stats counts them by kind.
"""
from __future__ import annotations

import argparse
import logging
import re
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson

from .psp import FAULTABLE_OPS, LOSE_REQUEST, LOSE_RESPONSE, MAX_BODY, ApiError, Faults, Simulator

log = logging.getLogger("chalicelib.simulator")


ROUTES = [  # (method, pattern, handler name, needs JSON body)
    ("GET", r"/health", "health", False),
    ("POST", r"/psp/([^/]+)/authorizations", "authorize", True),
    ("GET", r"/psp/([^/]+)/authorizations/([^/]+)", "status", False),
    ("POST", r"/psp/([^/]+)/charges/([^/]+)/(capture|void|refunds)", "operate", True),
    ("GET", r"/psp/([^/]+)/stats", "stats", False),
    ("POST", r"/webhooks/([^/]+)", "webhook", False),
    ("GET", r"/webhooks/([^/]+)", "deliveries", False),
]


class Handler(BaseHTTPRequestHandler):
    """Routes requests to the Simulator and always answers JSON."""

    server: SimulatorServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch(self.command)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET  # unrouted verbs get a JSON 405/404

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol-level failures (bad request line, oversized headers) answer JSON too."""
        self.close_connection = True
        self._send(code, {"code": f"http_{code}", "message": message or "bad request"})

    def _dispatch(self, method: str) -> None:
        fault = None
        try:
            raw = self._read_body()  # always drain the body so keep-alive stays in sync
            fault = self._fault(method, raw)
            if fault == LOSE_REQUEST:  # dropped on the way in: nothing processed, nothing recorded
                self.close_connection = True
                return
            status, body = self._route(method, raw)
        except ApiError as exc:
            status, body = exc.status, exc.body
        except Exception as exc:  # never leak a trace (or request data) to the client
            log.error("internal error %s on %s %s", type(exc).__name__, method, self.path)
            status, body = 500, {"code": "internal_error", "message": "internal error"}
        if fault == LOSE_RESPONSE:  # processed and recorded, but the answer never arrives
            self.close_connection = True
            return
        self._send(status, body)

    def _fault(self, method: str, raw: bytes) -> str | None:
        """An injected fault for this call, if it is a faultable PSP operation."""
        if method != "POST":
            return None
        path = urlsplit(self.path).path.rstrip("/")
        match = re.fullmatch(r"/psp/([^/]+)/(authorizations|charges/[^/]+/capture)", path)
        if not match:
            return None
        try:
            body = orjson.loads(raw or b"{}")
        except orjson.JSONDecodeError:
            body = {}
        key = (body.get("idempotency_key") if isinstance(body, dict) else None) or self.headers.get("Idempotency-Key")
        op = "authorize" if match.group(2) == "authorizations" else "capture"
        return self.server.simulator.draw_fault(unquote(match.group(1)), op, key)

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True  # an unread body would poison the next request
            raise ApiError(413 if length > 0 else 400, "bad_length", "missing or too large body")
        return self.rfile.read(length) if length else b""

    def _route(self, method: str, raw: bytes) -> tuple[int, dict]:
        path = urlsplit(self.path).path.rstrip("/") or "/"
        allowed = False
        for verb, pattern, name, wants_json in ROUTES:
            match = re.fullmatch(pattern, path)
            if not match or verb != method:
                allowed = allowed or bool(match)
                continue
            args = [unquote(a) for a in match.groups()]
            sim = self.server.simulator
            if name == "health":
                return 200, {"status": "ok"}
            if name == "webhook":
                return sim.webhook(args[0], raw, self.headers)
            if not wants_json:
                return getattr(sim, name)(*args)
            try:
                body = orjson.loads(raw or b"{}")
            except orjson.JSONDecodeError:
                raise ApiError(400, "bad_json", "request body is not valid JSON") from None
            if not isinstance(body, dict):
                raise ApiError(400, "bad_json", "request body must be a JSON object")
            if name == "operate":
                kind = "refund" if args[2] == "refunds" else args[2]
                return sim.operate(args[0], args[1], kind, body, self.headers)
            return sim.authorize(args[0], body, self.headers)
        if allowed:
            raise ApiError(405, "method_not_allowed", f"{method} not allowed here")
        raise ApiError(404, "not_found", "no such route")

    def _send(self, status: int, body: dict) -> None:
        data = orjson.dumps(body)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (timeout tests): nothing to do

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.info("%s %s", self.address_string(), format % args)  # paths carry no card data


class SimulatorServer(ThreadingHTTPServer):
    """One thread per connection; daemon threads so a hung client never blocks exit."""

    daemon_threads = True
    request_queue_size = 128  # bursts of concurrent clients must not hit the listen backlog

    def __init__(self, address: tuple[str, int], db_path: str, timeout_delay: float,
                 faults: Faults | None = None) -> None:
        self.simulator = Simulator(db_path, timeout_delay, faults)
        super().__init__(address, Handler)

    def server_close(self) -> None:
        """Stop listening and close the database."""
        super().server_close()
        self.simulator.close()


def serve(host: str, port: int, db_path: str, timeout_delay: float = 3.0, *, lose_request: float = 0.0,
          lose_response: float = 0.0, fault_seed: int | None = None, fault_ops: tuple[str, ...] = ("authorize",),
          poll_interval: float = 0.5) -> tuple[SimulatorServer, threading.Thread]:
    """Start the simulator on a background thread; port 0 picks a free port.

    Stop with `server.shutdown(); server.server_close()`."""
    faults = Faults(lose_request, lose_response, fault_seed, tuple(fault_ops))
    server = SimulatorServer((host, port), db_path, timeout_delay, faults)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": poll_interval},
                              name="psp-simulator", daemon=True)
    thread.start()
    return server, thread


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point; runs until SIGTERM or Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--db", required=True, help="SQLite file for simulator state")
    parser.add_argument("--timeout-delay", type=float, default=3.0)
    parser.add_argument("--fault-lose-request", type=float, default=0.0, metavar="P",
                        help="probability that a faultable call is dropped unprocessed")
    parser.add_argument("--fault-lose-response", type=float, default=0.0, metavar="P",
                        help="probability that a faultable call is processed but not answered")
    parser.add_argument("--fault-seed", type=int, default=None, metavar="S", help="seed for the fault draws")
    parser.add_argument("--fault-ops", default="authorize", metavar="OPS",
                        help=f"comma-separated operations faults apply to (of {', '.join(FAULTABLE_OPS)})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    try:
        faults = Faults(args.fault_lose_request, args.fault_lose_response, args.fault_seed,
                        tuple(o.strip() for o in args.fault_ops.split(",") if o.strip()))
    except ValueError as e:
        parser.error(str(e))
    server = SimulatorServer((args.host, args.port), args.db, args.timeout_delay, faults)

    def stop(*_: Any) -> None:
        # shutdown() blocks until serve_forever returns, so it must run on another thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = server.server_address[:2]
    print(f"simulator listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
