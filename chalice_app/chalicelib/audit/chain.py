"""The hash-chain rules of the audit log, shared by every AuditLog adapter.

Entry n of a tenant stores its canonical body (which holds its seq and tenant)
and hash_n = SHA-256(hash_{n-1} || body), hash_0 = 64 zeros. The head -- last
seq and hash per tenant -- carries an HMAC under a platform key that only the
KeyService can open (services/audit.py), so someone who can edit the stored log
can cut its tail but cannot write a head that agrees with the cut.

Chains are per tenant AND region: two regions appending to one chain would both take the next
seq (the table replicates last-writer-wins), so each region appends only to its own chain,
named "<tenant>@<region>", and its entries carry their region. A chain from before regions
is named by the tenant alone and keeps verifying as it was.
"""
from __future__ import annotations

import hashlib
import hmac
from typing import Any, Callable, Sequence

import orjson

from ..ports import AuditTampered

GENESIS = "0" * 64


def chain_name(tenant_id: str, region: str) -> str:
    """The chain a region appends a tenant's entries to ('' region: a chain from before regions)."""
    return f"{tenant_id}@{region}" if region else tenant_id


def split_chain(name: str) -> tuple[str, str]:
    """(tenant id, region) of a chain name."""
    tenant_id, _, region = name.partition("@")
    return tenant_id, region


def chain_hash(previous: str, body: bytes) -> str:
    return hashlib.sha256(previous.encode() + body).hexdigest()


def canonical(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


class HeadSigner:
    """HMAC-SHA256 of (tenant, seq, hash) under a key fetched once, when first needed."""

    def __init__(self, key: bytes | Callable[[], bytes]):
        self._key = key if isinstance(key, bytes) else None
        self._source = None if isinstance(key, bytes) else key

    def ready(self) -> None:
        """Fetch the key now: adapters call this before their write transaction (fetching may write)."""
        self._k()

    def _k(self) -> bytes:
        if self._key is None:
            self._key = self._source()
        return self._key

    def sign(self, tenant_id: str, seq: int, digest: str) -> str:
        return hmac.new(self._k(), f"{tenant_id}\n{seq}\n{digest}".encode(), hashlib.sha256).hexdigest()

    def valid(self, tenant_id: str, seq: int, digest: str, mac: str | None) -> bool:
        return mac is not None and hmac.compare_digest(self.sign(tenant_id, seq, digest), mac)


Head = tuple[int, str, "str | None"]


def link(tenant_id: str, head: Head | None, entries: Sequence[tuple[str | None, dict[str, Any]]],
         signer: HeadSigner, region: str = "") -> tuple[list[dict[str, Any]], Head]:
    """Chain `entries` after `head`: [{"seq", "source", "raw", "hash", "entry"}] and the new signed head.

    Refuses (AuditTampered) to extend a head whose MAC does not verify: signing a new head over
    a rewritten one would launder the rewrite."""
    chain = chain_name(tenant_id, region)
    if head is not None and not signer.valid(chain, head[0], head[1], head[2]):
        raise AuditTampered(f"the audit head of tenant {tenant_id} ({region or 'no region'}) does not verify;"
                            " run `payctl audit verify`")
    stamp = {"region": region} if region else {}
    seq, previous = (head[0], head[1]) if head else (0, GENESIS)
    out = []
    for source, body in entries:
        seq += 1
        entry = {**body, "tenant_id": tenant_id, **stamp, "seq": seq}
        raw = canonical(entry)
        previous = chain_hash(previous, raw)
        out.append({"seq": seq, "source": source, "raw": raw, "hash": previous, "entry": {**entry, "hash": previous}})
    return out, (seq, previous, signer.sign(chain, seq, previous))
