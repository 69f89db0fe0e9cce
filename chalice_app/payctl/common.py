"""What every payctl command shares: output, errors, the platform, admin lookups."""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

import orjson
from rich.console import Console

from chalicelib import bootstrap
from chalicelib.config import Settings

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


def find_payment(p: Any, payment_id: str, tenant_id: str | None) -> Any:
    """Admin lookup: the given tenant, or every tenant in turn (reads stay tenant-keyed)."""
    tenants = [tenant_id] if tenant_id else [t["tenant_id"] for t in p.store.tenants.list_tenants()]
    for t in tenants:
        payment = p.store.payments.get_payment(t, payment_id)
        if payment:
            return payment
    raise CliError(f"no payment {payment_id}" + (f" for tenant {tenant_id}" if tenant_id else ""))
