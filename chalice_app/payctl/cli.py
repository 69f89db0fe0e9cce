"""payctl: operate the platform from a terminal. Every command takes --json.

It reads the same configuration as the running stack (DATA_DIR, PORT, ...),
so it works beside `make local`.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

import orjson
from rich.table import Table

from chalicelib.adapters.errors import AdapterError
from chalicelib.config import ConfigError

from .admin import (
    cmd_audit_verify,
    cmd_key_create,
    cmd_key_list,
    cmd_key_revoke,
    cmd_psp_seal,
    cmd_tenant_create,
    cmd_tenant_delete,
    cmd_tenant_list,
)
from .common import CliError, adopt_running_stack, console, emit, err, platform, settings, unreachable
from .ops import cmd_dlq_list, cmd_dlq_redrive, cmd_metrics, cmd_payments_show, cmd_trace


# -- drill -----------------------------------------------------------------------------
def cmd_drill_failover(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .drill import DrillError, run_drill
    try:
        report = run_drill(args.payments, args.seed, args.rate, Path(args.data_dir) if args.data_dir else None)
    except (DrillError, RuntimeError) as e:
        return fail(args, CliError(f"drill failover: {e}"))

    def render(r: dict) -> None:
        for name in ("sent", "accepted", "terminal", "lost", "refused", "double_authorizations", "recovery_s",
                     "recovery_bound_s", "ledger_balanced", "audit_ok", "stale_epoch_rejections"):
            console.print(f"  {name:<24} {r[name]}")
        for t in r["takeovers"]:
            console.print(f"  takeover                 {t['region']} took {t['home']}: {t['redriven']} driven on, "
                          f"{t['status_checks']} asked at their PSP, {t['republished']} events republished")
        console.print("[green]passed[/]" if passed(r) else "[red]FAILED[/]")
    emit(args, report, render)
    return 0 if passed(report) else 1


def passed(r: dict) -> bool:
    """Nothing lost, nothing charged twice, the books and the audit chains intact."""
    return r["lost"] == 0 and r["double_authorizations"] == 0 and r["ledger_balanced"] and r["audit_ok"]


# -- demo, ledger, states --------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DemoError, Load, run_demo
    try:
        load = Load.parse(args.count, args.rate, args.duration, args.concurrency)
        report = run_demo(settings(), load, args.api_key, args.url, args.timeout, quiet=args.quiet)
    except DemoError as e:
        raise CliError(str(e)) from None
    except KeyboardInterrupt:
        err.print("payctl demo: interrupted; payments already accepted keep going through the stack")
        return 130

    def ms(x: float | None) -> str:
        return "-" if x is None else f"{x:,.0f} ms"

    def render(r: dict) -> None:
        shape = f"at {r['rate']:g}/s" if r["rate"] else f"{r['concurrency']} clients"
        table = Table("outcome", "payments", title=f"{r['count']} payments {shape} in {r['elapsed_s']:.1f} s")
        for k, v in sorted(r["outcomes"].items()):
            table.add_row(k, str(v))
        console.print(table)
        lat = r["latency_ms"]
        rate = "-" if r["payments_per_s"] is None else f"{r['payments_per_s']:.1f}"
        console.print(f"sent {r['sent']}, accepted {r['accepted']}, final {r['final']}, failed {r['failed']}"
                      + (f", {r['late_sends']} sent late (every client busy)" if r["late_sends"] else ""))
        console.print(f"end to end {rate} payments/s; accept→final p50 {ms(lat['p50'])}, p95 {ms(lat['p95'])}, "
                      f"p99 {ms(lat['p99'])}")
    emit(args, report, render)
    return 0 if report["still_processing"] == 0 and report["accepted"] > 0 else 1


def cmd_ledger_check(args: argparse.Namespace) -> int:
    """I4: every transaction sums to zero per currency, and every balance equals its postings."""
    store = platform().store
    totals = store.ledger.ledger_totals()
    bad = [t for t in totals if t["sum"] != 0]
    drift = store.ledger.ledger_drift()
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


def arg(*flags: str, **options: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    """One argument of a command, as add_argument takes it."""
    return flags, options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="payctl", description="Operate the payment platform.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True)

    def group(parent: Any, name: str, help: str, dest: str = "sub") -> Any:
        return parent.add_parser(name, help=help).add_subparsers(dest=dest, required=True)

    def command(parent: Any, name: str, fn: Callable[[argparse.Namespace], int], help: str, *args: Any) -> None:
        p = parent.add_parser(name, parents=[common], help=help)
        for flags, options in args:
            p.add_argument(*flags, **options)
        p.set_defaults(fn=fn)

    tenant = group(sub, "tenant", "tenants and their API keys")
    command(tenant, "create", cmd_tenant_create, "create a tenant and its first API key", arg("name"),
            arg("--webhook-url"), arg("--live", action="store_true", help="issue a pk_live_ key instead of pk_test_"))
    command(tenant, "list", cmd_tenant_list, "list tenants")
    command(tenant, "delete", cmd_tenant_delete, "crypto-shred a tenant: revoke keys, destroy its data key",
            arg("tenant_id"), arg("--yes", action="store_true", help="confirm: this cannot be undone"))
    key = group(tenant, "key", "a tenant's API keys (several per tenant, so keys rotate)", dest="key_command")
    command(key, "create", cmd_key_create, "another API key for a tenant (shown once)", arg("tenant_id"),
            arg("--live", action="store_true", help="a pk_live_ key instead of pk_test_"))
    command(key, "list", cmd_key_list, "a tenant's keys (ids and prefixes, never the keys)", arg("tenant_id"))
    command(key, "revoke", cmd_key_revoke, "revoke a key at once, by key id or prefix",
            arg("key", metavar="KEY_PREFIX_OR_ID"))

    command(group(sub, "payments", "inspect payments"), "show", cmd_payments_show, "one payment",
            arg("payment_id"), arg("--tenant"))
    command(sub, "trace", cmd_trace, "a payment's timeline: time in and between stages",
            arg("payment_id", nargs="?"),
            arg("--correlation-id", help="every payment created under this correlation id (a list with --json)"),
            arg("--tenant"), arg("--tree", action="store_true", help="stages as a tree instead of a step table"))
    command(sub, "metrics", cmd_metrics, "stage/PSP/DLQ figures from the local EMF metrics file",
            arg("--since", type=float, default=0, help="only the last N seconds"))

    dlq = group(sub, "dlq", "dead-letter queues")
    command(dlq, "list", cmd_dlq_list, "entries waiting in the DLQs", arg("--stage"),
            arg("--all", action="store_true", help="include entries already redriven"))
    command(dlq, "redrive", cmd_dlq_redrive, "re-inject entries into their original topics", arg("--stage"),
            arg("--id"))

    command(sub, "demo", cmd_demo, "send payments to the running stack; report payments/s and accept→final",
            arg("--count", type=int, help="payments to send (default 20; with --rate: sent at that rate)"),
            arg("--rate", type=float, help="a fixed arrival rate, payments/s (open loop), with --duration or --count"),
            arg("--duration", type=float, help="seconds to send for at --rate"),
            arg("--concurrency", type=int, help="clients sending at once (default 8; with --rate: rate/2, 8..256)"),
            arg("--quiet", action="store_true", help="no progress on stderr"),
            arg("--api-key", help="default: the demo tenant make local created"),
            arg("--url", help="default: http://127.0.0.1:$PORT"),
            arg("--timeout", type=float, default=120.0, help="seconds to wait for outcomes"))
    command(group(sub, "ledger", "ledger checks"), "check", cmd_ledger_check,
            "every transaction balanced per currency")
    command(group(sub, "audit", "the hash-chained audit log"), "verify", cmd_audit_verify,
            "check every tenant's chain; names a broken entry", arg("--tenant"))
    command(group(sub, "psp", "PSP connectors"), "seal", cmd_psp_seal,
            "encrypt a PSP credential (read from stdin) for PSP_CONFIG", arg("name"))
    command(sub, "states", cmd_states, "the state machine (mermaid)")
    command(group(sub, "drill", "resilience drills on this machine"), "failover", cmd_drill_failover,
            "two regions, kill one, take over, fail back; exit 0 only if nothing was lost or charged twice",
            arg("--payments", type=int, default=300), arg("--seed", type=int, default=1),
            arg("--rate", type=float, default=25.0, help="payments sent per second, to both regions"),
            arg("--data-dir", help="where the two regions keep their data (default: a new temporary dir)"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    adopt_running_stack()
    try:
        return args.fn(args)
    except AdapterError as e:  # the store or bus went away mid-command
        return fail(args, CliError(unreachable(e)))
    except (CliError, ConfigError) as e:
        return fail(args, e)


def fail(args: argparse.Namespace, e: Exception) -> int:
    """One line on stderr (or {"error"} with --json), exit status 2."""
    if getattr(args, "json", False):
        sys.stdout.write(orjson.dumps({"error": str(e)}).decode() + "\n")
    else:
        err.print(f"payctl: {e}", soft_wrap=True)
    return 2


if __name__ == "__main__":
    sys.exit(main())
