"""Routes: parse, authenticate, hand to PaymentService, render. Nothing else.

Errors are RFC 9457 application/problem+json; no input produces a 500 with
a stack trace (an unexpected error is logged and answered as a plain 500
problem carrying the correlation id).
"""
from __future__ import annotations

import logging
import uuid
from typing import Any, Callable
from urllib.parse import unquote

import orjson
from chalice import Blueprint, Response
from opentelemetry.trace import SpanKind

from ..bootstrap import get_platform
from ..domain.cards import holds_pan, mask_pans
from ..observability import context, tracing
from ..schemas import schemas_dir
from ..services import reporting
from ..services.api_io import ApiError, Reply
from ..services.health import region_health
from ..services.payments import PaymentService
from ..services.tenants import caller_key, caller_of_key
from .ratelimit import retry_after

api = Blueprint(__name__)
log = logging.getLogger("payments.api")
CORRELATION_HEADER = "X-Correlation-Id"
PROBLEM_BASE = "https://docs.payments.example/problems/"


MAX_CORRELATION_ID = 128


def _given_correlation_id(request: Any) -> str | None:
    return (request.headers or {}).get(CORRELATION_HEADER.lower()) or (request.headers or {}).get(CORRELATION_HEADER)


def _correlation(request: Any) -> tuple[str, str | None]:
    """(the request's correlation id, why the caller's was refused or None): the caller's id when
    usable, else a generated one (a refused id is never echoed)."""
    given = _given_correlation_id(request)
    why = _correlation_id_problem(given) if given else None
    return (given, None) if given and why is None else (f"corr_{uuid.uuid4().hex}", why)


def _correlation_id(request: Any) -> str:
    return _correlation(request)[0]


def _correlation_id_problem(given: str) -> str | None:
    """Why a given X-Correlation-Id cannot be used (it is stored, published and sent in webhooks as given)."""
    if len(given) > MAX_CORRELATION_ID:
        return f"X-Correlation-Id must be at most {MAX_CORRELATION_ID} characters (got {len(given)})"
    if not (given.isascii() and given.isprintable()):
        return "X-Correlation-Id must be printable ASCII characters only"
    if holds_pan(given):
        return "X-Correlation-Id holds what looks like a card number"
    return None


def _masked(value: Any) -> Any:
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return mask_pans(value) if isinstance(value, str) else value


def problem_document(status: int, title: str, detail: str, correlation_id: str, **extra: Any) -> dict[str, Any]:
    """The RFC 9457 body every refusal carries (the app's, and the local server's own: laptop/api_server.py)."""
    # A detail may quote the caller's input (a field name); it must never carry a card number back.
    return {"type": PROBLEM_BASE + title.lower().replace(" ", "-"), "title": title, "status": status,
            "detail": mask_pans(detail), "correlation_id": correlation_id,
            **{k: _masked(v) for k, v in extra.items()}}


def problem(status: int, title: str, detail: str, correlation_id: str, **extra: Any) -> Response:
    body = problem_document(status, title, detail, correlation_id, **extra)
    headers = {"Content-Type": "application/problem+json", CORRELATION_HEADER: correlation_id}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="payments"'
    if "retry_after_s" in extra:  # 429 over the rate limit, 409 a request in progress
        headers["Retry-After"] = str(extra["retry_after_s"])
    return Response(body=orjson.dumps(body).decode(), status_code=status, headers=headers)


def _render(reply: Reply, correlation_id: str) -> Response:
    headers = {"Content-Type": "application/json", CORRELATION_HEADER: correlation_id, **reply.headers}
    return Response(body=reply.body.decode(), status_code=reply.status, headers=headers)


def _serve(fn: Callable, request: Any, corr: str, refused_corr: str | None, authenticated: bool,
           params: dict[str, str], span: Any) -> Response:
    try:
        if refused_corr is not None:
            raise ApiError(400, "Invalid X-Correlation-Id", refused_corr)
        if request.method == "POST" and not _is_json((request.headers or {}).get("content-type")):
            raise ApiError(415, "Unsupported media type", "send the request body as application/json")
        platform = get_platform()
        tenant_id = actor = None
        if authenticated:
            authorization = (request.headers or {}).get("authorization")
            key = caller_key(platform, authorization)
            wait = platform.rate_limiter.precheck(key) if key is not None else 0.0
            if wait > 0:  # decided in memory, before the key is even looked up
                raise ApiError(429, "Too many requests", "this caller's request rate is over its limit; "
                               "retry after the Retry-After seconds", retry_after_s=retry_after(wait))
            caller = caller_of_key(platform, key) if key is not None else None
            if caller is None:
                raise ApiError(401, "Unauthorized", "a valid API key is required: Authorization: Bearer <key>")
            tenant_id, actor = caller[0], f"api:{caller[1]}"
            context.bind(tenant_id=tenant_id)
            span.set_attribute("payments.tenant_id", tenant_id)
            wait = platform.rate_limiter.take(tenant_id)
            if wait > 0:
                raise ApiError(429, "Too many requests", "this tenant's request rate is over its limit; "
                               "retry after the Retry-After seconds", retry_after_s=retry_after(wait))
        return _render(fn(PaymentService(platform, actor), request, tenant_id, corr, **params), corr)
    except ApiError as e:
        return problem(e.status, e.title, e.detail, corr, **e.extra)
    except Exception:  # noqa: BLE001 - never leak a stack trace to a client
        log.exception("unhandled error")
        return problem(500, "Internal error", "the request could not be completed; quote the correlation id", corr)


def endpoint(authenticated: bool = True) -> Callable:
    """Wrap a route: correlation id, authentication, errors as problems."""
    def wrap(fn: Callable) -> Callable:
        def route(**params: str) -> Response:
            request = api.current_request
            corr, refused_corr = _correlation(request)
            path = (getattr(request, "context", None) or {}).get("resourcePath") or request.path
            try:
                get_platform()  # built (with its tracer) before the request's span starts
            except Exception:  # noqa: BLE001 - _serve reports it as a problem
                pass
            # The path's payment id is the caller's text: whatever it holds goes to logs and spans masked.
            path_id = mask_pans(unquote(params["payment_id"])) if params.get("payment_id") else None
            with context.bound(correlation_id=corr, payment_id=path_id), \
                    tracing.span(f"{request.method} {path}", kind=SpanKind.SERVER,
                                 parent=(request.headers or {}).get(tracing.HEADER.lower()),
                                 **{"http.request.method": request.method, "http.route": path,
                                    "payments.correlation_id": corr,
                                    "payments.payment_id": path_id}) as span:
                response = _serve(fn, request, corr, refused_corr, authenticated, params, span)
                span.set_attribute("http.response.status_code", response.status_code)
                if response.status_code >= 500:
                    tracing.mark_error(span, f"HTTP {response.status_code}")
                return response
        route.__name__ = fn.__name__
        route.__doc__ = fn.__doc__
        return route
    return wrap


@api.middleware("http")
def _method_not_allowed_as_problem(event: Any, get_response: Callable) -> Response:
    """Chalice answers a known path with a method it does not serve itself (405 with Allow and its own
    JSON): the same answer as a problem, like every other refusal. (In AWS, API Gateway refuses such a
    request before it reaches the app: README, "HTTP API".)"""
    response = get_response(event)
    if response.status_code == 405 and b"MethodNotAllowedError" in _body_bytes(response):
        allow = (response.headers or {}).get("Allow", "")
        corr = _correlation_id(event)
        refused = problem(405, "Method not allowed", f"{event.method} is not allowed here; use {allow}", corr)
        refused.headers["Allow"] = allow
        return refused
    return response


def _body_bytes(response: Response) -> bytes:
    body = response.body
    return body if isinstance(body, bytes) else str(body).encode()


# Routes take any Content-Type so that a wrong one gets our problem+json 415, not Chalice's own body.
JSON = ["*/*"]


def _is_json(content_type: str | None) -> bool:
    return not content_type or content_type.split(";")[0].strip().lower() == "application/json"


@api.route("/health", methods=["GET"])
@endpoint(authenticated=False)
def health(svc: PaymentService, request: Any, tenant_id: None, corr: str) -> Reply:
    """Whether this region should take traffic: 503 sends Route 53's clients elsewhere."""
    code, report = region_health(svc.p)
    return Reply(code, orjson.dumps(report), {"Cache-Control": "no-store"})


@api.route("/openapi.json", methods=["GET"])
@endpoint(authenticated=False)
def openapi(svc: PaymentService, request: Any, tenant_id: None, corr: str) -> Reply:
    return Reply(200, (schemas_dir() / "openapi.json").read_bytes(), {})


@api.route("/v1/payments", methods=["POST"], content_types=JSON)
@endpoint()
def create_payment(svc: PaymentService, request: Any, tenant_id: str, corr: str) -> Reply:
    return svc.create_payment(tenant_id, (request.headers or {}).get("idempotency-key"), request.raw_body, corr)


@api.route("/v1/payments", methods=["GET"])
@endpoint()
def list_payments(svc: PaymentService, request: Any, tenant_id: str, corr: str) -> Reply:
    return svc.list(tenant_id, dict(request.query_params or {}))


@api.route("/v1/payments/{payment_id}", methods=["GET"])
@endpoint()
def get_payment(svc: PaymentService, request: Any, tenant_id: str, corr: str, payment_id: str) -> Reply:
    return svc.get(tenant_id, payment_id)


@api.route("/v1/payments/{payment_id}/capture", methods=["POST"], content_types=JSON)
@endpoint()
def capture_payment(svc: PaymentService, request: Any, tenant_id: str, corr: str, payment_id: str) -> Reply:
    return svc.capture(tenant_id, payment_id, request.raw_body, corr)


@api.route("/v1/payments/{payment_id}/cancel", methods=["POST"], content_types=JSON)
@endpoint()
def cancel_payment(svc: PaymentService, request: Any, tenant_id: str, corr: str, payment_id: str) -> Reply:
    return svc.cancel(tenant_id, payment_id, request.raw_body, corr)


@api.route("/v1/payments/{payment_id}/refunds", methods=["POST"], content_types=JSON)
@endpoint()
def create_refund(svc: PaymentService, request: Any, tenant_id: str, corr: str, payment_id: str) -> Reply:
    return svc.refund(tenant_id, payment_id, request.raw_body, corr)


@api.route("/v1/balances", methods=["GET"])
@endpoint()
def balances(svc: PaymentService, request: Any, tenant_id: str, corr: str) -> Reply:
    return svc.balances(tenant_id)


@api.route("/v1/reports/summary", methods=["GET"])
@endpoint()
def report_summary(svc: PaymentService, request: Any, tenant_id: str, corr: str) -> Reply:
    """The caller's own aggregates, kept by the reporting consumer of the change feed."""
    return Reply(200, orjson.dumps(reporting.summary(svc.p.store.reports.report_counters(tenant_id))), {})
