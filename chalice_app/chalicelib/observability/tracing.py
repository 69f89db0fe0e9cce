"""OpenTelemetry traces with X-Ray semantics: one trace per payment.

Ids come from the AWS X-Ray id generator (the trace id starts with the epoch
second, so X-Ray accepts it) and context travels in the X-Ray header
(`X-Amzn-Trace-Id: Root=1-...;Parent=...;Sampled=1`): on the HTTP request, in
every Kafka record's headers (the outbox keeps the header of the span that made
the event, the relay copies it onto the record), on PSP calls and webhooks.
A stage handler continues the trace from its record's header, so the API span,
each stage, the PSP calls, ledger writes and the webhook form one tree.

Exporter by TRACE_EXPORTER: `memory` (tests), `console`, `file` (JSON lines in
$DATA_DIR/traces.jsonl, the local default), `otlp` (the ADOT collector layer in
Lambda, the default there), `none`. Span attributes name tenant, payment, stage,
PSP and outcome -- never card data (attributes are only set from explicit keys).
"""
from __future__ import annotations

import os
import re
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

import orjson
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.aws import AwsXRayPropagator
from opentelemetry.sdk.extension.aws.trace import AwsXRayIdGenerator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

HEADER = "X-Amzn-Trace-Id"
CLIENT, SERVER, CONSUMER = SpanKind.CLIENT, SpanKind.SERVER, SpanKind.CONSUMER
_propagator = AwsXRayPropagator()
_lock = threading.Lock()


class XRayIds(AwsXRayIdGenerator):
    """X-Ray ids that never hold a card-number-shaped run of digits.

    Hex ids hold runs of decimal digits by chance; a run of 13+ is PAN-shaped and Luhn-valid one
    time in ten, so log scrubbers would mask part of the id and PAN scans would flag it. Drawing
    again when a random part has such a run (under 1 % of draws) keeps the ids random and
    well-formed, and unmistakable for card data.
    """

    def generate_span_id(self) -> int:
        while True:
            span_id = super().generate_span_id()
            if not _PAN_SHAPED.search(f"{span_id:016x}"):
                return span_id

    def generate_trace_id(self) -> int:
        while True:
            trace_id = super().generate_trace_id()
            if not _PAN_SHAPED.search(f"{trace_id:032x}"[8:]):
                return trace_id


_PAN_SHAPED = re.compile(r"\d{13}")


class _Switch(SpanProcessor):
    """The provider's one processor; setup() swaps what it forwards to (a provider is set once per process)."""

    def __init__(self) -> None:
        self.target: SpanProcessor | None = None
        self.kind: tuple[str, str] | None = None
        self.memory: InMemorySpanExporter | None = None

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if self.target is not None:
            self.target.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if self.target is not None:
            self.target.on_end(span)

    def shutdown(self) -> None:
        if self.target is not None:
            self.target.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.target.force_flush(timeout_millis) if self.target is not None else True


_switch = _Switch()


class JsonLinesExporter(SpanExporter):
    """One JSON object per finished span, appended to a file (what `make local` users read)."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        data = b"".join(orjson.dumps(span_dict(s)) + b"\n" for s in spans)
        with self._lock, open(self.path, "ab") as f:
            f.write(data)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def xray_id(trace_id: int) -> str:
    """An OpenTelemetry trace id as X-Ray writes it: 1-<8 hex epoch>-<24 hex>."""
    h = f"{trace_id:032x}"
    return f"1-{h[:8]}-{h[8:]}"


_second: tuple[int, str] = (-1, "")


def _iso_ns(ns: int | None) -> str | None:
    """Nanosecond epochs are 19-digit runs (PAN-shaped); files get ISO times instead
    (the date and time to the second are formatted once per second: spans end thousands a second)."""
    global _second
    if ns is None:
        return None
    sec, micros = divmod(ns // 1000, 1_000_000)
    cached = _second
    if cached[0] != sec:
        cached = _second = (sec, datetime.fromtimestamp(sec, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{cached[1]}.{micros:06d}Z"


def span_dict(s: ReadableSpan) -> dict[str, Any]:
    parent = s.parent.span_id if s.parent is not None else None
    return {"trace_id": xray_id(s.context.trace_id), "span_id": f"{s.context.span_id:016x}",
            "parent_id": f"{parent:016x}" if parent else None, "name": s.name, "kind": s.kind.name,
            "start": _iso_ns(s.start_time), "end": _iso_ns(s.end_time),
            "duration_ms": round(((s.end_time or 0) - (s.start_time or 0)) / 1e6, 3),
            "status": s.status.status_code.name, "attributes": dict(s.attributes or {}),
            "links": [xray_id(link.context.trace_id) for link in s.links]}


def _exporter_kind(settings: Any) -> str:
    kind = getattr(settings, "trace_exporter", "auto")
    if kind == "auto":
        return "otlp" if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") else "file"
    return kind


def setup(settings: Any) -> None:
    """Install the X-Ray-flavoured provider once, and point it at this mode's exporter."""
    kind = _exporter_kind(settings)
    path = str(Path(settings.data_dir) / "traces.jsonl") if kind == "file" else ""
    with _lock:
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            provider = TracerProvider(id_generator=XRayIds(), resource=Resource.create(
                {"service.name": "payments-platform", "cloud.region": getattr(settings, "region", "")}))
            provider.add_span_processor(_switch)
            trace.set_tracer_provider(provider)
        if _switch.kind == (kind, path):
            return
        old, _switch.target, _switch.memory = _switch.target, None, None
        if old is not None:
            old.force_flush()
            old.shutdown()
        if kind == "memory":
            _switch.memory = InMemorySpanExporter()
            _switch.target = SimpleSpanProcessor(_switch.memory)
        elif kind == "file":
            _switch.target = BatchSpanProcessor(JsonLinesExporter(Path(path)), schedule_delay_millis=500)
        elif kind == "console":
            _switch.target = BatchSpanProcessor(ConsoleSpanExporter(
                formatter=lambda s: orjson.dumps(span_dict(s)).decode() + "\n"))
        elif kind == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415
            _switch.target = BatchSpanProcessor(OTLPSpanExporter())  # OTEL_EXPORTER_OTLP_ENDPOINT: the ADOT collector
        _switch.kind = (kind, path)


def flush(timeout_ms: int = 2000) -> None:
    """Export what is buffered (end of a Lambda invocation, end of a test)."""
    _switch.force_flush(timeout_ms)


def finished_spans() -> list[ReadableSpan]:
    """Spans kept by the `memory` exporter (tests)."""
    return list(_switch.memory.get_finished_spans()) if _switch.memory is not None else []


def clear_spans() -> None:
    if _switch.memory is not None:
        _switch.memory.clear()


_tracer: tuple[Any, trace.Tracer] | None = None


def tracer() -> trace.Tracer:
    """The platform's tracer, made once per provider (get_tracer builds a new one on every call)."""
    global _tracer
    provider = trace.get_tracer_provider()
    if _tracer is None or _tracer[0] is not provider:
        _tracer = (provider, trace.get_tracer("payments"))
    return _tracer[1]


# -- propagation ------------------------------------------------------------------------------
def current_header() -> str | None:
    """The X-Ray header naming the current span as parent (None outside any span)."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get(HEADER)


def inject(headers: dict[str, str]) -> dict[str, str]:
    """`headers` plus the current X-Ray header (for an outgoing HTTP call)."""
    header = current_header()
    if header:
        headers[HEADER] = header
    return headers


def context_from(header: str | bytes | None) -> otel_context.Context | None:
    if not header:
        return None
    if isinstance(header, bytes):
        header = header.decode(errors="replace")
    ctx = _propagator.extract({HEADER: header})
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def current_ids() -> tuple[str | None, str | None]:
    """(X-Ray trace id, span id) of the current span, for log lines."""
    sc = trace.get_current_span().get_span_context()
    if not sc.is_valid:
        return None, None
    return xray_id(sc.trace_id), f"{sc.span_id:016x}"


def span(name: str, *, parent: str | bytes | None = None, kind: SpanKind = SpanKind.INTERNAL,
         links: Sequence[str | bytes | None] = (), keep: bool = False, **attributes: Any) -> _Scope:
    """A span, current inside the `with` block; `parent` is an X-Ray header to continue (else the
    current span is the parent). An exception marks the span as an error, ends it and propagates.
    `keep`: a block that ends without an exception leaves the span open, for the caller to end
    (a stage record's span stays open until the batch commit that makes its effects durable)."""
    ctx = context_from(parent) if parent else None
    span_links = []
    for header in links:
        linked = context_from(header)
        if linked is not None:
            span_links.append(trace.Link(trace.get_current_span(linked).get_span_context()))
    attrs = {k: v for k, v in attributes.items() if v is not None}
    return _Scope(tracer().start_span(name, context=ctx, kind=kind, attributes=attrs, links=span_links), keep)


class _Scope:
    """What start_as_current_span(record_exception=True, set_status_on_exception=True) does, without
    its two generator layers: every stage record opens one of these."""
    __slots__ = ("span", "_token", "_keep")

    def __init__(self, s: Span, keep: bool = False):
        self.span, self._token, self._keep = s, None, keep

    def __enter__(self) -> Span:
        self._token = otel_context.attach(trace.set_span_in_context(self.span))
        return self.span

    def __exit__(self, etype: Any, exc: BaseException | None, tb: Any) -> None:
        try:
            if exc is not None and self.span.is_recording():
                self.span.record_exception(exc)
                self.span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        finally:
            otel_context.detach(self._token)
            if exc is not None or not self._keep:
                self.span.end()


def current_context() -> otel_context.Context:
    """The current trace context, kept to parent spans made later (no header round trip)."""
    return otel_context.get_current()


@contextmanager
def spans_under(items: Sequence[tuple[str, otel_context.Context | None, dict[str, Any]]]) -> Iterator[list[Span]]:
    """One span per (name, parent context, attributes), open around the block but not made current:
    a batched commit that belongs to several payments' traces at once. An exception marks them all."""
    t = tracer()
    opened = [t.start_span(name, context=parent, attributes={k: v for k, v in attrs.items() if v is not None})
              for name, parent, attrs in items]
    try:
        yield opened
    except BaseException as e:
        for s in opened:
            s.record_exception(e)
            mark_error(s, f"{type(e).__name__}: {e}")
        raise
    finally:
        for s in opened:
            s.end()


def set_attributes(s: Span, **attributes: Any) -> None:
    s.set_attributes({k: v for k, v in attributes.items() if v is not None})


def mark_error(s: Span, description: str) -> None:
    s.set_status(Status(StatusCode.ERROR, description[:200]))


def annotate(**attributes: Any) -> None:
    """Set attributes on the current span (if any)."""
    s = trace.get_current_span()
    if s.is_recording():
        set_attributes(s, **attributes)


def flush_if_lambda() -> None:
    """In Lambda, export before the invocation returns (the container may be frozen after)."""
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        flush()
