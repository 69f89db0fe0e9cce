"""payctl: operate the platform from a terminal. Every command takes --json.

It reads the same configuration as the running stack (DATA_DIR, PORT, ...),
so it works beside `make local`.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

import orjson
from rich.console import Console
from rich.table import Table

from . import tenancy, tenants_file
from .config import ConfigError, Settings
from .runtime import bootstrap

console = Console()
err = Console(stderr=True)


class CliError(Exception):
    pass


def emit(args: argparse.Namespace, data: Any, render: Callable[[Any], None]) -> None:
    if args.json:
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        render(data)


def platform() -> Any:
    return bootstrap.build(Settings.from_env())


# -- tenants ---------------------------------------------------------------------------
def cmd_tenant_create(args: argparse.Namespace) -> int:
    try:
        created = tenancy.create_tenant(platform(), args.name, webhook_url=args.webhook_url,
                                        environment="live" if args.live else "test")
    except tenancy.TenantError as e:
        raise CliError(str(e)) from None
    declared = tenants_file.path_from_env()
    if declared:  # infra/ deploys one IAM role per tenant from this file
        tenants_file.add(declared, created["tenant_id"], created["name"])
        created["tenants_file"] = str(declared)

    def render(d: dict) -> None:
        console.print(f"tenant [bold]{d['tenant_id']}[/] ({d['name']}) created")
        if d.get("tenants_file"):
            console.print(f"added to {d['tenants_file']} (deployed by infra/)")
        console.print(f"API key (shown once): [bold]{d['api_key']}[/]")
        if d.get("webhook_secret"):
            console.print(f"webhook secret (shown once): {d['webhook_secret']}")
    emit(args, created, render)
    return 0


def cmd_tenant_list(args: argparse.Namespace) -> int:
    tenants = [{"tenant_id": t["tenant_id"], "name": t["name"], "created_at": t.get("created_at"),
                "webhook_url": (t.get("webhook") or {}).get("url")} for t in platform().tenants.list_tenants()]

    def render(rows: list) -> None:
        table = Table("tenant_id", "name", "created_at", "webhook_url")
        for r in rows:
            table.add_row(r["tenant_id"], r["name"], r["created_at"] or "", r["webhook_url"] or "")
        console.print(table)
    emit(args, tenants, render)
    return 0


def cmd_tenant_delete(args: argparse.Namespace) -> int:
    if not args.yes:
        raise CliError("deleting a tenant destroys its data key for good; add --yes to confirm")
    try:
        deleted = tenancy.delete_tenant(platform(), args.tenant_id)
    except tenancy.TenantError as e:
        raise CliError(str(e)) from None
    declared = tenants_file.path_from_env()
    if declared:
        tenants_file.remove(declared, args.tenant_id)
    emit(args, deleted, lambda d: console.print(f"tenant {d['tenant_id']} deleted: {d['keys_revoked']} keys revoked,"
                                                f" data key destroyed (its encrypted data is unreadable)"))
    return 0


def cmd_key_create(args: argparse.Namespace) -> int:
    p = platform()
    try:
        key = tenancy.add_key(p, args.tenant_id, "live" if args.live else "test")
    except tenancy.TenantError as e:
        raise CliError(str(e)) from None
    new_id = tenancy.key_id(tenancy.hash_key(p.settings.api_key_pepper, key))
    made = next(k for k in tenancy.list_keys(p, args.tenant_id) if k["key_id"] == new_id)
    data = {**made, "api_key": key}
    emit(args, data, lambda d: console.print(f"API key {d['key_id']} for {d['tenant_id']} (shown once): "
                                             f"[bold]{d['api_key']}[/]"))
    return 0


def cmd_key_list(args: argparse.Namespace) -> int:
    keys = tenancy.list_keys(platform(), args.tenant_id)

    def render(rows: list) -> None:
        table = Table("key_id", "prefix", "environment", "created_at", "revoked_at")
        for k in rows:
            table.add_row(k["key_id"], k["prefix"] + "…", k["environment"], k["created_at"], k["revoked_at"] or "")
        console.print(table)
    emit(args, keys, render)
    return 0


def cmd_key_revoke(args: argparse.Namespace) -> int:
    try:
        revoked = tenancy.revoke_key(platform(), args.key)
    except tenancy.TenantError as e:
        raise CliError(str(e)) from None
    emit(args, revoked, lambda d: console.print(f"revoked {d['key_id']} ({d['prefix']}…) of {d['tenant_id']}"))
    return 0


# -- payments --------------------------------------------------------------------------
def find_payment(p: Any, payment_id: str, tenant_id: str | None) -> Any:
    """Admin lookup: the given tenant, or every tenant in turn (reads stay tenant-keyed)."""
    tenants = [tenant_id] if tenant_id else [t["tenant_id"] for t in p.tenants.list_tenants()]
    for t in tenants:
        payment = p.store.get_payment(t, payment_id)
        if payment:
            return payment
    raise CliError(f"no payment {payment_id}" + (f" for tenant {tenant_id}" if tenant_id else ""))


def cmd_payments_show(args: argparse.Namespace) -> int:
    from .service import payment_view
    p = platform()
    payment = find_payment(p, args.payment_id, args.tenant)
    view = payment_view(payment, p.store.timeline(payment.tenant_id, payment.payment_id))
    view["tenant_id"] = payment.tenant_id

    def render(v: dict) -> None:
        console.print(f"[bold]{v['id']}[/]  {v['status']}  {v['amount']} {v['currency']}  tenant {v['tenant_id']}")
        for a in v["attempts"]:
            console.print(f"  attempt {a['number']} @ {a['psp']}: {a['status']} {a['code'] or ''}")
        if v["failure"]:
            console.print(f"  failure: {v['failure']['code']}: {v['failure']['message']}")
    emit(args, view, render)
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    from .observability import render, trace
    p = platform()
    if args.correlation_id:
        tenants = [args.tenant] if args.tenant else [t["tenant_id"] for t in p.tenants.list_tenants()]
        found = [(t, pid) for t in tenants for pid in p.store.payments_by_correlation(t, args.correlation_id)]
        if not found:
            raise CliError(f"no payment with correlation id {args.correlation_id}")
        payments = [p.store.get_payment(t, pid) for t, pid in found]
    elif args.payment_id:
        payments = [find_payment(p, args.payment_id, args.tenant)]
    else:
        raise CliError("give a payment id or --correlation-id")
    reports = [trace(p, payment) for payment in payments]

    def show(_: Any) -> None:
        for r in reports:
            render(console, r, tree=args.tree)
    emit(args, reports if args.correlation_id else reports[0], show)
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    import time
    from .reconciliation import report_health
    from .telemetry import metrics
    p = platform()
    report_health(p, force=True)  # DLQ depth and breakers as of now
    docs = metrics.read_file(p.settings.data_dir / "metrics.emf.jsonl")
    since = int((time.time() - args.since) * 1000) if args.since else 0
    summary = metrics.summarize(docs, since)

    def render(m: dict) -> None:
        table = Table("stage", "records", "/s", "errors", "dead", "p50 ms", "p95 ms", "p99 ms", "wait p50", "wait p99",
                      title=f"stages over {m['window_s']:.0f} s")
        for name, v in m["stages"].items():
            table.add_row(name, *(str(v[k]) for k in ("records", "per_s", "errors", "dead_lettered", "p50_ms", "p95_ms",
                                                      "p99_ms", "queue_wait_p50_ms", "queue_wait_p99_ms")))
        console.print(table)
        psp = Table("psp call", "calls", "success rate", "approved", "p50 ms", "p99 ms")
        for name, v in m["psps"].items():
            psp.add_row(name, *(str(v[k]) for k in ("calls", "success_rate", "approved", "p50_ms", "p99_ms")))
        console.print(psp)
        h = m["health"]
        console.print(f"DLQ depth {h.get('dlq_depth', '?')}, open circuit breakers {h.get('open_breakers', '?')}")
    emit(args, summary, render)
    return 0


# -- DLQ -------------------------------------------------------------------------------
def cmd_dlq_list(args: argparse.Namespace) -> int:
    from .runtime.dlq_admin import list_entries
    entries = list_entries(platform(), args.stage, include_redriven=args.all)

    def render(rows: list) -> None:
        table = Table("entry_id", "stage", "topic", "payment", "attempts", "error", "redriven")
        for e in rows:
            table.add_row(e["entry_id"], e["stage"], e["topic"], e["key"], str(e["attempts"]), e["error"][:80],
                          "yes" if e["redriven"] else "")
        console.print(table)
        console.print(f"{sum(1 for e in rows if not e['redriven'])} waiting")
    emit(args, entries, render)
    return 0


def cmd_dlq_redrive(args: argparse.Namespace) -> int:
    from .runtime.dlq_admin import list_entries, redrive
    from .security import audit
    p = platform()
    tenants = {e["entry_id"]: e.get("tenant_id") or "_platform" for e in list_entries(p, args.stage)}
    report = redrive(p, args.stage, args.id)
    for entry_id in report["entries"]:
        audit.record(p, tenants.get(entry_id, "_platform"), "dlq.redrive", entry_id)

    def render(r: dict) -> None:
        console.print(f"redriven {r['redriven']} entr{'y' if r['redriven'] == 1 else 'ies'}"
                      + (f" ({', '.join(r['entries'])})" if r["entries"] else ""))
    emit(args, report, render)
    return 0 if report["redriven"] or not args.id else 1


# -- PSP credentials -------------------------------------------------------------------
def cmd_psp_seal(args: argparse.Namespace) -> int:
    from .connectors import seal_credential
    credential = sys.stdin.readline().strip()  # stdin, not argv: no credential in shell history or ps
    if not credential:
        raise CliError("give the PSP credential on stdin")
    sealed = {"name": args.name, "api_key_enc": seal_credential(platform().keys, credential)}
    emit(args, sealed, lambda r: console.print(f'"api_key_enc": "{r["api_key_enc"]}"'))
    return 0


# -- audit -----------------------------------------------------------------------------
def cmd_audit_verify(args: argparse.Namespace) -> int:
    from .security import audit
    report = audit.verify(platform(), args.tenant)

    def render(r: dict) -> None:
        for x in r["results"]:
            console.print(f"{x['tenant_id']}: {x['entries']} entries, {x['pending']} state changes not yet chained "
                          + ("[green]chain intact[/]" if x["ok"] else f"[red]entry {x['entry']}: {x['problem']}[/]"))
        console.print(f"{r['tenants']} tenants, {r['entries']} entries, {r['pending']} pending: "
                      + ("ok" if r["ok"] else "[red]TAMPERED[/]"))
    emit(args, report, render)
    return 0 if report["ok"] else 1


# -- demo, ledger, states --------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DemoError, run_demo
    try:
        report = run_demo(Settings.from_env(), args.count, args.concurrency, args.api_key, args.url, args.timeout,
                          quiet=args.json)
    except DemoError as e:
        raise CliError(str(e)) from None

    def render(r: dict) -> None:
        table = Table("outcome", "payments", title=f"{r['count']} payments in {r['elapsed_s']:.1f} s")
        for k, v in sorted(r["outcomes"].items()):
            table.add_row(k, str(v))
        console.print(table)
        console.print(f"accepted {r['accepted_per_s']:.0f}/s; end to end {r['completed_per_s']:.1f} payments/s; "
                      f"accept→final p50 {r['latency_ms']['p50']:.0f} ms, p95 {r['latency_ms']['p95']:.0f} ms")
    emit(args, report, render)
    return 0 if report["outcomes"].get("still processing", 0) == 0 else 1


def cmd_ledger_check(args: argparse.Namespace) -> int:
    """I4: every transaction sums to zero per currency, and every balance equals its postings."""
    store = platform().store
    totals = store.ledger_totals()
    bad = [t for t in totals if t["sum"] != 0]
    drift = store.ledger_drift()
    report = {"transactions": len(totals), "unbalanced": bad, "drifted_balances": drift,
              "balanced": not bad and not drift}

    def render(r: dict) -> None:
        console.print(f"{r['transactions']} ledger transactions: "
                      + ("all balanced" if not r["unbalanced"] else f"[red]{len(r['unbalanced'])} unbalanced[/]"))
        console.print("balances: " + ("all equal the sum of their postings" if not r["drifted_balances"] else
                                      f"[red]{len(r['drifted_balances'])} differ from their postings[/]"))
    emit(args, report, render)
    return 0 if report["balanced"] else 1


def cmd_states(args: argparse.Namespace) -> int:
    from .domain.states import TRANSITIONS, mermaid
    data = {"mermaid": mermaid(), "transitions": [[s.value, a.value, t.value] for (s, a), t in TRANSITIONS.items()]}
    emit(args, data, lambda d: print(d["mermaid"]))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="payctl", description="Operate the payment platform.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True)

    tenant = sub.add_parser("tenant", help="tenants and their API keys").add_subparsers(dest="sub", required=True)
    c = tenant.add_parser("create", parents=[common], help="create a tenant and its first API key")
    c.add_argument("name")
    c.add_argument("--webhook-url")
    c.add_argument("--live", action="store_true", help="issue a pk_live_ key instead of pk_test_")
    c.set_defaults(fn=cmd_tenant_create)
    tenant.add_parser("list", parents=[common], help="list tenants").set_defaults(fn=cmd_tenant_list)
    dl = tenant.add_parser("delete", parents=[common], help="crypto-shred a tenant: revoke keys, destroy its data key")
    dl.add_argument("tenant_id")
    dl.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")
    dl.set_defaults(fn=cmd_tenant_delete)
    key = tenant.add_parser("key", help="a tenant's API keys (several per tenant, so keys rotate)").add_subparsers(
        dest="key_command", required=True)
    k = key.add_parser("create", parents=[common], help="another API key for a tenant (shown once)")
    k.add_argument("tenant_id")
    k.add_argument("--live", action="store_true", help="a pk_live_ key instead of pk_test_")
    k.set_defaults(fn=cmd_key_create)
    k = key.add_parser("list", parents=[common], help="a tenant's keys (ids and prefixes, never the keys)")
    k.add_argument("tenant_id")
    k.set_defaults(fn=cmd_key_list)
    k = key.add_parser("revoke", parents=[common], help="revoke a key at once, by key id or prefix")
    k.add_argument("key", metavar="KEY_PREFIX_OR_ID")
    k.set_defaults(fn=cmd_key_revoke)

    payments = sub.add_parser("payments", help="inspect payments").add_subparsers(dest="sub", required=True)
    s = payments.add_parser("show", parents=[common], help="one payment")
    s.add_argument("payment_id")
    s.add_argument("--tenant")
    s.set_defaults(fn=cmd_payments_show)

    t = sub.add_parser("trace", parents=[common], help="a payment's timeline: time in and between stages")
    t.add_argument("payment_id", nargs="?")
    t.add_argument("--correlation-id", help="every payment created under this correlation id (a list with --json)")
    t.add_argument("--tenant")
    t.add_argument("--tree", action="store_true", help="stages as a tree instead of a step table")
    t.set_defaults(fn=cmd_trace)

    m = sub.add_parser("metrics", parents=[common], help="stage/PSP/DLQ figures from the local EMF metrics file")
    m.add_argument("--since", type=float, default=0, help="only the last N seconds")
    m.set_defaults(fn=cmd_metrics)

    dlq = sub.add_parser("dlq", help="dead-letter queues").add_subparsers(dest="sub", required=True)
    d = dlq.add_parser("list", parents=[common], help="entries waiting in the DLQs")
    d.add_argument("--stage")
    d.add_argument("--all", action="store_true", help="include entries already redriven")
    d.set_defaults(fn=cmd_dlq_list)
    r = dlq.add_parser("redrive", parents=[common], help="re-inject entries into their original topics")
    r.add_argument("--stage")
    r.add_argument("--id")
    r.set_defaults(fn=cmd_dlq_redrive)

    demo = sub.add_parser("demo", parents=[common], help="send payments to the running stack")
    demo.add_argument("--count", type=int, default=20)
    demo.add_argument("--concurrency", type=int, default=8)
    demo.add_argument("--api-key", help="default: the demo tenant make local created")
    demo.add_argument("--url", help="default: http://127.0.0.1:$PORT")
    demo.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for outcomes")
    demo.set_defaults(fn=cmd_demo)

    ledger = sub.add_parser("ledger", help="ledger checks").add_subparsers(dest="sub", required=True)
    ledger.add_parser("check", parents=[common], help="every transaction balanced per currency").set_defaults(
        fn=cmd_ledger_check)

    audit_cmd = sub.add_parser("audit", help="the hash-chained audit log").add_subparsers(dest="sub", required=True)
    v = audit_cmd.add_parser("verify", parents=[common], help="check every tenant's chain; names a broken entry")
    v.add_argument("--tenant")
    v.set_defaults(fn=cmd_audit_verify)

    psp = sub.add_parser("psp", help="PSP connectors").add_subparsers(dest="sub", required=True)
    s = psp.add_parser("seal", parents=[common], help="encrypt a PSP credential (read from stdin) for PSP_CONFIG")
    s.add_argument("name")
    s.set_defaults(fn=cmd_psp_seal)

    sub.add_parser("states", parents=[common], help="the state machine (mermaid)").set_defaults(fn=cmd_states)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (CliError, ConfigError) as e:
        if getattr(args, "json", False):
            sys.stdout.write(orjson.dumps({"error": str(e)}).decode() + "\n")
        else:
            err.print(f"payctl: {e}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
