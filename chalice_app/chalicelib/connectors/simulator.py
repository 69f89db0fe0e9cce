"""Connector for the PSP simulator (laptop/psp_simulator/), over plain HTTP/JSON.

The important job here is telling "the PSP provably did not process this"
(UNAVAILABLE / SOFT_DECLINED: safe to fail over) apart from "we do not know"
(UNKNOWN: must ask status() before trying anywhere else).
"""
from __future__ import annotations

import http.client
import logging
import re
import time
from typing import Any, Mapping
from urllib.parse import quote, urlsplit

import orjson
from opentelemetry.trace import SpanKind

from ..domain.psp import Outcome, PspResult
from ..observability import metrics, tracing
from ..ports import AuthorizeRequest
from .secret import Secret

log = logging.getLogger(__name__)

_NOT_PROCESSED = {429, 502, 503}  # the PSP says it did not act on the request
_PAN_LIKE = re.compile(r"\d{12,19}")


def _redact(text: Any) -> str | None:
    # a PSP's free-text message could echo a card number; never pass one on
    return None if text is None else _PAN_LIKE.sub("[redacted]", str(text))[:300]


class SimulatorConnector:
    """Talks to one named PSP of the simulator.

    `base_url` is the simulator's root (e.g. "http://127.0.0.1:8100"); the
    connector appends "/psp/{name}". A base_url that already ends in
    "/psp/{name}" is used as is, so both spellings of a config work.
    """

    def __init__(self, name: str, base_url: str, timeout_s: float = 2.0,
                 api_key: Secret | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"connector {name!r}: base_url must be an http(s) URL")
        if timeout_s <= 0:
            raise ValueError(f"connector {name!r}: timeout_s must be positive")
        self.name = name
        self.timeout_s = timeout_s
        self._api_key = api_key
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        root, suffix = parts.path.rstrip("/"), f"/psp/{quote(name, safe='')}"
        self._prefix = root if root.endswith(suffix) else root + suffix

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> SimulatorConnector:
        """Build from a tenant PSP config: name, base_url, optional timeout_s and api_key."""
        missing = [k for k in ("name", "base_url") if not cfg.get(k)]
        if missing:
            raise ValueError(f"simulator connector config lacks {', '.join(missing)}")
        key = cfg.get("api_key")
        return cls(str(cfg["name"]), str(cfg["base_url"]), float(cfg.get("timeout_s") or 2.0),
                   Secret(key) if isinstance(key, str) else key)

    def __repr__(self) -> str:
        return f"SimulatorConnector({self.name!r})"

    # -- Connector protocol -------------------------------------------------------
    def authorize(self, request: AuthorizeRequest) -> PspResult:
        """Ask the PSP to authorize; the same idempotency key never charges twice."""
        body = {"idempotency_key": request.idempotency_key, "amount": request.amount,
                "currency": request.currency, "reference": request.reference}
        if request.card is not None:
            body["card"] = {k: request.card.get(k) for k in ("number", "exp_month", "exp_year")}
        else:  # a bank debit: the simulator approves any IBAN it is given
            body["bank_account"] = {"iban": (request.bank_account or {}).get("iban")}
        return self._call("POST", "/authorizations", body, request.idempotency_key,
                          request.correlation_id, "authorize")

    def capture(self, psp_reference: str, amount: int, currency: str, idempotency_key: str,
                *, correlation_id: str | None = None) -> PspResult:
        """Capture (part of) an authorization."""
        body = {"amount": amount, "currency": currency, "idempotency_key": idempotency_key}
        return self._call("POST", f"/charges/{quote(psp_reference, safe='')}/capture", body,
                          idempotency_key, correlation_id, "capture")

    def void(self, psp_reference: str, idempotency_key: str, *,
             correlation_id: str | None = None) -> PspResult:
        """Release an uncaptured authorization."""
        return self._call("POST", f"/charges/{quote(psp_reference, safe='')}/void",
                          {"idempotency_key": idempotency_key}, idempotency_key, correlation_id, "void")

    def refund(self, psp_reference: str, amount: int, currency: str, idempotency_key: str,
               *, correlation_id: str | None = None) -> PspResult:
        """Refund (part of) a captured payment."""
        body = {"amount": amount, "currency": currency, "idempotency_key": idempotency_key}
        return self._call("POST", f"/charges/{quote(psp_reference, safe='')}/refunds", body,
                          idempotency_key, correlation_id, "refund")

    def status(self, idempotency_key: str, psp_reference: str | None = None, *,
               correlation_id: str | None = None) -> PspResult:
        """What the PSP knows of an authorization sent with this key (NOT_FOUND if nothing)."""
        return self._call("GET", f"/authorizations/{quote(idempotency_key, safe='')}", None,
                          idempotency_key, correlation_id, "status")

    # -- transport ------------------------------------------------------------------
    def _call(self, method: str, path: str, body: dict | None, idempotency_key: str,
              correlation_id: str | None, op: str) -> PspResult:
        headers = {"Accept": "application/json", "Idempotency-Key": idempotency_key,
                   "User-Agent": "payments-platform/simulator-connector"}
        if correlation_id:
            headers["X-Correlation-Id"] = correlation_id
        with tracing.span(f"psp {op}", kind=SpanKind.CLIENT, **{"payments.psp": self.name, "payments.psp_operation": op,
                                                               "server.address": self._host}) as span:
            tracing.inject(headers)
            result = self._send(method, path, body, headers, idempotency_key, op)
            tracing.set_attributes(span, **{"payments.outcome": result.outcome.value, "payments.psp_code": result.code,
                                            "payments.psp_latency_ms": result.latency_ms})
            if result.outcome in (Outcome.UNAVAILABLE, Outcome.UNKNOWN):
                tracing.mark_error(span, f"{op}: {result.outcome.value} ({result.code})")
        metrics.psp_call(self.name, op, result.outcome.value, result.latency_ms or 0.0)
        return result

    def _send(self, method: str, path: str, body: dict | None, headers: dict[str, str], idempotency_key: str,
              op: str) -> PspResult:
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.reveal()}"
        data = None
        if body is not None:
            data = orjson.dumps(body)
            headers["Content-Type"] = "application/json"
        conn_cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = conn_cls(self._host, self._port, timeout=self.timeout_s)
        start = time.monotonic()
        try:
            try:
                conn.connect()
            except OSError as exc:  # refused, unreachable, DNS, connect timeout: nothing was sent
                return self._done(op, idempotency_key, start, None, Outcome.UNAVAILABLE,
                                  code="connect_failed", message=type(exc).__name__)
            try:
                conn.request(method, self._prefix + path, body=data, headers=headers)
                resp = conn.getresponse()
                status, raw = resp.status, resp.read()
            except (OSError, http.client.HTTPException) as exc:
                # bytes may have reached the PSP: only status() can tell what happened
                return self._done(op, idempotency_key, start, None, Outcome.UNKNOWN,
                                  code="no_response", message=type(exc).__name__)
        finally:
            conn.close()
        outcome, ref, code, message = self._map(op, status, raw)
        return self._done(op, idempotency_key, start, status, outcome, ref, code, message)

    @staticmethod
    def _map(op: str, status: int, raw: bytes) -> tuple[Outcome, str | None, str | None, str | None]:
        """Translate an HTTP answer into (outcome, psp_reference, code, message)."""
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            body = None
        get = (body or {}).get
        code, message, ref = get("code"), _redact(get("message")), get("id")
        if 200 <= status < 300:
            if body is None or not ref:  # something happened, but we cannot tell what
                return Outcome.UNKNOWN, None, "unreadable_response", f"HTTP {status}"
            if get("status") == "declined":  # a status() of a declined authorization
                return Outcome.DECLINED, ref, code or "declined", message
            return Outcome.APPROVED, ref, None, None
        if op == "status" and status == 404:
            return Outcome.NOT_FOUND, None, "not_found", message
        if status in _NOT_PROCESSED or status == 408 or get("status") == "unavailable":
            soft = code == "try_again_later"
            return (Outcome.SOFT_DECLINED if soft else Outcome.UNAVAILABLE), None, \
                code or f"http_{status}", message
        if 400 <= status < 500:  # a definitive refusal: 402 decline, bad amount, wrong state
            return Outcome.DECLINED, ref, code or f"http_{status}", message
        return Outcome.UNKNOWN, None, code or f"http_{status}", message  # 500, 504, ...

    def _done(self, op: str, key: str, start: float, http_status: int | None, outcome: Outcome,
              ref: str | None = None, code: str | None = None, message: str | None = None) -> PspResult:
        latency_ms = round((time.monotonic() - start) * 1000, 1)
        log.info("psp=%s op=%s key=%s http=%s outcome=%s code=%s latency_ms=%s",
                 self.name, op, key, http_status, outcome.value, code, latency_ms)
        return PspResult(outcome, ref, code, message, latency_ms)
