"""Strict JSON for request bodies: one meaning per document, or a 400 naming why.

orjson (and json) accept documents that different parsers read differently:
a duplicate key (last one wins here, first one elsewhere), integers beyond
2**53 (exact here, rounded in JavaScript and by DynamoDB clients), huge
exponents. A payments API must not have two readings of one body, so
these are refused before any other check.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

MAX_BODY_BYTES = 64 * 1024  # request-size limit at the API edge (413 above it)
MAX_SAFE_INTEGER = 2 ** 53  # JSON numbers every client reads exactly: |n| <= 2**53
MAX_DEPTH = 32              # objects/arrays nested deeper are refused
MAX_NUMBER_CHARS = 40       # a longer number literal is refused before conversion


class StrictJsonError(ValueError):
    """The body is not acceptable JSON; `reason` is a short machine-readable word."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise StrictJsonError("duplicate_key", f"duplicate key {key[:64]!r} in a JSON object")
        seen[key] = value
    return seen


def _int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise StrictJsonError("number_too_large", "a number in the body is too long")
    value = int(text)
    if abs(value) > MAX_SAFE_INTEGER:
        raise StrictJsonError("number_too_large", f"integers must be within ±2^53, got {text[:24]}…"
                              if len(text) > 24 else f"integers must be within ±2^53, got {text}")
    return value


_EXPONENT = re.compile(r"[eE]([+-]?\d+)$")


def _float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise StrictJsonError("number_too_large", "a number in the body is too long")
    m = _EXPONENT.search(text)
    if m and abs(int(m.group(1))) > 308:
        raise StrictJsonError("number_too_large", f"number {text} has a huge exponent")
    value = float(text)
    if not math.isfinite(value) or abs(value) > MAX_SAFE_INTEGER:
        raise StrictJsonError("number_too_large", f"number {text} is beyond ±2^53")
    return value


def _constant(name: str) -> Any:
    raise StrictJsonError("non_finite_number", f"{name} is not valid JSON")


def _depth(text: str) -> int:
    """Deepest nesting of [ and { outside strings (cheap scan before parsing)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_int=_int, parse_float=_float,
                            parse_constant=_constant, strict=True)


def loads(raw: bytes | str) -> Any:
    """Parse one JSON document strictly; StrictJsonError says why it was refused."""
    if isinstance(raw, (bytes, bytearray)):
        if len(raw) > MAX_BODY_BYTES:
            raise StrictJsonError("too_large", f"body is larger than {MAX_BODY_BYTES} bytes")
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise StrictJsonError("not_utf8", "body is not UTF-8") from None
    else:
        text = raw
    if text.startswith("\ufeff"):
        raise StrictJsonError("invalid_json", "body starts with a byte-order mark")
    if _depth(text) > MAX_DEPTH:
        raise StrictJsonError("too_deep", f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        value, end = _DECODER.raw_decode(text, _skip_ws(text, 0))
    except json.JSONDecodeError as e:
        raise StrictJsonError("invalid_json", f"request body is not valid JSON: {e}") from None
    except RecursionError:
        raise StrictJsonError("too_deep", f"JSON nested deeper than {MAX_DEPTH} levels") from None
    if _skip_ws(text, end) != len(text):
        raise StrictJsonError("invalid_json", "request body has data after the JSON document")
    try:  # a lone surrogate (\\ud800) parses, but is no Unicode text: nothing downstream could store it
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        raise StrictJsonError("invalid_json", "request body holds a string that is not valid Unicode") from None
    return value


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i
