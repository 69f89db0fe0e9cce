"""What the PSP fakes share: a threaded loopback HTTP server, the PSPs' idempotency-key replay,
a record of every request as received, injected network faults and an event log.

A fake subclasses FakePsp and implements `route()` (its API) and `idempotency_error()` (its own
error shape for a key reused with other parameters). The event log is what a PSP would announce
by webhook; signed delivery of it to the platform is a later slice, and only needs a sender that
reads `events` and signs each the way the PSP does.

Card numbers reach the fakes (that is the point of a PSP); they keep only the last four in
their state, never log a body, and hold raw requests in memory only, for the tests to assert on.
"""
from __future__ import annotations

import hashlib
import logging
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

log = logging.getLogger(__name__)

# Faults a test can inject into the next requests. Those marked (after) let the fake process the
# request first, so the PSP's state changed but the caller never learns how: the unknown outcome.
RESET = "reset"          # (after) connection reset, no answer
HANG = "hang"            # (after) no answer until the client's read timeout has passed
GARBAGE = "garbage"      # (after) 200 with a body that is not the PSP's JSON
SERVER_ERROR = "500"     # 500 in the PSP's error shape, nothing processed
UNAVAILABLE = "503"      # 503, nothing processed
FAULTS = (RESET, HANG, GARBAGE, SERVER_ERROR, UNAVAILABLE)


@dataclass(frozen=True)
class Received:
    """One request as the fake received it: method, path (with query), headers, raw body."""
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Answer:
    status: int
    body: Any  # JSON-able, or bytes sent as is
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Saved:
    fingerprint: str
    answer: Answer | None  # None while the first request with the key is still being processed


def luhn_valid(number: str) -> bool:
    """12-19 digits with a valid Luhn check digit."""
    if not (number.isdigit() and 12 <= len(number) <= 19):
        return False
    digits = [int(c) * (2 if i % 2 else 1) for i, c in enumerate(reversed(number))]
    return sum(d - 9 if d > 9 else d for d in digits) % 10 == 0


def expired(month: Any, year: Any, today: date) -> bool:
    """As an issuer sees it: a card is good through the last day of its expiry month."""
    try:
        return (int(year), int(month)) < (today.year, today.month)
    except (TypeError, ValueError):
        return False


class FakePsp:
    """PSP state and behaviour behind `serve()`; thread-safe (one lock, short critical sections)."""

    name = "fake"
    json_content_type = "application/json"

    def __init__(self, api_key: str, today: Callable[[], date] | None = None) -> None:
        self.api_key = api_key
        self.today = today or (lambda: datetime.now(timezone.utc).date())
        self.lock = threading.RLock()
        self.requests: list[Received] = []
        self.events: list[dict[str, Any]] = []  # what the PSP would send by webhook, in order
        self.honor_idempotency = True  # False makes a broken PSP: the negative control of the replay tests
        self.hang_s = 2.0
        self._saved: dict[tuple[str, str], _Saved] = {}
        self._faults: list[tuple[str, str]] = []  # (kind, path prefix)
        self._seq = 0

    # -- for tests ------------------------------------------------------------------
    def inject(self, kind: str, times: int = 1, path_prefix: str = "") -> None:
        """The next `times` requests whose path starts with `path_prefix` meet fault `kind`."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}")
        with self.lock:
            self._faults.extend([(kind, path_prefix)] * times)

    def received(self, path_prefix: str = "") -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path.startswith(path_prefix)]

    # -- for subclasses -----------------------------------------------------------------
    def next_id(self, prefix: str, width: int = 24) -> str:
        with self.lock:
            self._seq += 1
            digest = hashlib.sha256(f"{self.name}{self._seq}{time.time_ns()}".encode()).hexdigest()
        return prefix + digest[:width]

    def emit(self, kind: str, obj: dict[str, Any]) -> None:
        """Record what the PSP would announce by webhook (deep enough a copy for later reading)."""
        with self.lock:
            self.events.append({"type": kind, "object": dict(obj), "at": time.time()})

    def authenticated(self, req: Received) -> bool:
        raise NotImplementedError

    def unauthenticated(self) -> Answer:
        raise NotImplementedError

    def server_error(self, status: int) -> Answer:
        raise NotImplementedError

    def route(self, req: Received) -> Answer:
        """The PSP's API: an answer for a request (state changes under self.lock)."""
        raise NotImplementedError

    def idempotency_error(self, key: str) -> Answer:
        """The PSP's answer to a key reused with other parameters."""
        raise NotImplementedError

    def in_progress_error(self, key: str) -> Answer:
        """The PSP's answer to a key whose first request is still being processed."""
        raise NotImplementedError

    def saves(self, answer: Answer) -> bool:
        """Whether the PSP keeps this answer for replay (a validation error is usually not kept)."""
        return True

    def fingerprint(self, req: Received) -> str:
        return hashlib.sha256(req.method.encode() + b" " + req.path.encode() + b"\n" + req.body).hexdigest()

    # -- the request path -------------------------------------------------------------------
    def take_fault(self, path: str) -> str | None:
        with self.lock:
            for i, (kind, prefix) in enumerate(self._faults):
                if path.startswith(prefix):
                    del self._faults[i]
                    return kind
        return None

    def dispatch(self, req: Received) -> Answer:
        """Authenticate, then replay or process by idempotency key, as the PSP does."""
        with self.lock:
            self.requests.append(req)
        if not self.authenticated(req):
            return self.unauthenticated()  # before the idempotency layer: nothing saved
        key = req.header("Idempotency-Key")
        if req.method != "POST" or not key or not self.honor_idempotency:
            return self.route(req)
        scope = (self.api_key, key)
        fp = self.fingerprint(req)
        with self.lock:
            saved = self._saved.get(scope)
            if saved is not None:
                if saved.fingerprint != fp:
                    return self.idempotency_error(key)
                if saved.answer is None:
                    return self.in_progress_error(key)
                return self.replayed(saved.answer)
            self._saved[scope] = _Saved(fp, None)
        try:
            answer = self.route(req)
        except BaseException:
            with self.lock:
                self._saved.pop(scope, None)
            raise
        with self.lock:
            if self.saves(answer):
                self._saved[scope].answer = answer
            else:
                self._saved.pop(scope, None)
        return answer

    def replayed(self, answer: Answer) -> Answer:
        return answer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeServer

    def _serve(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        req = Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        fault = fake.take_fault(self.path)
        if fault in (SERVER_ERROR, UNAVAILABLE):
            with fake.lock:
                fake.requests.append(req)
            return self._answer(fake.server_error(int(fault)))
        answer = fake.dispatch(req)
        if fault == RESET:  # processed, then the connection dies: RST instead of an answer
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        if fault == HANG:
            time.sleep(fake.hang_s)
            self.close_connection = True
            return
        if fault == GARBAGE:
            answer = Answer(200, b"<html><body>upstream proxy error</body></html>", {"Content-Type": "text/html"})
        self._answer(answer)

    do_GET = do_POST = do_DELETE = do_PATCH = _serve
    disable_nagle_algorithm = True  # answers in one segment: no delayed-ACK stall per request

    def _answer(self, answer: Answer) -> None:
        data = answer.body if isinstance(answer.body, bytes) else _json(answer.body)
        try:
            self.send_response(answer.status)
            headers = {"Content-Type": self.server.fake.json_content_type, **answer.headers}
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.server.fake.name, format % args)  # request lines only: paths carry no card data


def _json(body: Any) -> bytes:
    import json
    return json.dumps(body, separators=(",", ":")).encode()


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakePsp, port: int = 0) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", port), _Handler)  # loopback only

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def serve(fake: FakePsp, port: int = 0) -> tuple[FakeServer, threading.Thread]:
    """Start `fake` on a free loopback port (or `port`); stop with server.shutdown(); server.server_close()."""
    server = FakeServer(fake, port)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name=f"{fake.name}-fake", daemon=True)
    thread.start()
    return server, thread
