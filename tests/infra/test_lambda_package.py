"""`chalice package` builds a deployment.zip holding app.py, chalicelib/ and schemas/."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_chalice_package_ships_schemas_beside_chalicelib(tmp_path):
    chalice = Path(sys.executable).parent / "chalice"
    assert chalice.exists(), "chalice CLI missing from the virtualenv"
    out = tmp_path / "out"
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}
    result = subprocess.run([str(chalice), "package", "--stage", "prod", str(out)], cwd=ROOT / "chalice_app",
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    names = set(zipfile.ZipFile(out / "deployment.zip").namelist())
    assert "app.py" in names and "chalicelib/stages/authorization.py" in names
    # Exactly the Lambda package: every module of chalicelib/, none of the laptop tooling beside it.
    ours = {n for n in names if n.endswith(".py") and n.split("/")[0] in ("chalicelib", "laptop", "payctl")}
    source = {str(p.relative_to(ROOT / "chalice_app")) for p in (ROOT / "chalice_app" / "chalicelib").rglob("*.py")}
    assert ours == source, sorted(ours ^ source)
    assert not [n for n in names if n.startswith(("laptop/", "payctl/", "tests/", "bench/"))]
    for schema in (ROOT / "schemas").rglob("*.json"):
        assert f"schemas/{schema.relative_to(ROOT / 'schemas')}" in names, schema.name
    assert "orjson/__init__.py" in names or any(n.startswith("orjson/") for n in names)
    # The Lambdas run on Graviton: every compiled extension must be built for aarch64.
    native = [n for n in names if n.endswith(".so")]
    assert native and all("aarch64" in n or "abi3" in n for n in native), [n for n in native if "aarch64" not in n]
    shutil.rmtree(out)
