"""The audit log: hash-chained per tenant (rules: audit/chain.py), and `payctl audit verify`.

What it records, with actor, time and correlation id:
  * every payment state change -- written unchained by the payment's own commit
    (audit/rows.py, same unit of work as the state), then appended to
    the tenant's chain by chain_pending(), which the relay loop (embedded,
    aws-local) and the scheduled reconciliation Lambda (AWS) run;
  * key operations and admin actions (tenant create/delete, key create/revoke,
    DLQ redrive) -- appended directly by record().

verify_tenant() walks a tenant's chain and names the first entry that does not
hold (altered, missing, reordered, moved), checks the head's MAC (so a cut tail
with a rewritten head is caught), and reports the state changes still waiting
for the chainer. The head-MAC key is random, stored with the log only wrapped
by the KeyService (keyring / KMS), so editing the log cannot forge a head.
"""
from __future__ import annotations

import getpass
import logging
import os
from typing import Any

import orjson

from ..audit.chain import GENESIS, HeadSigner, canonical, chain_hash, chain_name  # noqa: F401 - re-exported
from ..clock import iso
from ..ports import AuditLog, AuditTampered, KeyService, Platform

log = logging.getLogger("payments.audit")
MAC_KEY_OWNER = "_audit"  # KeyService owner of the head-MAC key (tenant ids start with "ten_")
MAC_KEY_META = "head-mac-key"


def verify_tenant(audit: AuditLog, tenant_id: str, pending: int = 0, known: bool = False,
                  region: str | None = None) -> dict[str, Any]:
    """{"tenant_id", "region", "entries", "pending", "ok", "problem", "entry"}: the first entry of the
    tenant's chain in `region` (None: the log's own) that breaks, named.

    `known`: the tenant is in the tenant directory, so its chain cannot be empty (its creation
    is its first entry): an empty chain then means the whole chain was removed."""
    previous, expected = GENESIS, 1
    region = audit.region if region is None else region
    rows = audit.rows(tenant_id, region)

    def bad(seq: int, problem: str) -> dict[str, Any]:
        return {"tenant_id": tenant_id, "region": region, "entries": len(rows), "pending": pending, "ok": False,
                "problem": problem, "entry": seq}

    for seq, raw, stored in rows:
        where = f"entry {seq}"
        if seq != expected:
            return bad(seq, f"entry {expected} is missing (next stored entry is {seq})")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return bad(seq, f"{where} is not readable")
        if body.get("seq") != seq or body.get("tenant_id") != tenant_id or body.get("region", "") != region:
            return bad(seq, f"{where} holds entry {body.get('seq')} of {body.get('tenant_id')}"
                       f"{' in ' + body['region'] if body.get('region') else ''}: entries were moved or reordered")
        digest = chain_hash(previous, raw)
        if digest != stored:
            return bad(seq, f"{where} was altered (its hash does not match its content)")
        previous, expected = digest, expected + 1
    last = expected - 1
    head = audit.head(tenant_id, region)
    if head is None:
        if rows:
            return bad(last, f"the head is missing: entries after {last} may have been removed")
        if known:
            return bad(1, "the tenant has no audit entries at all: its chain was removed (entry 1 is missing)")
    else:
        try:
            signed = audit.signer.valid(chain_name(tenant_id, region), head[0], head[1], head[2])
        except Exception as e:  # noqa: BLE001 - the MAC key itself may be gone or replaced
            return bad(head[0], f"the head cannot be checked: its MAC key does not open ({type(e).__name__})")
        if not signed:
            return bad(head[0], f"the head (entry {head[0]}) was forged or altered: its MAC does not verify")
        if head[0] != last or head[1] != previous:
            return bad(last + 1, f"entries after {last} were removed (the head says {head[0]} entries)")
    return {"tenant_id": tenant_id, "region": region, "entries": len(rows), "pending": pending, "ok": True,
            "problem": None, "entry": None}


def verify(platform: Platform, tenant_id: str | None = None) -> dict[str, Any]:
    """Every chain of every tenant (or of one): one per region that appended to it, each checked
    whole, with the state changes this region has not chained yet. A known tenant with no chain
    in any region lost its chain."""
    audit = platform.audit_log
    own = platform.settings.region
    known = {t["tenant_id"] for t in platform.store.tenants.list_tenants()}
    tenants = [tenant_id] if tenant_id else sorted(set(audit.tenants()) | known)
    results = []
    for t in tenants:
        regions = audit.regions(t) or [own]
        for r in regions:
            pending = platform.store.audit_queue.pending_audit_count(t) if r == own else 0
            results.append(verify_tenant(audit, t, pending, t in known and regions == [own], region=r))
    return {"tenants": len(tenants), "chains": len(results), "entries": sum(r["entries"] for r in results),
            "pending": sum(r["pending"] for r in results), "ok": all(r["ok"] for r in results), "results": results}


# -- the chainer -------------------------------------------------------------------------
def chain_pending(platform: Platform, limit: int = 500) -> int:
    """Append committed state changes to their tenants' chains (oldest first); returns how many.

    A crash between append and mark_audited is harmless: the rows stay pending and the
    next run skips those already chained (each row's source is remembered in the chain)."""
    pending = platform.store.audit_queue.pending_audit(limit)
    if not pending:
        return 0
    audit = platform.audit_log
    by_tenant: dict[str, list[Any]] = {}
    for row in pending:
        by_tenant.setdefault(row.tenant_id, []).append(row)
    done: list[int] = []
    for tenant_id, rows in by_tenant.items():
        try:
            audit.append(tenant_id, [(r.source, r.body) for r in rows])
        except AuditTampered as e:  # left pending, and verify names the problem
            log.error("audit chain refused", extra={"tenant_id": tenant_id, "error": str(e)})
            continue
        done += [r.id for r in rows]
    if done:
        platform.store.audit_queue.mark_audited(done)
    return len(done)


def chain_all(platform: Platform, limit: int = 500, rounds: int = 100) -> int:
    """chain_pending until nothing is left (or `rounds` batches): the scheduled Lambda's job."""
    total = 0
    for _ in range(rounds):
        n = chain_pending(platform, limit)
        total += n
        if n < limit:
            return total
    return total


# -- wiring (bootstrap builds the log) ------------------------------------------------------
def audit_mac_key(keys: KeyService, audit: AuditLog) -> bytes:
    """The head-MAC key: random, kept with the log only as a KeyService ciphertext."""
    blob = audit.meta(MAC_KEY_META)
    if blob is None:
        blob = audit.put_meta_if_absent(MAC_KEY_META, keys.encrypt(MAC_KEY_OWNER, os.urandom(32)))
    return keys.decrypt(MAC_KEY_OWNER, blob)


def actor() -> str:
    """Who runs payctl: the OS user (admin actions only happen through payctl)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"payctl:{user}"


def record(platform: Platform, tenant_id: str, action: str, subject: str | None = None, *,
           who: str | None = None, correlation_id: str | None = None, **detail: Any) -> dict[str, Any]:
    """Append one entry: who did what to which subject, when, under which correlation id."""
    (entry,) = platform.audit_log.append(tenant_id, [(None, {
        "at": iso(platform.clock.now()), "actor": who or actor(), "action": action, "subject": subject,
        "correlation_id": correlation_id or f"corr_admin_{os.urandom(8).hex()}", "detail": detail})])
    return entry
