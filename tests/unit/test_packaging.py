"""What the Lambda package needs reaches it: schemas/ and the runtime pins."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line} is not pinned with =="
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_lambda_requirements_are_pinned_like_the_runtime_requirements():
    runtime, lam = _pins(ROOT / "requirements.txt"), _pins(ROOT / "chalice_app" / "requirements.txt")
    assert "chalice" not in lam  # Chalice ships its own runtime module into the zip
    for name, version in lam.items():
        assert runtime.get(name) == version, f"{name}: lambda {version} vs runtime {runtime.get(name)}"
    for direct in ("orjson", "fastjsonschema", "iso4217", "schwifty", "python-ulid", "cryptography"):
        assert direct in lam, f"{direct} missing from chalice_app/requirements.txt"


def test_vendor_link_brings_schemas_into_the_deployment_package():
    link = ROOT / "chalice_app" / "vendor" / "schemas"
    assert link.is_symlink(), "Chalice copies vendor/ into the zip root, following links"
    assert link.resolve() == (ROOT / "schemas").resolve()
    assert any((link / "events").glob("*.v1.json"))


def test_schema_loader_finds_schemas_in_the_lambda_layout(tmp_path, monkeypatch):
    # deployment.zip: app.py, chalicelib/ and (from vendor/) schemas/ side by side.
    import shutil
    import subprocess
    import sys
    shutil.copytree(ROOT / "chalice_app" / "chalicelib", tmp_path / "chalicelib")
    shutil.copytree(ROOT / "schemas", tmp_path / "schemas")
    code = ("from chalicelib import schemas; d = schemas.schemas_dir(); "
            "print(d); assert len(schemas.catalogue()) > 10")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(tmp_path / "schemas")
