"""Structured logs: one JSON object per line, with the scope of the work in hand.

Every line carries time, level, logger, message, and -- when known -- stage,
tenant_id, payment_id, correlation_id, event_id (from telemetry.context) and the
X-Ray trace id and span id of the current span, plus the call's `extra` fields.
LOG_FORMAT=text gives the classic one-liner for people who prefer it.
PAN masking (observability/logmask.py) runs on every record before it gets here.
"""
from __future__ import annotations

import logging
import os
import sys
from datetime import datetime, timezone
from typing import Any

import orjson

from . import context, tracing

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        doc.update({k: v for k, v in context.current().items() if not k.startswith("_")})
        trace_id, span_id = tracing.current_ids()
        if trace_id:
            doc["trace_id"], doc["span_id"] = trace_id, span_id
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_"):
                doc[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exception"] = record.exc_text
        return orjson.dumps(doc, default=str).decode()


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class _Ours(logging.StreamHandler):
    """The handler install() adds (so a second install replaces it instead of doubling lines).

    It writes to whatever sys.stderr is at the time of each line (test capture swaps it)."""

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # noqa: ANN001
        pass


def install(level: str = "INFO", fmt: str = "json") -> None:
    """Root logging for this process: JSON (or text) lines on stderr at `level`.

    In Lambda the runtime's own handler writes to the log stream: it gets our formatter
    instead of a second handler. Elsewhere one handler of ours is (re)installed.
    """
    formatter = JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)
    root = logging.getLogger()
    root.setLevel(level)
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") and root.handlers:
        for handler in root.handlers:
            handler.setFormatter(formatter)
        return
    for handler in [h for h in root.handlers if isinstance(h, _Ours)]:
        root.removeHandler(handler)
    handler = _Ours()
    handler.setFormatter(formatter)
    root.addHandler(handler)
