"""JSON Schemas from schemas/, compiled once per process with fastjsonschema.

schemas/ lives at the repository root; it reaches the Lambda package through
chalice_app/vendor/schemas (a symlink Chalice's packager follows), which lands
at the root of deployment.zip beside chalicelib/. SCHEMAS_DIR overrides both.
"""
from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import fastjsonschema
import orjson

_HERE = Path(__file__).resolve().parent
_CANDIDATES = (
    _HERE.parent / "schemas",               # Lambda: /var/task/schemas beside chalicelib/
    _HERE.parent / "vendor" / "schemas",    # source tree: chalice_app/vendor/schemas -> ../../schemas
    _HERE.parent.parent / "schemas",        # repository root
)
_NAME = re.compile(r"^(?P<name>.+)\.v(?P<version>\d+)\.json$")


class SchemaError(ValueError):
    """A document does not match its schema (or names no known schema)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def schemas_dir() -> Path:
    override = os.environ.get("SCHEMAS_DIR")
    for candidate in ([Path(override)] if override else []) + list(_CANDIDATES):
        if (candidate / "events").is_dir():
            return candidate
    raise RuntimeError("schemas/ not found next to chalicelib (is the vendor/schemas link missing?)")


@lru_cache(maxsize=1)
def _load() -> dict[tuple[str, str, int], tuple[dict[str, Any], Callable[[Any], Any]]]:
    compiled = {}
    root = schemas_dir()
    for kind in ("events", "api"):
        for path in sorted((root / kind).glob("*.json")):
            m = _NAME.match(path.name)
            if not m:
                continue
            doc = orjson.loads(path.read_bytes())
            compiled[(kind, m["name"], int(m["version"]))] = (doc, fastjsonschema.compile(doc))
    return compiled


def warm() -> int:
    """Compile every validator now (bootstrap, Lambda init) rather than on the first request."""
    return len(_load())


def catalogue() -> dict[tuple[str, str, int], dict[str, Any]]:
    """(kind, name, version) -> schema document."""
    return {k: doc for k, (doc, _) in _load().items()}


def latest_version(kind: str, name: str) -> int | None:
    versions = [v for (k, n, v) in _load() if k == kind and n == name]
    return max(versions) if versions else None


def _check(kind: str, name: str, version: int, doc: Any) -> None:
    entry = _load().get((kind, name, version))
    if entry is None:
        raise SchemaError(f"no schema for {kind} '{name}' version {version}")
    try:
        entry[1](doc)
    except fastjsonschema.JsonSchemaValueException as e:
        e = _branch_error(e)
        field = _failing_field(e)
        # Strip only the leading "data..." path fastjsonschema puts in front, never other occurrences.
        message = e.message[len(e.name):].strip() if e.name and e.message.startswith(e.name) else e.message
        raise SchemaError(f"'{field}' {message}" if field else message, field) from None


def _branch_error(e: fastjsonschema.JsonSchemaValueException) -> fastjsonschema.JsonSchemaValueException:
    """For a oneOf discriminated by `type`, the error inside the branch the document chose.

    "payment_method must be valid exactly by one definition" names no field; the
    card branch's own error ("payment_method.card.cvc must match pattern ...") does."""
    definition = e.definition if isinstance(e.definition, dict) else {}
    if e.rule != "oneOf" or not isinstance(e.value, dict):
        return e
    for branch in definition.get("oneOf", []):
        const = ((branch.get("properties") or {}).get("type") or {}).get("const")
        if const is not None and const == e.value.get("type"):
            try:
                fastjsonschema.validate(branch, e.value)
            except fastjsonschema.JsonSchemaValueException as inner:
                prefix = e.name or "data"
                return fastjsonschema.JsonSchemaValueException(
                    inner.message.replace("data", prefix, 1), inner.value, prefix + inner.name[4:],
                    inner.definition, inner.rule)
    return e


def _failing_field(e: fastjsonschema.JsonSchemaValueException) -> str | None:
    """Dotted path of the offending field: the unknown or missing key itself, not just its parent."""
    path = [str(p) for p in (e.path or [])[1:]]  # path[0] is fastjsonschema's root name "data"
    definition = e.definition if isinstance(e.definition, dict) else {}
    if isinstance(e.value, dict):
        if e.rule == "additionalProperties":
            known = set(definition.get("properties", {}))
            path += sorted(k for k in e.value if k not in known)[:1]
        elif e.rule == "required":
            path += [k for k in definition.get("required", []) if k not in e.value][:1]
    return ".".join(path) or None


def validate_event(event: dict[str, Any]) -> None:
    """Check an event envelope against the schema of its own type and version.

    A consumer reading an old version uses that version's schema; newer
    schemas must accept older events (tests/unit/test_schemas.py)."""
    if not isinstance(event, dict):
        raise SchemaError("event is not a JSON object")
    etype, version = event.get("type"), event.get("schema_version")
    if not isinstance(etype, str) or not isinstance(version, int) or isinstance(version, bool):
        raise SchemaError("event has no valid 'type' and 'schema_version'")
    _check("events", etype, version, event)


def validate_request(name: str, body: Any, version: int = 1) -> None:
    """Check an API request body; SchemaError names the failing field."""
    _check("api", name, version, body)
