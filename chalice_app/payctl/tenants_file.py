"""The declarative tenant list infra/ deploys from (one IAM role per tenant).

`payctl tenant create` adds the tenant to it and `payctl tenant delete`
removes it, so what runs and what is deployed come from one source. The
file is named by TENANTS_FILE; the payctl wrapper `make` installs points it
at infra/tenants.json. Unset, nothing is written (tests, Lambda).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from chalicelib.config import TENANTS_FILE


def path_from_env() -> Path | None:
    raw = os.environ.get(TENANTS_FILE)
    return Path(raw) if raw else None


def _write(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    os.replace(tmp, path)  # a reader never sees half a file


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"tenants": []}
    doc = orjson.loads(path.read_bytes())
    if not isinstance(doc, dict) or not isinstance(doc.get("tenants"), list):
        raise ValueError(f"{path} is not a tenants file ({{\"tenants\": [...]}})")
    return doc


def add(path: Path, tenant_id: str, name: str) -> None:
    doc = _read(path)
    if not any(t.get("tenant_id") == tenant_id for t in doc["tenants"]):
        doc["tenants"].append({"tenant_id": tenant_id, "name": name})
        _write(path, doc)


def remove(path: Path, tenant_id: str) -> bool:
    doc = _read(path)
    kept = [t for t in doc["tenants"] if t.get("tenant_id") != tenant_id]
    if len(kept) == len(doc["tenants"]):
        return False
    doc["tenants"] = kept
    _write(path, doc)
    return True
