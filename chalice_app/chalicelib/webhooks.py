"""Merchant webhooks: HMAC-SHA256 over "<timestamp>.<body>", Stripe-style.

Header: `Webhook-Signature: t=<unix seconds>,v1=<hex digest>`. Merchants
recompute the digest with their secret and reject old timestamps (replays).
"""
from __future__ import annotations

import hashlib
import hmac
import urllib.error
import urllib.request
from typing import Callable

SIGNATURE_HEADER = "Webhook-Signature"
TOLERANCE_S = 300


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: bytes, header: str, body: bytes, now: int, tolerance_s: int = TOLERANCE_S) -> bool:
    """What a merchant runs: signature matches and the timestamp is recent."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected.encode(), parts.get("v1", "").encode())


# (url, body, headers, timeout) -> HTTP status; injectable so tests need no server.
Poster = Callable[[str, bytes, dict[str, str], float], int]


def http_post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code
