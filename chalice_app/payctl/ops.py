"""payctl commands for following payments: show, trace, metrics, and the DLQs."""
from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from .common import CliError, console, emit, find_payment, platform


# -- payments --------------------------------------------------------------------------
def cmd_payments_show(args: argparse.Namespace) -> int:
    from chalicelib.services.api_io import payment_view
    p = platform()
    payment = find_payment(p, args.payment_id, args.tenant)
    view = payment_view(payment, p.store.payments.timeline(payment.tenant_id, payment.payment_id))
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
    from chalicelib.observability.timeline import trace

    from .timeline_view import render
    p = platform()
    if args.correlation_id:
        tenants = [args.tenant] if args.tenant else [t["tenant_id"] for t in p.store.tenants.list_tenants()]
        found = [(t, pid) for t in tenants for pid in p.store.payments.payments_by_correlation(t, args.correlation_id)]
        if not found:
            raise CliError(f"no payment with correlation id {args.correlation_id}")
        payments = [p.store.payments.get_payment(t, pid) for t, pid in found]
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

    from chalicelib.observability import metrics
    from chalicelib.services.health import report_health
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
    from chalicelib.services.dlq import list_entries
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
    from chalicelib.services import audit
    from chalicelib.services.dlq import list_entries, redrive
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
