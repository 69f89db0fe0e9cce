"""laptop/api_server.py's kept threads: connections reuse a few threads instead of one new thread each,
and a client holding a keep-alive connection never makes another wait (a connection beyond the kept
threads gets a thread of its own, as chalice local always did)."""
from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn

import pytest

from laptop.api_server import pooled_server


class Threaded(ThreadingMixIn, HTTPServer):  # what chalice local's ThreadedHTTPServer is
    daemon_threads = True


class WhoAnswers(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as chalice local's handler

    def do_GET(self) -> None:
        body = threading.current_thread().name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    cls = pooled_server(Threaded)
    cls.POOL = 2
    srv = cls(("127.0.0.1", 0), WhoAnswers)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def get(port: int, conn: http.client.HTTPConnection | None = None) -> str:
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/", headers={} if conn else {"Connection": "close"})
    answer = c.getresponse().read().decode()
    if conn is None:
        c.close()
    return answer


def test_connections_one_after_another_reuse_the_kept_threads(server):
    names = [get(server.server_address[1]) for _ in range(20)]
    # Twenty connections, not twenty threads: a kept thread marks itself idle just after it answers,
    # so a connection that arrives in between may get a thread of its own now and then.
    assert names[0] == "api-1" and names.count("api-1") + names.count("api-2") >= 10


def test_held_keep_alive_connections_do_not_block_new_clients(server):
    port = server.server_address[1]
    held = [http.client.HTTPConnection("127.0.0.1", port, timeout=5) for _ in range(2)]
    first = {get(port, c) for c in held}  # both kept threads now wait on idle keep-alive connections
    assert first == {"api-1", "api-2"}
    other = get(port)  # a third client is served at once, on a thread of its own
    assert other not in first
    assert get(port, held[0]) == get(port, held[0])  # and the held connections still work
    for c in held:
        c.close()
