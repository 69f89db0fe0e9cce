"""What every payctl command shares: output, errors, the platform, admin lookups."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable

import orjson
from rich.console import Console

from chalicelib import bootstrap
from chalicelib import config as C
from chalicelib.adapters.errors import AdapterError
from chalicelib.config import Settings
from chalicelib.ports import Platform
from laptop import stackfile

console = Console()
err = Console(stderr=True)


class CliError(Exception):
    pass


def emit(args: argparse.Namespace, data: Any, render: Callable[[Any], None]) -> None:
    if args.json:
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        render(data)


def adopt_running_stack() -> None:
    """Take the settings of the stack payctl runs beside ($DATA_DIR/stack.json) into this process's
    environment where the caller set nothing, so every client (boto3's endpoint, Kafka) sees them."""
    for name, value in stackfile.environment(dict(os.environ)).items():
        os.environ.setdefault(name, value)


def settings() -> Settings:
    return Settings.from_env()


def platform() -> Platform:
    try:
        return bootstrap.build(settings())
    except AdapterError as e:
        raise CliError(unreachable(e)) from None


def unreachable(e: Exception) -> str:
    """One line: what payctl could not reach, and what to start or set."""
    env = os.environ
    mode = env.get(C.PLATFORM_MODE) or C.DEFAULTS[C.PLATFORM_MODE]
    if mode == "aws-local":
        return (f"cannot reach an aws-local stack at {C.AWS_ENDPOINT_URL}="
                f"{env.get(C.AWS_ENDPOINT_URL) or C.DEFAULTS[C.AWS_ENDPOINT_URL]} and {C.KAFKA_BOOTSTRAP_SERVERS}="
                f"{env.get(C.KAFKA_BOOTSTRAP_SERVERS) or C.DEFAULTS[C.KAFKA_BOOTSTRAP_SERVERS]}: start one with "
                f"`make local-aws`, or set both to where it runs ({type(e).__name__})")
    return f"cannot reach the {mode} platform: {e}"


def find_payment(p: Any, payment_id: str, tenant_id: str | None) -> Any:
    """Admin lookup: the given tenant, or every tenant in turn (reads stay tenant-keyed)."""
    tenants = [tenant_id] if tenant_id else [t["tenant_id"] for t in p.store.tenants.list_tenants()]
    for t in tenants:
        payment = p.store.payments.get_payment(t, payment_id)
        if payment:
            return payment
    raise CliError(f"no payment {payment_id}" + (f" for tenant {tenant_id}" if tenant_id else ""))
