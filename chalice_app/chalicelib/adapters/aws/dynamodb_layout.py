"""The DynamoDB single-table layout: every item's keys, in one place.

Tenant data: the partition key begins with the tenant id, so IAM's
dynamodb:LeadingKeys can confine a tenant's role to "<tenant_id>#*".

    <t>#<payment_id>        payment          the aggregate (gsi1: <t>#status#<status> / payment id)
                            tl#<ver>#<i>     timeline entries written by the commit that made version <ver>
                            list             listing pointer (gsi1: <t>#all / payment id), written once
                            posting#<id>#<r> ledger legs of the payment (r: the writing region)
                            reminder         next due status check (the truth; see _reminders)
    <t>#cus#<customer>      <created>#<pid>  risk velocity: one item per payment of the customer
    <t>#corr#<correlation>  <pid>            payments created under a correlation id (payctl trace)
    <t>#idem#<key>          idem             API idempotency record (TTL attribute expires_at)
    <t>#vault#<token>       secret           card / IBAN ciphertext
    <t>#balance             <acct>#<cur>#<r> running ledger balance per region (ADD in the posting's
                                             transaction); the balance is the sum over regions
    <t>#report              counters#<r>     report counters c:<name> per region (dynamodb_reports.py), summed
    <t>#rate                <window>#<r>     API requests a region counted in a rate-limit window (TTL)
    <t>#tenant              tenant           tenant configuration (gsi1: _tenants / <t>)
    <t>#datakey             datakey          the tenant's KMS-wrapped data key (adapters/aws/kms.py)

Platform items start with "_", which no tenant id does (tenant ids are "ten_..."):

    _outbox#<r>#<n>         <id, 20 digits>  committed events not yet published  <- the stream relay's input
    _auditq#<r>#<n>         <id, 20 digits>  payment state changes not yet in the audit chain
                                             (written by the commit, chained by services/audit.py)
    _proc#<consumer>#<evt>  -                processed marker (consumer dedupe)
    _ledger#<n>             <txn>#<cur>#<r>  per-transaction sums for the I4 check, per region
    _reminders#<r>#<n>      <due>#<t>#<pid>  due-time index of the reminders region r set; an entry whose
                                             payment's reminder item says otherwise is stale and dropped
                                             on read (so a region's leftovers go once the owner moves it)
    _apikey#<hash>          -                API key -> tenant
    _control#<name>@<r>     -                a region's control records (its breakers, stream checkpoints)
    _redrives               <entry id>       DLQ entries already redriven

Only outbox items carry kind=outbox: the stream relay (and the Lambda event
filter, config.outbox_stream_filter) ignores every other item.

Regions (<r>: the PLATFORM_REGION that wrote the item). The table is a global table: each region's
stream also carries what the other regions wrote, and an item written in two regions keeps only the
last write. So a region's relay, sweeper, audit chainer and report counter take only the outbox and
audit-queue items whose `origin` is their own region (partitions and stream filter), and anything
two regions add to (balances, ledger sums, report counters, rate windows) is one item per region,
summed on read. Keys that only ever one region writes at a time (the payment, under its home
region's lease) stay as they are.
"""
from __future__ import annotations

import os
import threading
import time
import zlib

OUTBOX_SHARDS = 4  # outbox partitions: spreads the write load, merged by id on read
LEDGER_SHARDS = 4
REMINDER_SHARDS = 1  # reminders are rare (unknown PSP outcomes) and polled often: one partition
OUTBOX_KIND = "outbox"
AUDIT_SHARDS = 4  # audit queue partitions: no per-tenant hot key on the payment path
AUDIT_KIND = "auditq"


def payment_pk(tenant_id: str, payment_id: str) -> str:
    return f"{tenant_id}#{payment_id}"


def correlation_pk(tenant_id: str, correlation_id: str) -> str:
    return f"{tenant_id}#corr#{correlation_id}"


def status_gsi(tenant_id: str, status: str | None) -> str:
    return f"{tenant_id}#status#{status}" if status else f"{tenant_id}#all"


def outbox_pk(region: str, shard: int) -> str:
    return f"_outbox#{region}#{shard}"


def outbox_key(region: str, outbox_id: int) -> dict[str, dict[str, str]]:
    return {"pk": {"S": outbox_pk(region, zlib.crc32(str(outbox_id).encode()) % OUTBOX_SHARDS)},
            "sk": {"S": f"{outbox_id:020d}"}}


def audit_queue_pk(region: str, shard: int) -> str:
    return f"_auditq#{region}#{shard}"


def audit_queue_key(region: str, audit_id: int) -> dict[str, dict[str, str]]:
    return {"pk": {"S": audit_queue_pk(region, zlib.crc32(str(audit_id).encode()) % AUDIT_SHARDS)},
            "sk": {"S": f"{audit_id:020d}"}}


def reminders_pk(region: str, tenant_id: str, payment_id: str) -> str:
    return f"_reminders#{region}#{zlib.crc32(payment_id.encode()) % REMINDER_SHARDS}"


def ledger_pk(txn_id: str) -> str:
    return f"_ledger#{zlib.crc32(txn_id.encode()) % LEDGER_SHARDS}"


class OutboxIds:
    """Unique, time-ordered integer ids: microseconds * 1000 + pid % 1000.

    Monotonic within a process; across processes on one host they follow the
    clock. The time in the id lets the polling sweeper pick only records the
    stream relay should have published long ago.
    """

    def __init__(self) -> None:
        self._last_us = 0
        self._lock = threading.Lock()
        self._suffix = os.getpid() % 1000

    def next(self) -> int:
        with self._lock:
            self._last_us = max(self._last_us + 1, time.time_ns() // 1000)
            return self._last_us * 1000 + self._suffix

    @staticmethod
    def before(seconds_ago: float) -> int:
        """The smallest id a record created `seconds_ago` from now could not exceed."""
        return (time.time_ns() // 1000 - int(seconds_ago * 1_000_000)) * 1000


# -- attribute values (shared by every DynamoDB module) ------------------------------------------
def S(v: str) -> dict[str, str]:
    return {"S": v}


def N(v: int) -> dict[str, str]:
    return {"N": str(v)}


def key(pk: str, sk: str) -> dict[str, dict[str, str]]:
    return {"pk": S(pk), "sk": S(sk)}
