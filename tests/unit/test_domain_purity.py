"""The domain is pure: chalicelib/domain/ imports only the standard library, itself and pure data libraries.

Checked twice: statically (every import statement in every module, however
deeply nested, resolved to an absolute module name) and dynamically (what a
fresh interpreter has loaded after importing the aggregate).
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "chalice_app"
DOMAIN_DIR = APP / "chalicelib" / "domain"
DOMAIN_PKG = "chalicelib.domain"

# Third-party code the domain may use: pure data and checksum libraries (ISO 4217 currencies,
# IBAN checksums and formats, ULID decoding for the card-number rules), no I/O.
ALLOWED_THIRD_PARTY = frozenset({"iso4217", "schwifty", "ulid"})
# Named explicitly because some are in the standard library (sqlite3) and so
# would pass a plain "stdlib only" rule. The I/O modules keep the domain free of side effects.
INFRASTRUCTURE = frozenset({
    "boto3", "botocore", "aiobotocore", "kafka", "aiokafka", "confluent_kafka", "sqlite3", "_sqlite3", "chalice",
})
FORBIDDEN = INFRASTRUCTURE | {"requests", "urllib3", "socket", "http", "urllib", "subprocess"}
DYNAMIC_IMPORTERS = frozenset({"__import__", "import_module"})


def _module_of(path: Path) -> str:
    rel = path.relative_to(APP).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package_of(path: Path) -> str:
    module = _module_of(path)
    return module if path.name == "__init__.py" else module.rsplit(".", 1)[0]


def _resolve(node: ast.ImportFrom, package: str) -> list[str]:
    """Absolute module names an ImportFrom can load (`from . import x` may load `pkg.x`)."""
    if node.level == 0:
        base = node.module or ""
    else:
        parts = package.split(".")
        if node.level - 1 >= len(parts):
            return ["<relative import beyond the top-level package>"]
        anchor = ".".join(parts[: len(parts) - (node.level - 1)])
        base = f"{anchor}.{node.module}" if node.module else anchor
    if node.module is None:  # `from .. import ports` names submodules
        return [f"{base}.{alias.name}" for alias in node.names]
    return [base]


def imported_modules(source: str, package: str) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in `source`, nested ones and import_module("x") included."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found += [(node.lineno, name) for name in _resolve(node, package)]
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            if name in DYNAMIC_IMPORTERS:
                arg = node.args[0] if node.args else None
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.append((node.lineno, arg.value))
                else:
                    found.append((node.lineno, "<dynamic import of a computed name>"))
    return found


def violations(source: str, package: str) -> list[str]:
    bad = []
    for line, module in imported_modules(source, package):
        top = module.split(".")[0]
        if module == DOMAIN_PKG or module.startswith(DOMAIN_PKG + "."):
            continue
        if top in FORBIDDEN:
            bad.append(f"line {line}: {module} (forbidden)")
        elif top in ALLOWED_THIRD_PARTY:
            continue
        elif top == "chalicelib" or top not in sys.stdlib_module_names:
            bad.append(f"line {line}: {module} (outside the standard library and {DOMAIN_PKG})")
    return bad


def domain_files() -> list[Path]:
    return sorted(DOMAIN_DIR.rglob("*.py"))


def test_domain_package_has_modules():
    names = {p.name for p in domain_files()}
    assert {"__init__.py", "payment.py", "states.py", "money.py", "events.py"} <= names


@pytest.mark.parametrize("path", domain_files(), ids=lambda p: p.relative_to(DOMAIN_DIR).as_posix())
def test_domain_module_imports_only_stdlib_and_itself(path: Path):
    bad = violations(path.read_text(encoding="utf-8"), _package_of(path))
    assert not bad, f"{path.relative_to(APP)} imports outside the pure domain:\n  " + "\n  ".join(bad)


# The checker itself must be able to fail: each snippet below is a real way to break purity.
@pytest.mark.parametrize("source", [
    "import boto3",
    "import botocore.exceptions",
    "from kafka import KafkaProducer",
    "import sqlite3",
    "from chalice import Chalice",
    "import orjson",
    "def f():\n    import boto3\n    return boto3",
    "class C:\n    def m(self):\n        from sqlite3 import connect",
    "if True:\n    try:\n        import chalice\n    except ImportError:\n        pass",
    "from ..adapters import sqlite_store",
    "from .. import ports",
    "from ..ports import Posting",
    "from chalicelib.adapters.sqlite.store import open_store",
    "from chalicelib import codec",
    "import importlib\nimportlib.import_module('boto3')",
    "__import__('kafka')",
    "import importlib\nname = 'x'\nimportlib.import_module(name)",
    "from .... import x",
])
def test_checker_flags_impure_imports(source):
    assert violations(source, DOMAIN_PKG), source


@pytest.mark.parametrize("source", [
    "from __future__ import annotations",
    "import decimal\nfrom dataclasses import dataclass, field",
    "from enum import Enum",
    "from iso4217 import Currency",
    "from .money import Money",
    "from . import states",
    "from chalicelib.domain.states import State",
    "def f():\n    from .states import FINAL",
])
def test_checker_allows_pure_imports(source):
    assert violations(source, DOMAIN_PKG) == []


def test_checker_resolves_relative_imports_from_a_subpackage():
    # One level up from chalicelib.domain.sub is still the domain; two levels is not.
    assert violations("from .. import money", "chalicelib.domain.sub") == []
    assert violations("from ... import ports", "chalicelib.domain.sub")


_PROBE = """
import json, sys
before = set(sys.modules)
import chalicelib.domain.payment, chalicelib.domain.events, chalicelib.domain.psp
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def test_importing_the_domain_loads_no_infrastructure():
    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(APP)!r})\n{_PROBE}"],
                         capture_output=True, text=True, timeout=60, check=True)
    loaded = json.loads(out.stdout)
    assert "chalicelib.domain.payment" in loaded  # the probe really imported it
    tops = {m.split(".")[0] for m in loaded}
    # Only infrastructure here: the stdlib itself loads urllib.parse and friends indirectly.
    assert not tops & INFRASTRUCTURE, f"the domain pulled in {sorted(tops & INFRASTRUCTURE)}"
    foreign = sorted(m for m in loaded
                     if not (m == "chalicelib" or m == DOMAIN_PKG or m.startswith(DOMAIN_PKG + "."))
                     and m.split(".")[0] not in sys.stdlib_module_names | ALLOWED_THIRD_PARTY)
    assert not foreign, f"the domain loaded non-domain modules: {foreign}"
