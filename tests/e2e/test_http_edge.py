"""The local API server's edge on raw sockets (laptop/api_server.py, as `make local` runs it): no request
smuggling, and every answer the server gives itself is application/problem+json."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from chalicelib.adapters.sqlite.leases import SqliteLeases
from laptop.aws_local import free_port

from ..stack import APP_DIR

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    port = free_port()
    data = tmp_path_factory.mktemp("edge")
    # No stage worker here: hold the region's lease as its lease keeper would, so /health answers 200.
    SqliteLeases(data / "control.db").acquire("local-1", "local-1", time.time(), 3600.0, 0.0)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(APP_DIR), "DATA_DIR": str(data), "PORT": str(port),
           "TRACE_EXPORTER": "none", "METRICS_SINK": "none"}
    with open(data / "api.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "laptop.api_server", "--host", "127.0.0.1", "--port",
                                 str(port), "--stage", "dev", "--no-autoreload"], cwd=APP_DIR, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("API server did not start:\n" + (data / "api.log").read_text()[-3000:])
            time.sleep(0.2)
    yield port
    proc.terminate()
    proc.wait(timeout=10)


def exchange(port: int, raw: bytes) -> tuple[list[tuple[int, dict[str, str], bytes]], bool]:
    """Send `raw` on one connection; every response the server sent, and whether it closed the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(raw)
        s.settimeout(2)
        data, closed = b"", False
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    closed = True
                    break
                data += chunk
        except socket.timeout:
            pass
    responses = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        n = int(headers.get("content-length", "0"))
        responses.append((int(lines[0].split()[1]), headers, rest[:n]))
        data = rest[n:]
    return responses, closed


def problem(response: tuple[int, dict[str, str], bytes], status: int) -> dict:
    code, headers, body = response
    assert code == status and headers["content-type"] == "application/problem+json", (code, headers, body)
    doc = json.loads(body)
    assert doc["status"] == status and doc["title"] and doc["detail"] and doc["correlation_id"], doc
    return doc


def test_a_chunked_body_cannot_smuggle_a_second_request(api):
    smuggled = b"GET /v1/balances HTTP/1.1\r\nHost: x\r\n\r\n"
    raw = (b"POST /v1/payments HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(smuggled) + smuggled + b"\r\n0\r\n\r\n")
    responses, closed = exchange(api, raw)
    assert len(responses) == 1 and closed  # before the fix: two answers (400, then the smuggled GET's)
    assert "Content-Length" in problem(responses[0], 501)["detail"]


def test_keep_alive_still_serves_pipelined_requests(api):
    responses, _ = exchange(api, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
    assert [r[0] for r in responses] == [200, 200]


def test_an_unknown_method_on_a_known_path_is_405_with_allow(api):
    (response,), closed = exchange(api, b"TRACE /v1/payments HTTP/1.1\r\nHost: x\r\n\r\n")
    problem(response, 405)
    assert response[1]["allow"] == "GET, POST" and closed


def test_a_method_the_app_does_not_serve_is_405_with_allow(api):
    (response,), _ = exchange(api, b"DELETE /v1/payments HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    problem(response, 405)
    assert set(response[1]["allow"].split(", ")) == {"GET", "POST"}


@pytest.mark.parametrize("method", ["GET", "TRACE"])
def test_an_unknown_path_is_404(api, method):
    (response,), _ = exchange(api, f"{method} /v2/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    problem(response, 404)


def test_oversized_headers_are_431(api):
    (response,), closed = exchange(api, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
    problem(response, 431)
    assert closed
