"""Pagination cursors shared by every PaymentReads adapter: opaque to clients, checked on the way in."""
from __future__ import annotations

import base64
import re

_CURSOR_ID = re.compile(r"pay_[0-9A-Z]{26}")


def encode_cursor(payment_id: str) -> str:
    return base64.urlsafe_b64encode(payment_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The payment id a cursor stands for; ValueError for anything this API did not hand out."""
    # validate=True: b64decode would otherwise drop junk characters and "decode" garbage.
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except ValueError:  # binascii.Error, a non-UTF-8 result, or a non-ASCII cursor (b64decode refuses it)
        raw = ""
    if not _CURSOR_ID.fullmatch(raw):
        raise ValueError("cursor is not one this API returned")
    return raw
