"""What the SDK-based connectors share: telling "never sent" from "maybe processed" in a transport
failure, redacting PSP text, and one span, metric and log line per PSP call.

Both official SDKs (stripe, Adyen) send through `requests`; a failure reaches us wrapped (stripe's
APIConnectionError from the requests error) or bare (Adyen). Only a connection that was never
established proves the PSP never saw the request; a reset, a read timeout or a broken answer after
the request went out may hide a charge.
"""
from __future__ import annotations

import logging
import re
import socket
import time
from dataclasses import replace
from typing import Any, Callable

import requests
import urllib3.exceptions
from opentelemetry.trace import SpanKind

from ..domain.psp import Outcome, PspResult
from ..observability import metrics, tracing

log = logging.getLogger("chalicelib.connectors")

_NEVER_CONNECTED = (requests.exceptions.ConnectTimeout, urllib3.exceptions.NewConnectionError,
                    urllib3.exceptions.ConnectTimeoutError, ConnectionRefusedError, socket.gaierror)
_PAN_LIKE = re.compile(r"\d{12,19}")


def never_sent(exc: BaseException) -> bool:
    """True when the failure proves the request never left: the connection itself failed."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        e = todo.pop()
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, _NEVER_CONNECTED):
            return True
        todo.extend([e.__cause__, e.__context__, getattr(e, "reason", None), *getattr(e, "args", ())])
    return False


def is_transport_error(exc: BaseException) -> bool:
    """A failure of the HTTP exchange itself (as opposed to an answer the PSP gave)."""
    return isinstance(exc, (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError))


def redact(text: Any) -> str | None:
    """PSP free text, shortened, with anything that could be a card number removed."""
    return None if text is None else _PAN_LIKE.sub("[redacted]", str(text))[:300]


def observed(psp: str, op: str, key: str, host: str, call: Callable[[], PspResult]) -> PspResult:
    """Run one PSP call inside a client span; time it, count it, log one line of codes (no PSP text,
    no request data: card numbers and keys never reach a log)."""
    with tracing.span(f"psp {op}", kind=SpanKind.CLIENT, **{"payments.psp": psp, "payments.psp_operation": op,
                                                           "server.address": host}) as span:
        start = time.monotonic()
        result = call()
        result = replace(result, latency_ms=round((time.monotonic() - start) * 1000, 1))
        tracing.set_attributes(span, **{"payments.outcome": result.outcome.value, "payments.psp_code": result.code,
                                        "payments.psp_latency_ms": result.latency_ms})
        if result.outcome in (Outcome.UNAVAILABLE, Outcome.UNKNOWN):
            tracing.mark_error(span, f"{op}: {result.outcome.value} ({result.code})")
    metrics.psp_call(psp, op, result.outcome.value, result.latency_ms)
    log.info("psp=%s op=%s key=%s outcome=%s code=%s class=%s latency_ms=%s", psp, op, key, result.outcome.value,
             result.code, result.error_class.value if result.error_class else None, result.latency_ms)
    return result
