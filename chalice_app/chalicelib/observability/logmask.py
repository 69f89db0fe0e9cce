"""Second line of defence for I6: no log line ever carries a card number.

Nothing should log a PAN in the first place (the vault decrypts it only for a
PSP call, AuthorizeRequest's repr hides it). This masks, in every log record
of the process, any 13-19 digit run that passes the Luhn check -- bare, or in
groups separated by spaces or dashes -- keeping the last four digits
(domain/cards.py says what counts as one).
"""
from __future__ import annotations

import logging
from typing import Any

from ..domain.cards import mask_pans


def mask_value(value: Any, depth: int = 0) -> Any:
    """`value` with every PAN masked, keeping its shape: strings, numbers, bytes, and dicts,
    lists and tuples of them (recursively); any other object is replaced by its masked text
    if its text holds a PAN. A structured formatter (JSON logs) then finds nothing either."""
    if isinstance(value, str):
        return mask_pans(value)
    if value is None or isinstance(value, (bool, float)):
        return value
    if isinstance(value, int):
        text = str(value)
        masked = mask_pans(text)
        return value if masked == text else masked
    if isinstance(value, (bytes, bytearray)):
        text = bytes(value).decode("utf-8", "replace")
        masked = mask_pans(text)
        return value if masked == text else masked
    if depth < 8 and type(value) is dict:
        return {mask_value(k, depth + 1): mask_value(v, depth + 1) for k, v in value.items()}
    if depth < 8 and type(value) in (list, tuple, set, frozenset):
        return type(value)(mask_value(v, depth + 1) for v in value)
    try:
        text = str(value)
    except Exception:  # noqa: BLE001 - an object that cannot print itself cannot print a PAN
        return value
    masked = mask_pans(text)
    return value if masked == text else masked


_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def scrub(record: logging.LogRecord) -> logging.LogRecord:
    """Mask the formatted message (args merged in), the exception and stack text, and every `extra`
    attribute whatever its type, in place."""
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format string is the formatter's problem, not ours
        message = str(record.msg)
    record.msg, record.args = mask_pans(message), None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = mask_pans(record.exc_text)
    if record.stack_info:
        record.stack_info = mask_pans(record.stack_info)
    for name, value in list(vars(record).items()):
        if name not in _STANDARD:
            setattr(record, name, mask_value(value))
    return record


class PanMaskingFilter(logging.Filter):
    """A handler/logger filter that masks PANs and never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        scrub(record)
        return True


_installed = False


def install() -> None:
    """Mask every record this process creates (any logger, any handler), once.

    A filter on the root logger alone would miss records logged on child loggers
    (logger filters do not see propagated records), so the record factory does the
    masking, and the root logger's handlers get the filter for records made elsewhere.
    """
    global _installed
    root = logging.getLogger()
    for handler in root.handlers:
        if not any(isinstance(f, PanMaskingFilter) for f in handler.filters):
            handler.addFilter(PanMaskingFilter())
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return scrub(previous(*args, **kwargs))
    logging.setLogRecordFactory(factory)
    _installed = True
