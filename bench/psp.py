"""The PSP for the benchmark: the simulator's own logic, called in-process.

The stages talk to it through the real SimulatorConnector (same request
building, same status mapping); only the HTTP hop is replaced by a direct
call, so the benchmark measures our pipeline and not a loopback web server.
The simulator keeps its charges in an in-memory SQLite database: a real
PSP's disk is not ours to pay for.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from chalicelib.connectors.simulator import SimulatorConnector
from laptop.psp_simulator.psp import ApiError, Simulator


class InProcessPsp(SimulatorConnector):
    """A SimulatorConnector whose transport is a method call on a shared Simulator."""

    def __init__(self, name: str, simulator: Simulator):
        super().__init__(name, "http://in-process.invalid", timeout_s=2.0)
        self.sim = simulator

    def _call(self, method: str, path: str, body: dict | None, idempotency_key: str,
              correlation_id: str | None, op: str):
        headers = {"Idempotency-Key": idempotency_key, "X-Correlation-Id": correlation_id}
        try:
            if op == "authorize":
                status, answer = self.sim.authorize(self.name, body or {}, headers)
            elif op == "status":
                status, answer = self.sim.status(self.name, idempotency_key)
            else:  # /charges/{id}/{capture|void|refunds}
                charge_id = unquote(path.split("/")[2])
                status, answer = self.sim.operate(self.name, charge_id, op, body or {}, headers)
        except ApiError as e:
            status, answer = e.status, e.body
        outcome, ref, code, message = self._map(op, status, _encode(answer))
        return self._done(op, idempotency_key, 0.0, status, outcome, ref, code, message)


def _encode(answer: Any) -> bytes:
    import orjson
    return orjson.dumps(answer)


def in_process_psps(names: tuple[str, ...] = ("sim-a", "sim-b")) -> dict[str, InProcessPsp]:
    """Connectors for the named PSPs, sharing one in-memory simulator."""
    sim = Simulator(":memory:", timeout_delay=0.0)
    return {n: InProcessPsp(n, sim) for n in names}


def accept_webhook(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> int:
    """The merchant's webhook endpoint: accepts every delivery (the signing work still runs)."""
    return 200
