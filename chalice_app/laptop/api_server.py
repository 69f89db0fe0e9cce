"""`chalice local` as `make local` runs the API: a listen backlog fit for bursts, and the edge a
payments API needs.

Run from chalice_app/: `python -m laptop.api_server --host H --port P --stage S`.

- Backlog: chalice's ThreadedHTTPServer keeps socketserver's default of 5, so a burst of
  concurrent clients (the duplicate-storm test: 64) overflows it and the kernel resets
  connections that never reached the app. The simulator server sets 128 for the same reason.
- No request smuggling: chalice local reads a body by Content-Length only, so the bytes of a
  `Transfer-Encoding: chunked` body were parsed as the next request on the same keep-alive
  connection. Any request with Transfer-Encoding is refused (501) and its connection closed.
- One request per thread: Chalice keeps the request being handled on the app object
  (`app.current_request`), which Lambda never shares between requests but chalice local's
  threads do: under concurrent load a route read another request's headers (its
  Authorization: another caller's key). Here it is kept per thread.
- Threads kept, not made per request: socketserver's ThreadingMixIn starts a thread for every
  connection, and its accept loop waits for each new thread to start (a sixth of the API process's
  time in a profile under `payctl demo`, issue 19). Up to POOL threads stay and take the next
  connection; when all are busy (keep-alive clients hold theirs) a connection still gets a thread of
  its own, as before, so no client ever waits for another's idle connection.
- One error format: what the server itself answers (an unknown method, oversized headers, a
  malformed request line, an unknown route) is application/problem+json like the app's own
  answers, never an HTML page or chalice's `{"message": ...}`. API Gateway answers some of these
  itself in AWS (README, "HTTP API").
"""
from __future__ import annotations

import queue
import sys
import threading
import uuid
from http import HTTPStatus
from typing import Any

import orjson

from chalicelib.api.routes import CORRELATION_HEADER, problem_document

BACKLOG = 128
NOT_FOUND = "no such resource; the API's paths are in /openapi.json"


def edge_handler(base: type, route_matcher: type) -> type:
    """chalice local's request handler with the edge described above."""

    class EdgeHandler(base):
        def __init__(self, request: Any, client_address: Any, server: Any, app_object: Any, config: Any) -> None:
            # Set before the base class's __init__, which handles the connection.
            self.routes = app_object.routes
            self.matcher = route_matcher(list(app_object.routes))
            super().__init__(request, client_address, server, app_object=app_object, config=config)

        def _problem(self, status: int, title: str, detail: str, headers: dict[str, str] | None = None,
                     close: bool = False) -> None:
            corr = f"corr_{uuid.uuid4().hex}"
            body = orjson.dumps(problem_document(status, title, detail, corr))
            self.send_response(status)
            for name, value in {"Content-Type": "application/problem+json", "Content-Length": str(len(body)),
                                CORRELATION_HEADER: corr, **(headers or {})}.items():
                self.send_header(name, value)
            if close:
                self.send_header("Connection", "close")  # also sets close_connection
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _generic_handle(self) -> None:
            if "Transfer-Encoding" in self.headers:
                self._problem(501, "Transfer-Encoding not supported",
                              "send the request body with Content-Length; Transfer-Encoding is refused", close=True)
                return
            super()._generic_handle()

        # The base class bound its do_* names to its own _generic_handle: bind them to ours.
        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_PATCH = do_OPTIONS = _generic_handle

        def _methods(self) -> list[str] | None:
            """The methods the app serves on this path, or None for an unknown path."""
            try:
                route = self.matcher.match_route(self.path).route
            except ValueError:
                return None
            return sorted(self.routes[route])

        def _send_error_response(self, error: Any) -> None:
            # chalice local answers an unknown route as API Gateway does (403 "Missing Authentication Token").
            if error.CODE == 403 and self._methods() is None:
                self._problem(404, "Not found", NOT_FOUND)
                return
            super()._send_error_response(error)

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            """The http.server's own refusals (unknown method, headers too large, bad request line)."""
            self.log_error("code %d, message %s", code, message)
            if code == HTTPStatus.NOT_IMPLEMENTED and getattr(self, "command", None) and self.path:
                methods = self._methods()
                if methods is None:
                    self._problem(404, "Not found", NOT_FOUND, close=True)
                else:
                    self._problem(405, "Method not allowed", f"{self.command} is not allowed here; use "
                                  + ", ".join(methods), {"Allow": ", ".join(methods)}, close=True)
                return
            try:
                title = HTTPStatus(code).phrase
            except ValueError:
                title = "Bad request"
            detail = {431: "request headers are too large", 414: "the request line is too long",
                      400: "the request line or a header is malformed"}.get(code, title.lower())
            self._problem(code, title, detail, close=True)

    return EdgeHandler


class PooledThreads:
    """A socketserver mixin: a connection goes to an idle kept thread when there is one, else to a new
    kept thread (up to POOL), else to a thread of its own (socketserver's ThreadingMixIn behaviour)."""

    POOL = 16

    def process_request(self, request: Any, client_address: Any) -> None:
        pool = self.__dict__.setdefault("_pool", {"lock": threading.Lock(), "idle": 0, "size": 0,
                                                   "queue": queue.SimpleQueue()})
        with pool["lock"]:
            if pool["idle"]:
                pool["idle"] -= 1
                pool["queue"].put((request, client_address))
                return
            keep = pool["size"] < self.POOL
            if keep:
                pool["size"] += 1
        if keep:
            threading.Thread(target=self._kept_thread, args=(pool, request, client_address),
                             name=f"api-{pool['size']}", daemon=True).start()
        else:
            super().process_request(request, client_address)  # type: ignore[misc]

    def _kept_thread(self, pool: dict[str, Any], request: Any, client_address: Any) -> None:
        while True:
            self.process_request_thread(request, client_address)  # type: ignore[attr-defined]
            with pool["lock"]:
                pool["idle"] += 1
            request, client_address = pool["queue"].get()


def pooled_server(base: type) -> type:
    """`base` (chalice local's ThreadedHTTPServer) with kept threads in front of its thread per connection."""
    return type("PooledHTTPServer", (PooledThreads, base), {})


def requests_per_thread(chalice_cls: type) -> None:
    """Make `current_request` and `lambda_context` of every app of `chalice_cls` per thread."""
    local = threading.local()

    def slot(name: str) -> property:
        return property(lambda self: getattr(local, name, None), lambda self, value: setattr(local, name, value))
    chalice_cls.current_request = slot("current_request")
    chalice_cls.lambda_context = slot("lambda_context")


def main(argv: list[str] | None = None) -> int:
    from chalice import Chalice, local  # noqa: PLC0415 - a dev-only dependency, never in the Lambda zip's path
    from chalice.cli import main as chalice_main  # noqa: PLC0415

    local.ThreadedHTTPServer.request_queue_size = BACKLOG
    requests_per_thread(Chalice)
    handler = edge_handler(local.ChaliceRequestHandler, local.RouteMatcher)

    server_cls = pooled_server(local.ThreadedHTTPServer)

    def create_local_server(app_obj: Any, config: Any, host: str, port: int) -> Any:
        return local.LocalDevServer(app_obj, config, host, port, handler_cls=handler, server_cls=server_cls)
    local.create_local_server = create_local_server  # what chalice's CLI factory calls
    sys.argv = ["chalice", "local", *(sys.argv[1:] if argv is None else argv)]
    return chalice_main()


if __name__ == "__main__":
    sys.exit(main())
