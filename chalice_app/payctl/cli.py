"""payctl: operate the platform from a terminal. Every command takes --json.

It reads the same configuration as the running stack (DATA_DIR, PORT, ...),
so it works beside `make local`.
"""
from __future__ import annotations

import argparse
import sys

import orjson
from rich.table import Table

from .admin import (cmd_audit_verify, cmd_key_create, cmd_key_list, cmd_key_revoke, cmd_psp_seal,
                    cmd_tenant_create, cmd_tenant_delete, cmd_tenant_list)
from .common import CliError, console, emit, err, platform
from .ops import cmd_dlq_list, cmd_dlq_redrive, cmd_metrics, cmd_payments_show, cmd_trace
from chalicelib.config import ConfigError, Settings


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
    from chalicelib.domain.states import TRANSITIONS, mermaid
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
