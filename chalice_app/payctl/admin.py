"""payctl commands for tenants, API keys, PSP credentials and the audit log (admin actions)."""
from __future__ import annotations

import argparse
import sys

from rich.table import Table

from chalicelib.services import tenants as tenancy

from . import tenants_file
from .common import CliError, console, emit, platform


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
                "webhook_url": (t.get("webhook") or {}).get("url")} for t in platform().store.tenants.list_tenants()]

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


# -- PSP credentials -------------------------------------------------------------------
def cmd_psp_seal(args: argparse.Namespace) -> int:
    from chalicelib.connectors import seal_credential
    credential = sys.stdin.readline().strip()  # stdin, not argv: no credential in shell history or ps
    if not credential:
        raise CliError("give the PSP credential on stdin")
    sealed = {"name": args.name, "api_key_enc": seal_credential(platform().keys, credential)}
    emit(args, sealed, lambda r: console.print(f'"api_key_enc": "{r["api_key_enc"]}"'))
    return 0


# -- audit -----------------------------------------------------------------------------
def cmd_audit_verify(args: argparse.Namespace) -> int:
    from chalicelib.services import audit
    report = audit.verify(platform(), args.tenant)

    def render(r: dict) -> None:
        for x in r["results"]:
            where = f" in {x['region']}" if x.get("region") else " (before regions)"
            console.print(f"{x['tenant_id']}{where}: {x['entries']} entries, {x['pending']} state changes not yet"
                          " chained "
                          + ("[green]chain intact[/]" if x["ok"] else f"[red]entry {x['entry']}: {x['problem']}[/]"))
        console.print(f"{r['tenants']} tenants, {r['chains']} chains, {r['entries']} entries, {r['pending']} pending: "
                      + ("ok" if r["ok"] else "[red]TAMPERED[/]"))
    emit(args, report, render)
    return 0 if report["ok"] else 1
