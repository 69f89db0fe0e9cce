"""Every module of the laptop tooling, payctl and the bench imports: a module moved or renamed
in chalicelib breaks them at once here, not in the middle of `make local` or `make bench`."""
from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _modules(base: Path, package: str) -> list[str]:
    return sorted(".".join((package, *p.relative_to(base).with_suffix("").parts)).removesuffix(".__init__")
                  for p in base.rglob("*.py") if p.name != "__main__.py")


@pytest.mark.parametrize("module", _modules(ROOT / "chalice_app" / "laptop", "laptop")
                         + _modules(ROOT / "chalice_app" / "payctl", "payctl"))
def test_laptop_and_payctl_modules_import(module):
    importlib.import_module(module)


def test_bench_modules_import():
    """In a fresh interpreter with the Makefile's PYTHONPATH, as `make bench` runs them."""
    mods = _modules(ROOT / "bench", "bench")
    code = "import importlib\nfor m in %r: importlib.import_module(m)" % mods
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "chalice_app")})
    assert out.returncode == 0, out.stderr[-2000:]
